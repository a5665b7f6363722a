//go:build !unix

package vtpm

// lockHeld cannot be asked on this platform; swtpm does not run here.
func lockHeld(string) (bool, error) { return false, nil }

// openBy cannot be asked on this platform.
func openBy(...string) (int, string, error) { return 0, "", nil }
