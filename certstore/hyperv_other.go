//go:build !windows

package certstore

import "fmt"

// openHyperV: Hyper-V's store exists only on Windows.
func openHyperV() (Store, error) {
	return nil, fmt.Errorf("the Hyper-V guardian store (--store %s) is %w: it exists only on Windows; give a directory instead", HyperVSpec, ErrUnsupported)
}
