package keyprotector

import (
	"errors"
	"io/fs"

	"github.com/guardctl/guardctl/internal/atomicfile"
)

// BackupsOpeningFor lists the backups kept of the key protector file at
// path (atomicfile.Backups: earlier grants' and revokes') that still hold a
// wrapping for the guardian whose signing certificate has thumbprint tp:
// each still lets that guardian unwrap, so a revoke that leaves them takes
// nothing away. A backup that is not a key protector opens for no one.
func BackupsOpeningFor(path, tp string) ([]string, error) {
	all, err := atomicfile.Backups(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, b := range all {
		data, err := atomicfile.ReadBackup(b, MaxFileSize)
		var tooLarge *atomicfile.TooLargeError
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.As(err, &tooLarge):
			continue
		case err != nil:
			return nil, err
		}
		p, err := Parse(data)
		if err != nil {
			continue
		}
		if p.FindThumbprint(tp) != nil {
			out = append(out, b)
		}
	}
	return out, nil
}
