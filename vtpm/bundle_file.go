package vtpm

import "github.com/guardctl/guardctl/internal/atomicfile"

// UpdateFile rewrites the bundle file at path in one locked
// read-change-write (atomicfile.Update), so that a concurrent change of the
// same bundle by another guardctl is never lost: change gets the bundle as
// it is now and returns the new one, or nil to leave the file as it is.
// backup keeps the previous file as PATH.TIME.bak, mode 0600; after a
// revoke that copy still opens for the revoked guardian, so callers ask for
// it only when the user explicitly does.
func UpdateFile(path string, backup bool, change func(*Bundle) (*Bundle, error)) (backupPath string, changed bool, err error) {
	return atomicfile.Update(path, atomicfile.UpdateOptions{MaxSize: MaxBundleSize, Backup: backup}, func(old []byte) ([]byte, error) {
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
