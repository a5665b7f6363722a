//go:build unix

package certstore

import "golang.org/x/sys/unix"

// writable reports whether this process may create, rename and remove
// names in the directory dir (or write the file dir), as the kernel decides
// for its effective user.
func writable(dir string) bool {
	return unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK|unix.X_OK, unix.AT_EACCESS) == nil
}

// writableFile reports whether this process may write the file (or
// directory) at path itself.
func writableFile(path string) bool {
	return unix.Faccessat(unix.AT_FDCWD, path, unix.W_OK, unix.AT_EACCESS) == nil
}
