//go:build linux

package vtpm

import (
	"os"

	"golang.org/x/sys/unix"
)

// memFile is an anonymous file in memory (memfd), or false where the
// kernel has none.
func memFile() (*os.File, bool) {
	fd, err := unix.MemfdCreate("guardctl-state", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, false
	}
	return os.NewFile(uintptr(fd), "memfd:guardctl-state"), true
}
