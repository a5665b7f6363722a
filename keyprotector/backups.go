package keyprotector

import "github.com/guardctl/guardctl/internal/atomicfile"

// backupsOpeningFor lists the backups kept of the key protector file at
// path (earlier grants' and revokes') that still hold a wrapping for the
// guardian whose signing certificate has thumbprint tp: each still lets
// that guardian unwrap, so a revoke that leaves them takes nothing away. A
// backup that is not a key protector opens for no one.
func backupsOpeningFor(path, tp string) ([]string, error) {
	return atomicfile.BackupsWhere(path, MaxFileSize, func(data []byte) bool {
		p, err := Parse(data)
		return err == nil && p.FindThumbprint(tp) != nil
	})
}
