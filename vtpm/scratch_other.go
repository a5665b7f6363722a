//go:build !linux

package vtpm

import "os"

// memFile: no anonymous memory files here; a private directory serves.
func memFile() (*os.File, bool) { return nil, false }
