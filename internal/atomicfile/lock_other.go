//go:build !unix

package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
)

// locks: a file that is open cannot be renamed over here, so Update takes
// no lock and compares instead.
const locks = false

func openLocked(path string) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symbolic link; refusing to write through it", path)
	}
	return os.Open(path)
}

// mayBecomeBackup: Update keeps no hard-linked backups here.
func mayBecomeBackup(fs.FileInfo) bool { return false }

// liveMarks: there is no lock a killed process is sure to drop here that
// this package takes, so RemoveLeftovers leaves everything.
const liveMarks = false

func markLive(*os.File) bool { return false }

func removeIfDead(string) bool { return false }
