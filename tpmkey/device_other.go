//go:build !linux

package tpmkey

import (
	"fmt"
	"io/fs"

	"github.com/google/go-tpm/tpm2/transport"
)

// openDevice: a TPM device file is Linux's; elsewhere only a swtpm over
// TCP is reachable (Windows' TPM would be the Platform Crypto Provider's,
// docs/hyperv.md).
func openDevice(path string) (transport.TPMCloser, error) {
	return nil, fmt.Errorf("TPM device files are used on Linux only: %w", fs.ErrNotExist)
}
