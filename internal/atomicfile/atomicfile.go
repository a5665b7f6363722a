// Package atomicfile writes files so that a crash leaves either the old
// content or the new, never a mix: a temporary file in the same directory,
// fsync, rename, fsync of the directory.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrExists is returned when the destination exists and overwriting was not asked for.
var ErrExists = errors.New("file exists")

// TooLargeError is returned when a file read whole (Update) is larger than
// its bound: as much a refused input as a damaged one.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the file is larger than %d bytes", e.Limit)
}

// ErrNoDirectory is returned when the directory a file is to be written in
// does not exist.
var ErrNoDirectory = errors.New("directory does not exist")

// maxNameBytes is the longest file name the usual file systems take
// (NAME_MAX on Linux; NTFS and APFS take 255 characters): a temporary or
// backup name that would be longer is made from a shortened file name.
const maxNameBytes = 255

// TempPrefix starts the name of every temporary file this package makes, so
// that leftovers of a killed run can be recognised.
const TempPrefix = ".guardctl-tmp-"

// stagingPrefix starts the names MakeStagingDir makes.
const stagingPrefix = TempPrefix + "backups-"

// Options control WriteFile.
type Options struct {
	// Overwrite replaces an existing file. Without it WriteFile refuses with ErrExists.
	Overwrite bool
	// Backup, with Overwrite, keeps the previous file as PATH.TIMESTAMP.bak,
	// mode 0600.
	Backup bool
	// NoDirSync leaves syncing the directory (SyncDir), which makes the
	// new name durable, to the caller: it must do it before it calls the
	// change done. The file's content is synced before it gets its name
	// either way, so the file is never seen half-written.
	NoDirSync bool
}

// WriteFile writes data to path with the exact mode perm (the umask does not
// apply). It refuses to write through a symbolic link.
func WriteFile(path string, data []byte, perm fs.FileMode, opt Options) (backup string, err error) {
	if err := checkTarget(path, opt); err != nil {
		return "", err
	}
	RemoveLeftovers(filepath.Dir(path))
	st, err := stage(path, data, perm)
	if err != nil {
		return "", err
	}
	defer st.discard()
	if backup, err = st.place(path, opt); err != nil {
		return "", err
	}
	if opt.NoDirSync {
		return backup, nil
	}
	return backup, SyncDir(filepath.Dir(path))
}

// checkTarget refuses a symbolic link, a non-regular file, and an existing
// file without Overwrite.
func checkTarget(path string, opt Options) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link; refusing to write through it", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s exists and is not a regular file", path)
	case !opt.Overwrite:
		return fmt.Errorf("%s: %w", path, ErrExists)
	}
	return nil
}

// File is one file of WriteFiles.
type File struct {
	Path string
	Data []byte
	Perm fs.FileMode
}

// WriteFiles writes several files as one change as far as a file system
// allows: every file is written and synced in full (unnamed, or under a
// temporary name) before any is put in place, so that a full disk or an I/O
// error changes nothing. It returns the backups kept, in order.
func WriteFiles(files []File, opt Options) ([]string, error) {
	st := make([]*staged, 0, len(files))
	defer func() {
		for _, s := range st {
			s.discard()
		}
	}()
	cleaned := map[string]bool{}
	for _, f := range files {
		if err := checkTarget(f.Path, opt); err != nil {
			return nil, err
		}
		if d := filepath.Dir(f.Path); !cleaned[d] {
			RemoveLeftovers(d)
			cleaned[d] = true
		}
		s, err := stage(f.Path, f.Data, f.Perm)
		if err != nil {
			return nil, err
		}
		st = append(st, s)
	}
	backups := make([]string, len(files))
	for i, f := range files {
		var err error
		if backups[i], err = st[i].place(f.Path, opt); err != nil {
			return backups, err
		}
		if err := SyncDir(filepath.Dir(f.Path)); err != nil {
			return backups, err
		}
	}
	return backups, nil
}

// staged is new content for a file, written and synced in full and not
// yet in place: an unnamed file where the file system has them (a kill
// then leaves no temporary file behind; replacing a file still needs a
// temporary name for an instant, see placeAnonymous), else a file under a
// temporary name.
type staged struct {
	anon *os.File
	tmp  string
	// held is the temporary file kept open, and marked live, until it is
	// in place (where marks exist; see markLive).
	held *os.File
}

