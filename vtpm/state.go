package vtpm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// PermallName is the file swtpm keeps a TPM 2.0's permanent state in.
const PermallName = "tpm2-00.permall"

// StatePath resolves what the user named: a swtpm state directory (its
// tpm2-00.permall) or a state file itself.
func StatePath(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return path, nil
	}
	p := filepath.Join(path, PermallName)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		if _, err12 := os.Stat(filepath.Join(path, "tpm-00.permall")); err12 == nil {
			return "", errorf(KindUnsupported, "%s holds TPM 1.2 state (tpm-00.permall); guardctl handles TPM 2.0 state", path)
		}
		return "", errorf(KindInvalid, "%s holds no %s: it is not a swtpm TPM 2.0 state directory, or the TPM was never set up", path, PermallName)
	} else if err != nil {
		return "", err
	}
	return p, nil
}

// ErrInUse is returned when a running swtpm holds the state directory's lock.
var ErrInUse = errors.New("a running swtpm is using the state")

// CheckNotInUse fails with ErrInUse when a process holds swtpm's lock on
// dir/.lock (swtpm takes a POSIX record lock there while it runs).
func CheckNotInUse(dir string) error {
	locked, err := lockHeld(filepath.Join(dir, ".lock"))
	if err != nil || !locked {
		return err
	}
	return ErrInUse
}
