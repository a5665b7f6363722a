package vtpm

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/guardctl/guardctl/internal/atomicfile"
)

type dirTarget struct{ path string }

func (t *dirTarget) Kind() TargetKind     { return TargetDir }
func (t *dirTarget) Path() string         { return t.path }
func (t *dirTarget) Device() string       { return "" }
func (t *dirTarget) Info() *ImageInfo     { return nil }
func (t *dirTarget) CheckNotInUse() error { return notInUse(t.path) }

func notInUse(path string) error {
	if err := CheckPathNotInUse(path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (t *dirTarget) Current() (*State, bool, error) {
	des, err := os.ReadDir(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if len(des) == 0 {
		return nil, true, nil
	}
	st, err := ReadState(t.path)
	return st, false, err
}

func (t *dirTarget) writes(img Image) []Write {
	var out []Write
	for _, n := range slices.Sorted(maps.Keys(img.Files)) {
		out = append(out, Write{Path: filepath.Join(t.path, n), Mode: StateFileMode(img.Modes[n])})
	}
	return out
}

// replace writes the files into a new directory beside the target and
// renames it into place, keeping what was there as PATH.TIME.bak.
func (t *dirTarget) replace(img Image, opt UnwrapOptions, fresh bool) (string, error) {
	dir := t.path
	parent := filepath.Dir(dir)
	_, statErr := os.Stat(parent)
	undo, err := mkdirs(parent)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			undo()
		}
	}()
	// libvirt keeps each VM's swtpm directory (the parent of tpm2) 0700 and
	// owned by the swtpm user too: one guardctl made goes to the same owner.
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := opt.Owner.apply(parent); err != nil {
			return "", err
		}
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(tempPrefix(dir))+"*")
	if err != nil {
		return "", err
	}
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o700); err != nil {
		return "", err
	}
	for _, name := range slices.Sorted(maps.Keys(img.Files)) {
		p := filepath.Join(tmp, name)
		if _, err := atomicfile.WriteFile(p, img.Files[name], StateFileMode(img.Modes[name]), atomicfile.Options{}); err != nil {
			return "", err
		}
		if err := opt.Owner.apply(p); err != nil {
			return "", err
		}
	}
	if err := opt.Owner.apply(tmp); err != nil {
		return "", err
	}
	var backup string
	if fi, err := os.Lstat(dir); err == nil && fi.IsDir() {
		if des, _ := os.ReadDir(dir); len(des) > 0 {
			if !opt.Force {
				return "", fmt.Errorf("%s already holds a state: %w", dir, atomicfile.ErrExists)
			}
			backup = atomicfile.BackupName(dir, time.Now())
			if err := os.Rename(dir, backup); err != nil {
				return "", err
			}
			// Like every backup: the owner's alone.
			if err := os.Chmod(backup, 0o700); err != nil {
				return "", err
			}
		} else if err := os.Remove(dir); err != nil {
			return "", err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return backup, err
	}
	ok = true
	return backup, atomicfile.SyncDir(parent)
}

func (t *dirTarget) rewrite(st *State, files map[string][]byte, keep bool, _ string) ([]string, error) {
	var backups []string
	for _, n := range slices.Sorted(maps.Keys(files)) {
		path := filepath.Join(t.path, n)
		fi, err := os.Stat(path)
		if err != nil {
			return backups, err
		}
		if old, err := ReadNoFollow(path, MaxBlobSize); err == nil && bytes.Equal(old, files[n]) {
			continue // not one of swtpm's blobs: unchanged
		}
		backup, err := atomicfile.WriteFile(path, files[n], fi.Mode().Perm(), atomicfile.Options{Overwrite: true, Backup: keep})
		if err != nil {
			return backups, err
		}
		if backup != "" {
			backups = append(backups, backup)
		}
		if err := KeepOwner(path, fi); err != nil {
			return backups, fmt.Errorf("%s was rewritten but its owner could not be kept: %w", path, err)
		}
	}
	return backups, nil
}

func (t *dirTarget) fixes(img Image, own *Owner) []Fix {
	var out []Fix
	want := func(path string, mode fs.FileMode) {
		if f, ok := needsFix(path, mode, own); ok {
			out = append(out, f)
		}
	}
	want(t.path, 0o700)
	for _, n := range slices.Sorted(maps.Keys(img.Files)) {
		want(filepath.Join(t.path, n), StateFileMode(img.Modes[n]))
	}
	return out
}

// needsFix returns the fix path needs to have mode (when not 0) and own.
func needsFix(path string, mode fs.FileMode, own *Owner) (Fix, bool) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Fix{}, false
	}
	ok := mode == 0 || fi.Mode().Perm() == mode
	if uid, gid, known := OwnerOf(fi); known && own != nil {
		ok = ok && (own.UID < 0 || own.UID == uid) && (own.GID < 0 || own.GID == gid)
	}
	return Fix{Path: path, Mode: mode, Owner: own}, !ok
}
