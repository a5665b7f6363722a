package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// backupSuffix is what BackupName appends to a file's name.
var backupSuffix = regexp.MustCompile(`^\.[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}\.bak$`)

// backupSuffixLen is the length of every name backupSuffix matches.
const backupSuffixLen = len(".20060102T150405Z-abcdef.bak")

// Backups lists the backups of path (named as BackupName names them) that
// are in its directory now, regular files only, oldest first. An operation
// that takes access away needs them: each still holds what it took away.
func Backups(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	prefix := shortName(base, maxNameBytes-backupSuffixLen)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, prefix) || !backupSuffix.MatchString(name[len(prefix):]) {
			continue
		}
		out = append(out, filepath.Join(filepath.Dir(path), name))
	}
	// The time in the name sorts them.
	slices.Sort(out)
	return out, nil
}

// BackupsWhere lists the backups of path (Backups) whose contents, read
// up to limit bytes, satisfy opens: what an operation that takes access
// away must remove, since each still holds what it took away. A backup
// gone meanwhile, or larger than limit, is passed over.
func BackupsWhere(path string, limit int64, opens func(data []byte) bool) ([]string, error) {
	all, err := Backups(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, b := range all {
		data, err := readBackup(b, limit)
		var tooLarge *TooLargeError
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.As(err, &tooLarge):
			continue
		case err != nil:
			return nil, err
		}
		if opens(data) {
			out = append(out, b)
		}
	}
	return out, nil
}

// readBackup reads the backup at path, at most limit bytes; it refuses
// anything but a regular file (a link or FIFO put in its place).
func readBackup(path string, limit int64) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if now, err := f.Stat(); err != nil || !os.SameFile(fi, now) {
		return nil, fmt.Errorf("%s changed while it was opened", path)
	}
	return ReadBounded(f, limit)
}

// SettleBackups deals with the backups of a file that still hold what an
// operation took away (found), but for except, the one it kept because the
// user asked: with keep they stay and come back as kept; otherwise they are
// removed (a dry run only lists them) and come back as removed.
func SettleBackups(found []string, except string, keep, dryRun bool) (removed, kept []string, err error) {
	found = slices.DeleteFunc(found, func(b string) bool { return b == except })
	switch {
	case len(found) == 0:
		return nil, nil, nil
	case keep:
		return nil, found, nil
	case dryRun:
		return found, nil, nil
	}
	return found, nil, RemoveBackups(found)
}

// RemoveBackups removes the backups at paths (one directory's) and makes
// that durable. A backup already gone is not an error.
func RemoveBackups(paths []string) error {
	dirs := map[string]bool{}
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		dirs[filepath.Dir(p)] = true
	}
	for d := range dirs {
		if err := SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}
