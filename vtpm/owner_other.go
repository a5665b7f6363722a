//go:build !unix

package vtpm

import "os"

// KeepOwner does nothing where files have no Unix owner.
func KeepOwner(string, os.FileInfo) error { return nil }