// stage writes data with mode perm to a new file in path's directory and
// syncs it.
func stage(path string, data []byte, perm fs.FileMode) (*staged, error) {
	if useAnonymous {
		if f, ok := openAnonymous(filepath.Dir(path)); ok {
			markLive(f)
			if err := fill(f, data, perm); err != nil {
				return nil, err
			}
			return &staged{anon: f}, nil
		}
	}
	tmp, err := createTemp(path, perm)
	if err != nil {
		if _, statErr := os.Stat(filepath.Dir(path)); errors.Is(statErr, fs.ErrNotExist) {
			return nil, fmt.Errorf("cannot write %s: %s: %w", path, filepath.Dir(path), ErrNoDirectory)
		}
		return nil, err
	}
	live := markLive(tmp)
	err = fill(tmp, data, perm)
	if err == nil && !live {
		err = tmp.Close()
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, err
	}
	if live {
		// Kept open (and so marked) until it is renamed into place.
		return &staged{tmp: tmp.Name(), held: tmp}, nil
	}
	return &staged{tmp: tmp.Name()}, nil
}

// place puts the staged content at path (see Options), once.
func (s *staged) place(path string, opt Options) (backup string, err error) {
	if s.anon != nil {
		defer s.discard()
		return placeAnonymous(s.anon, path, opt)
	}
	tmp := s.tmp
	s.tmp = ""
	defer s.discard()
	return placeNamed(tmp, path, opt)
}

// discard drops staged content that was not put in place.
func (s *staged) discard() {
	if s.anon != nil {
		s.anon.Close()
		s.anon = nil
	}
	if s.tmp != "" {
		os.Remove(s.tmp)
		s.tmp = ""
	}
	if s.held != nil {
		s.held.Close()
		s.held = nil
	}
}

// RemoveLeftovers removes from dir what killed runs of guardctl left there
// under TempPrefix: temporary files, and the staging directories of
// backups under way (MakeStagingDir) when they are empty (one that still
// holds a backup is left as it is). WriteFile, WriteFiles and
// MakeStagingDir call it, so that the next write in a directory clears
// what a killed one left. What a running guardctl is using is marked live and
// left alone. It reports what it removed; where live marks do not exist
// (see markLive) it removes nothing.
func RemoveLeftovers(dir string) []string {
	if !liveMarks {
		return nil
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), TempPrefix) || !(de.Type().IsRegular() || de.IsDir() && strings.HasPrefix(de.Name(), stagingPrefix)) {
			continue
		}
		p := filepath.Join(dir, de.Name())
		if removeIfDead(p) {
			removed = append(removed, p)
		}
	}
	return removed
}

// fill writes data to f with mode perm, synced, and closes f on error.
func fill(f *os.File, data []byte, perm fs.FileMode) error {
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
	}
	return err
}

// placeAnonymous links a filled unnamed file into place: a new file gets
// its name directly, a replacement is linked under a temporary name and
// renamed over the old file.
func placeAnonymous(f *os.File, path string, opt Options) (backup string, err error) {
	if !opt.Overwrite {
		if err := linkOpen(f, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return "", fmt.Errorf("%s: %w", path, ErrExists)
			}
			return "", err
		}
		return "", nil
	}
	if _, statErr := os.Lstat(path); statErr == nil && opt.Backup {
		if backup, err = keepBackup(path); err != nil {
			return "", err
		}
	}
	tmpName := tempName(path)
	if err := linkOpen(f, tmpName); err != nil {
		return "", err
	}
	if err := os.Rename(tmpName, path); err != nil {
		os.Remove(tmpName)
		return "", err
	}
	return backup, nil
}

