package vtpm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/guardctl/guardctl/internal/atomicfile"
)

type fileTarget struct{ path string }

func (t *fileTarget) Kind() TargetKind     { return TargetFile }
func (t *fileTarget) Path() string         { return t.path }
func (t *fileTarget) Device() string       { return "" }
func (t *fileTarget) Info() *ImageInfo     { return nil }
func (t *fileTarget) CheckNotInUse() error { return notInUse(t.path) }

func (t *fileTarget) Current() (*State, bool, error) {
	fi, err := os.Lstat(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if fi.Size() <= MaxDeviceSize {
		if data, err := os.ReadFile(t.path); err == nil && IsZero(data) {
			// A freshly allocated volume file (or an empty one) holds
			// no state.
			return nil, true, nil
		}
	}
	st, err := ReadState(t.path)
	return st, false, err
}

func (t *fileTarget) writes(img Image) []Write {
	return []Write{{Path: t.path, Mode: StateFileMode(img.Modes[""])}}
}

func (t *fileTarget) replace(img Image, opt UnwrapOptions, fresh bool) (string, error) {
	undo, err := mkdirs(filepath.Dir(t.path))
	if err != nil {
		return "", err
	}
	// A fresh, all-zero volume holds no state: replaced without --force,
	// and with no backup.
	backup, err := atomicfile.WriteFile(t.path, img.Files[""], StateFileMode(img.Modes[""]), atomicfile.Options{Overwrite: opt.Force || fresh, Backup: !fresh})
	if err == nil {
		err = opt.Owner.apply(t.path)
	}
	if err != nil && backup == "" {
		undo()
	}
	return backup, err
}

func (t *fileTarget) rewrite(st *State, files map[string][]byte, keep bool, _ string) ([]string, error) {
	fi, err := os.Stat(t.path)
	if err != nil {
		return nil, err
	}
	backup, err := atomicfile.WriteFile(t.path, files[""], fi.Mode().Perm(), atomicfile.Options{Overwrite: true, Backup: keep})
	var backups []string
	if backup != "" {
		backups = append(backups, backup)
	}
	if err != nil {
		return backups, err
	}
	if err := KeepOwner(t.path, fi); err != nil {
		return backups, fmt.Errorf("%s was rewritten but its owner could not be kept: %w", t.path, err)
	}
	return backups, nil
}

func (t *fileTarget) fixes(img Image, own *Owner) []Fix {
	if f, ok := needsFix(t.path, StateFileMode(img.Modes[""]), own); ok {
		return []Fix{f}
	}
	return nil
}

// --- a block device holding a raw linear state ---

type deviceTarget struct{ path, dev string }

func (t *deviceTarget) Kind() TargetKind { return TargetDevice }
func (t *deviceTarget) Path() string     { return t.path }
func (t *deviceTarget) Device() string   { return t.dev }
func (t *deviceTarget) Info() *ImageInfo { return nil }

// CheckNotInUse's own errors name the device.
func (t *deviceTarget) CheckNotInUse() error { return CheckDeviceNotInUse(t.dev) }

func (t *deviceTarget) Current() (*State, bool, error) {
	fresh, err := DeviceFresh(t.dev)
	if err != nil || fresh {
		return nil, fresh, err
	}
	st, err := readDeviceState(t.path)
	return st, false, err
}

func (t *deviceTarget) writes(Image) []Write { return []Write{{Path: t.dev}} }

func (t *deviceTarget) replace(img Image, opt UnwrapOptions, _ bool) (string, error) {
	// Written in place, its old contents kept first.
	return WriteDevice(t.dev, img.Files[""], DeviceOptions{Force: opt.Force, BackupDir: opt.BackupDir, BackupName: filepath.Base(t.path), KeepBackup: true})
}

func (t *deviceTarget) rewrite(st *State, files map[string][]byte, keep bool, backupDir string) ([]string, error) {
	// In place; the old contents are kept until the new ones read back,
	// and after that only when asked.
	backup, err := WriteDevice(t.dev, files[""], DeviceOptions{Force: true, BackupDir: backupDir, BackupName: filepath.Base(t.path), KeepBackup: keep})
	if backup == "" {
		return nil, err
	}
	return []string{backup}, err
}

// A device keeps its owner and mode.
func (t *deviceTarget) fixes(Image, *Owner) []Fix { return nil }
