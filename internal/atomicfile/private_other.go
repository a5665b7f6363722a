//go:build !windows

package atomicfile

import (
	"io/fs"
	"os"
)

// CreateExcl creates a new file at path for writing, mode 0600 until the
// caller sets perm; it fails with fs.ErrExist if path exists. (On Windows,
// where modes do not keep other users out, a private file gets a DACL.)
func CreateExcl(path string, _ fs.FileMode) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// mkdirPrivate creates dir with mode 0700 (before the umask, which
// MkdirAll's chmod then overrides).
func mkdirPrivate(dir string) error { return os.Mkdir(dir, 0o700) }