// createTemp creates a new file under a temporary name next to path, with
// CreateExcl (so that a private one is private from the start on Windows
// too).
func createTemp(path string, perm fs.FileMode) (*os.File, error) {
	for range 100 {
		f, err := CreateExcl(tempName(path), perm)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("creating a temporary file in %s: too many names taken", filepath.Dir(path))
}

// placeNamed renames a filled temporary file into place.
func placeNamed(tmpName, path string, opt Options) (backup string, err error) {
	if opt.Overwrite {
		if _, statErr := os.Lstat(path); statErr == nil && opt.Backup {
			if backup, err = keepBackup(path); err != nil {
				os.Remove(tmpName)
				return "", err
			}
		}
		err = os.Rename(tmpName, path)
	} else {
		err = renameNoReplace(tmpName, path)
	}
	if err != nil {
		os.Remove(tmpName)
	}
	return backup, err
}

// tempName is a new temporary name next to path.
func tempName(path string) string {
	return TempNamePrefix(path) + randomSuffix()
}

// TempNamePrefix is how every temporary name made for path starts (the
// rest is random): a killed write's leftovers are found by it. A long file
// name is shortened in it, so that the temporary name is never too long
// for the file system.
func TempNamePrefix(path string) string {
	const suffix = 1 + 12 // "-" and randomSuffix
	return filepath.Join(filepath.Dir(path), TempPrefix+shortName(filepath.Base(path), maxNameBytes-len(TempPrefix)-suffix)+"-")
}

// shortName is name cut to at most n bytes, on a character boundary.
func shortName(name string, n int) string {
	if len(name) <= n {
		return name
	}
	for n > 0 && !utf8.RuneStart(name[n]) {
		n--
	}
	return name[:n]
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// useAnonymous is turned off by tests of the portable path.
var useAnonymous = true

// link is os.Link, replaced in tests to act as a file system without hard
// links (FAT and exFAT USB sticks, where exports often go).
var link = os.Link

// renameNoReplace moves tmp to path unless path exists. A hard link fails
// if path appeared meanwhile, so a concurrent writer is never overwritten;
// where the file system has no hard links, a check before the rename is
// the best it allows.
func renameNoReplace(tmp, path string) error {
	err := link(tmp, path)
	switch {
	case err == nil:
		return os.Remove(tmp)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%s: %w", path, ErrExists)
	}
	if _, statErr := os.Lstat(path); statErr == nil {
		return fmt.Errorf("%s: %w", path, ErrExists)
	}
	return os.Rename(tmp, path)
}

// keepBackup keeps the current content of path under a backup name before
// it is replaced: a copy, mode 0600 whatever the file's mode, since the old
// content may hold what the new one takes away.
func keepBackup(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("keeping a backup of %s: %w", path, err)
	}
	backup := BackupName(path, time.Now())
	if _, err := WriteFile(backup, data, 0o600, Options{}); err != nil {
		return "", fmt.Errorf("keeping a backup of %s: %w", path, err)
	}
	return backup, nil
}

// BackupName is the name a backup of path taken at t gets:
// PATH.YYYYMMDDTHHMMSSZ-XXXXXX.bak, with the file name shortened where the
// whole would be too long for the file system.
func BackupName(path string, t time.Time) string {
	suffix := fmt.Sprintf(".%s-%s.bak", t.UTC().Format("20060102T150405Z"), randomSuffix()[:6])
	return filepath.Join(filepath.Dir(path), shortName(filepath.Base(path), maxNameBytes-len(suffix))+suffix)
}

// SyncDir makes a rename or creation in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Windows cannot sync a directory; there the rename is as durable as
	// the platform makes it.
	if err := d.Sync(); err != nil && runtime.GOOS != "windows" {
		return err
	}
	return nil
}

// MkdirAll creates dir and its missing parents with mode 0700 whatever the
// umask (on Windows, a DACL for the owner, Administrators and SYSTEM that
// what is created in them inherits), and makes an existing dir 0700 only if
// create made it.
func MkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(parent); err != nil {
			return err
		}
	}
	if err := mkdirPrivate(dir); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// MkdirNew is MkdirAll, and returns a function that removes the
// directories it made (deepest first, each only while empty), for a command
// that fails after making them: a failed command leaves no directory of its
// own behind.
func MkdirNew(dir string) (undo func(), err error) {
	var made []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		made = append(made, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	undo = func() {
		for _, d := range made {
			os.Remove(d)
		}
	}
	if err := MkdirAll(dir); err != nil {
		undo()
		return nil, err
	}
	return undo, nil
}
