package vtpm

import (
	"bytes"
	"errors"
	"fmt"
)

// RekeyOptions control Rekey.
type RekeyOptions struct {
	// KeepBackup keeps the previous files, which still open with the old
	// key (or are the plaintext), and the backups earlier runs kept. They
	// are kept anyway when the new state is plaintext.
	KeepBackup bool
	// BackupDir is where a block device's or qcow2 image's old contents go
	// while it is rewritten.
	BackupDir string
	// DryRun does everything in memory and writes nothing.
	DryRun bool
}

// RekeyResult is what Rekey did (or, in a dry run, would do).
type RekeyResult struct {
	// Backups are the previous files kept.
	Backups []string
	// RemovedBackups are the backups earlier runs kept of this state that
	// open without the new key: removed, since they would undo the rekey.
	RemovedBackups []string
}

// IsUnder reports whether every blob of the state is already encrypted
// under key with its size (or, for a nil key, already plain); info is
// the state's Info.
func (s *State) IsUnder(info Info, key Key) bool {
	if key == nil || !info.Encrypted {
		return key == nil && !info.Encrypted
	}
	if info.KeyBits != len(key)*8 {
		return false
	}
	_, err := s.Transform(func(_ string, b []byte) ([]byte, error) { return Decrypt(b, key) })
	return err == nil
}

// Rekey re-encrypts the state from oldKey (nil: plain) to newKey (nil:
// plain). Every blob is decrypted, encrypted and read back in memory before
// anything is written; then the state is rewritten through its target
// (Rewrite), with no plaintext copy on disk.
func Rekey(st *State, oldKey, newKey Key, opt RekeyOptions) (RekeyResult, error) {
	blobs, err := st.Transform(func(_ string, b []byte) ([]byte, error) {
		state, err := Decrypt(b, oldKey)
		if err != nil {
			return nil, err
		}
		out, err := Encrypt(state, newKey)
		if err != nil {
			return nil, err
		}
		if back, err := Decrypt(out, newKey); err != nil || !bytes.Equal(back, state) {
			return nil, errors.New("the re-encrypted state does not read back")
		}
		return out, nil
	})
	var ve *Error
	if errors.As(err, &ve) {
		return RekeyResult{}, ve.About(st.Path)
	}
	if err != nil {
		return RekeyResult{}, fmt.Errorf("%s: %w", st.Path, err)
	}
	// A copy of the old files would still open with the old key (or be
	// the plaintext): kept only when asked, or when the new state is
	// plaintext anyway. For the same reason the backups earlier runs kept
	// of this state go when it gets a new key, unless asked to keep them.
	keep := newKey == nil || opt.KeepBackup
	res := RekeyResult{Backups: []string{}, RemovedBackups: []string{}}
	if newKey != nil && !opt.KeepBackup {
		res.RemovedBackups = append(res.RemovedBackups, Backups(st, opt.BackupDir)...)
	}
	if opt.DryRun {
		return res, nil
	}
	backups, err := Rewrite(st, st.Files(blobs), keep, opt.BackupDir)
	if err != nil {
		return RekeyResult{}, err
	}
	if keep {
		res.Backups = backups
	}
	if err := RemoveFiles(res.RemovedBackups); err != nil {
		return res, fmt.Errorf("%s was re-encrypted, but an earlier backup that opens without the new key could not be removed: %w", st.Path, err)
	}
	return res, nil
}
