//go:build unix

package vtpm

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// lockHeld asks, without taking it, whether some process holds a POSIX
// write lock on path: an open-file-description query, which sees the
// classic record locks swtpm takes and does not drop this process's own.
func lockHeld(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	// A read-lock query sees any write lock; opened read-only so that a
	// state owned by another user can still be asked about.
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unixOFDGetLk, &lk); err != nil {
		return false, err
	}
	return lk.Type != unix.F_UNLCK, nil
}
