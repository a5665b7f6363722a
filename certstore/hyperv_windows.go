//go:build windows

package certstore

import "fmt"

// openHyperV opens Hyper-V's store over the real Windows interfaces. They
// (newWindowsSystemStores, newHgsRegistry) are not in this build yet;
// until they are, --store hyperv is a clear error.
func openHyperV() (Store, error) {
	return nil, fmt.Errorf("--store %s: the Hyper-V guardian store is %w yet (this build of guardctl does not include the Windows certificate store and HgsClient code); give a directory instead", HyperVSpec, ErrUnsupported)
}
