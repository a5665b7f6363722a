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

// liveMarks: markLive works here.
const liveMarks = true

// markLive marks f, a temporary file or directory this process is using,
// as live: an exclusive flock, which the kernel drops when the process
// ends, however it ends. RemoveLeftovers removes only what no live process
// has marked. It reports whether f is marked.
func markLive(f *os.File) bool {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// removeIfDead removes the temporary file or empty directory at path unless
// a running process holds its live mark, and reports whether it did.
func removeIfDead(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false // live
	}
	// Still the file that was opened (not replaced meanwhile), and while
	// this process holds the mark nobody else takes it.
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	if now, err := os.Lstat(path); err != nil || !os.SameFile(fi, now) {
		return false
	}
	return os.Remove(path) == nil
}
