//go:build unix

package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// locks: Update holds an advisory lock on the file it rewrites.
const locks = true

// openLocked opens path without following a symbolic link and waits for an
// exclusive lock on it (flock: released when the file is closed, even by a
// killed process).
func openLocked(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link; refusing to write through it", path)
		}
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return f, nil
}

// mayBecomeBackup reports whether the file whose information is fi may
// itself become the backup (keepOld): this process may change its mode (it
// owns it, or is root), and it has no other name, under which that change
// would show.
func mayBecomeBackup(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	euid := os.Geteuid()
	return ok && st.Nlink == 1 && (euid == 0 || st.Uid == uint32(euid))
}
