package vtpm

import (
	"errors"
	"io/fs"

	"github.com/guardctl/guardctl/internal/atomicfile"
)

// BackupsOpeningFor lists the backups kept of the bundle file at path
// (atomicfile.Backups: earlier grants' and revokes') that still open for a
// guardian a revoke took away: those whose key protector names it
// (namesIt), and, after a rotation, those whose payload opens with oldKey,
// the transport key that guardian may have kept. A backup that is not a
// bundle opens for no one.
func BackupsOpeningFor(path string, namesIt func(kp []byte) bool, oldKey []byte) ([]string, error) {
	all, err := atomicfile.Backups(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range all {
		data, err := atomicfile.ReadBackup(name, MaxBundleSize)
		var tooLarge *atomicfile.TooLargeError
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.As(err, &tooLarge):
			continue
		case err != nil:
			return nil, err
		}
		b, err := ReadBundle(data)
		if err != nil {
			continue
		}
		if namesIt(b.KeyProtector) {
			out = append(out, name)
			continue
		}
		if oldKey != nil {
			if _, err := b.Open(oldKey); err == nil {
				out = append(out, name)
			}
		}
	}
	return out, nil
}
