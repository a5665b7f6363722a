//go:build windows

package certstore

import (
	"os"
	"path/filepath"
)

// openHyperV opens Hyper-V's store over the real Windows interfaces:
// crypt32 and CNG for LocalMachine's system stores, HgsClient's
// MSFT_HgsGuardian for the registration.
func openHyperV() (Store, error) {
	return NewHyperV(newWindowsSystemStores(), newHgsRegistry(), hypervStateDir()), nil
}

// hypervStateDir is where the Hyper-V store keeps what Windows does not:
// the names guardctl gave and the records of removed guardians (names and
// thumbprints, no secrets). Beside the directory store's default, not in
// it, so that neither takes the other's files for its own.
func hypervStateDir() string {
	pd := os.Getenv("ProgramData")
	if pd == "" {
		pd = `C:\ProgramData`
	}
	return filepath.Join(pd, "guardctl-hyperv")
}
