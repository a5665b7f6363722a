//go:build unix

package vtpm

import (
	"os"
	"syscall"
)

// KeepOwner gives path the owner and group fi had (libvirt's swtpm runs as
// tss, and a state file guardctl rewrote as root must stay readable by it).
func KeepOwner(path string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return os.Lchown(path, int(st.Uid), int(st.Gid))
}

// OwnerOf returns the owner and group of the file fi describes.
func OwnerOf(fi os.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
