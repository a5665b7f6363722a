package certstore

import (
	"fmt"
	"runtime"
)

// openHyperV opens Hyper-V's store. It is not built yet (issue 10); until
// it is, --store hyperv is a clear error on every OS.
func openHyperV() (Store, error) {
	if runtime.GOOS != "windows" {
		return nil, fmt.Errorf("the Hyper-V guardian store (--store %s) is %w: it exists only on Windows; give a directory instead", HyperV, ErrUnsupported)
	}
	return nil, fmt.Errorf("--store %s: the Hyper-V guardian store is %w yet (this build of guardctl does not include it); give a directory instead", HyperV, ErrUnsupported)
}
