package vtpm

import (
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/keyprotector"
)

// backupsOpeningFor lists the backups kept of the bundle file at path
// (earlier grants' and revokes') that still open for a guardian a revoke
// took away: those whose key protector has a wrapping for the signing
// thumbprint tp, and, after a rotation, those whose payload opens with
// oldKey, the transport key that guardian may have kept. A backup that is
// not a bundle opens for no one.
func backupsOpeningFor(path, tp string, oldKey []byte) ([]string, error) {
	return atomicfile.BackupsWhere(path, MaxBundleSize, func(data []byte) bool {
		b, err := ReadBundle(data)
		if err != nil {
			return false
		}
		if p, err := keyprotector.Parse(b.KeyProtector); err == nil && p.FindThumbprint(tp) != nil {
			return true
		}
		if oldKey == nil {
			return false
		}
		_, err = b.Open(oldKey)
		return err == nil
	})
}
