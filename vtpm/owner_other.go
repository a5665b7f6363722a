//go:build !unix

package vtpm

import "os"

// KeepOwner does nothing where files have no Unix owner.
func KeepOwner(string, os.FileInfo) error { return nil }

// OwnerOf knows no owner where files have no Unix owner.
func OwnerOf(os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }
