//go:build !unix

package certstore

// writable is true where access is not decided by modes (Windows: the
// ACLs); a repair that is refused there reports the error it got.
func writable(string) bool { return true }

func writableFile(string) bool { return true }
