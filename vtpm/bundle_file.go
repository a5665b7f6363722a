package vtpm

import "github.com/guardctl/guardctl/internal/atomicfile"

// UpdateOptions control UpdateFile.
type UpdateOptions struct {
	// Backup keeps the previous bundle as PATH.TIME.bak, mode 0600.
	Backup bool
	// DryRun reads, verifies and changes the bundle in memory and writes
	// nothing; changed then says whether a real run would write.
	DryRun bool
}

// UpdateFile rewrites the bundle file at path in one locked
// read-change-write (atomicfile.Update), so that a concurrent change of the
// same bundle by another guardctl is never lost: change gets the bundle as
// it is now and returns the new one, or nil to leave the file as it is.
// backup keeps the previous file as PATH.TIME.bak, mode 0600; after a
// revoke that copy still opens for the revoked guardian, so callers ask for
// it only when the user explicitly does.
func UpdateFile(path string, opt UpdateOptions, change func(*Bundle) (*Bundle, error)) (backupPath string, changed bool, err error) {
	return atomicfile.Update(path, atomicfile.UpdateOptions{MaxSize: MaxBundleSize, Backup: opt.Backup, DryRun: opt.DryRun}, func(old []byte) ([]byte, error) {
		b, err := ReadBundle(old)
		if err != nil {
			return nil, err
		}
		next, err := change(b)
		if err != nil || next == nil {
			return nil, err
		}
		return next.Marshal()
	})
}
