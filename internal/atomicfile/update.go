package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrChanged is returned by Update when, where no lock can be taken on the
// file, it was changed by someone else between the read and the write
// every time it was tried.
var ErrChanged = errors.New("the file was changed by another program while it was being rewritten")

// UpdateOptions control Update.
type UpdateOptions struct {
	// MaxSize bounds the file read; a larger file is refused.
	MaxSize int64
	// Backup keeps the previous content as PATH.TIMESTAMP.bak, mode 0600.
	Backup bool
	// DryRun reads the file and calls change as a real run does, and
	// writes nothing: changed says whether the real run would write.
	DryRun bool
	// DeferDirSync leaves syncing the file's directory to the caller
	// (SyncDir, before it calls the change done), so that a batch of
	// files in one directory syncs it once. The new content is synced
	// before it replaces the old either way.
	DeferDirSync bool
	// StagingDir, when set, is a private directory in the file's
	// directory (MakeStagingDir) where a backup under way is linked, so
	// that a batch of files in one directory makes one, not one per file.
	StagingDir string
}

// Update rewrites the file at path in one read-modify-write that no other
// Update of the same file interleaves with: change gets the current content
// and returns the new content, or nil to leave the file as it is. Where the
// platform has advisory locks (every unix), the file is locked while it is
// read, changed and replaced, and a run that waited on a file replaced
// meanwhile starts again on the new one, so two concurrent changes are both
// kept. Elsewhere the file is read again just before it is replaced, and a
// change made meanwhile makes the whole read-modify-write start again. The
// new file keeps the old one's mode. It refuses a symbolic link.
func Update(path string, opt UpdateOptions, change func(old []byte) ([]byte, error)) (backup string, changed bool, err error) {
	if !opt.DryRun {
		removeLeftoversOnce(filepath.Dir(path))
	}
	for attempt := 0; ; attempt++ {
		f, err := openLocked(path)
		if err != nil {
			return "", false, err
		}
		backup, changed, err := updateOnce(f, path, opt, change)
		f.Close() // releases the lock
		if errors.Is(err, errRetry) {
			if attempt < 100 {
				continue
			}
			err = fmt.Errorf("%s: %w", path, ErrChanged)
		}
		return backup, changed, err
	}
}

// errRetry: the file at path is no longer the one that was locked or read.
var errRetry = errors.New("retry")

func updateOnce(f *os.File, path string, opt UpdateOptions, change func([]byte) ([]byte, error)) (string, bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return "", false, err
	}
	if same, err := stillAt(fi, path); err != nil || !same {
		if err != nil {
			return "", false, err
		}
		return "", false, errRetry
	}
	if !fi.Mode().IsRegular() {
		return "", false, fmt.Errorf("%s is not a regular file", path)
	}
	old, err := ReadBounded(f, opt.MaxSize)
	if err != nil {
		return "", false, fmt.Errorf("reading %s: %w", path, err)
	}
	if !locks {
		f.Close() // a file open here cannot be renamed over
	}
	next, err := change(old)
	if err != nil || next == nil {
		return "", false, err
	}
	if opt.DryRun {
		return "", true, nil
	}
	if !locks {
		// No lock: make sure the file is still what was read.
		now, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(now, old) {
			return "", false, errRetry
		}
	}
	// The new content is written and synced in full before any name
	// changes.
	st, err := stage(path, next, fi.Mode().Perm())
	if err != nil {
		return "", false, err
	}
	defer st.discard()
	var backup, kept string
	if opt.Backup {
		backup = BackupName(path, time.Now())
		if kept, err = keepOld(f, fi, old, backup, opt.StagingDir); err != nil {
			return "", false, fmt.Errorf("keeping a backup of %s: %w", path, err)
		}
	}
	if _, err := st.place(path, Options{Overwrite: true}); err != nil {
		if kept != "" {
			dropKept(kept, backup, opt.StagingDir)
		}
		return "", false, err
	}
	var backupErr error
	if kept != backup {
		// Only the temporary name is left on the old file now: it can
		// become private, and then the backup. Where it cannot (root
		// without CAP_FOWNER, a root-squashed NFS mount) the backup is a
		// copy after all.
		err := makePrivate(f)
		if err == nil {
			err = os.Rename(kept, backup)
		}
		dropKept(kept, backup, opt.StagingDir)
		if err != nil {
			if _, err := WriteFile(backup, old, 0o600, Options{NoDirSync: true}); err != nil {
				backup, backupErr = "", fmt.Errorf("%s was changed, but its backup could not be kept: %w", path, err)
			}
		}
	}
	// One sync of the directory makes both names durable.
	if !opt.DeferDirSync {
		if err := SyncDir(filepath.Dir(path)); err != nil {
			return backup, true, err
		}
	}
	return backup, true, backupErr
}

// makePrivate makes the old file, which only a backup's temporary name is
// left on, 0600; tests make it fail.
var makePrivate = func(f *os.File) error { return f.Chmod(0o600) }

// keepOld keeps the content just read from the locked file f for the
// backup named backup, and returns the name it is under. Where it can, that
// is the old file itself (a hard link to the very file read, as durable as
// it was): no copy is written and synced, which in a batch halves the
// fsyncs. The link is made in a private directory (staging, or a new one of
// its own), so that while the old file still has its old mode, and after a
// kill, no one but its owner reaches it through that name; Update makes it
// 0600 once the file's own name has moved on to the new content, and only
// then moves it to backup, so that the file never changes mode while it is
// in use. It links only a file it may change the mode of and that has no
// other name. Elsewhere (no hard links, another owner, a second name) the
// backup is a copy, written and synced, mode 0600, under its own name.
func keepOld(f *os.File, fi fs.FileInfo, old []byte, backup, staging string) (string, error) {
	if locks && useAnonymous && mayBecomeBackup(fi) {
		dir := staging
		if dir == "" {
			dir = tempName(backup)
			if os.Mkdir(dir, 0o700) != nil { // the umask only narrows it
				dir = ""
			}
		}
		if dir != "" {
			kept := filepath.Join(dir, filepath.Base(tempName(backup)))
			if linkOpen(f, kept) == nil {
				return kept, nil
			}
			if staging == "" {
				os.Remove(dir)
			}
		}
	}
	_, err := WriteFile(backup, old, 0o600, Options{NoDirSync: true})
	return backup, err
}

// dropKept removes what keepOld made that is still there: the name kept
// and, for a link in a directory of its own, that directory.
func dropKept(kept, backup, staging string) {
	os.Remove(kept)
	if kept != backup && staging == "" {
		os.Remove(filepath.Dir(kept))
	}
}

// MakeStagingDir makes a new directory of mode 0700 in dir for the backups
// of the files in dir that Update keeps by linking (UpdateOptions
// StagingDir). The caller removes it (os.Remove) once those Updates are
// done; a kill leaves it, private, with what was under way. It is marked
// live for as long as this process runs, and the empty ones earlier runs
// that were killed left in dir are removed first.
func MakeStagingDir(dir string) (string, error) {
	RemoveLeftovers(dir)
	name := tempName(filepath.Join(dir, "backups"))
	if err := os.Mkdir(name, 0o700); err != nil {
		return "", err
	}
	if f, err := os.Open(name); err == nil {
		if markLive(f) {
			stagingMarks.Store(name, f) // held until the process ends
		} else {
			f.Close()
		}
	}
	return name, nil
}

// stagingMarks holds the open staging directories that carry a live mark.
var stagingMarks sync.Map

// cleanedDirs holds the directories whose leftovers this process removed:
// a batch of Updates in one directory looks there once, not once per file.
var cleanedDirs sync.Map

func removeLeftoversOnce(dir string) {
	if _, done := cleanedDirs.LoadOrStore(dir, true); !done {
		RemoveLeftovers(dir)
	}
}

// ReadBounded reads f to its end, at most limit bytes (none for 0): a
// regular file or block device larger than limit is refused by its size
// before a byte is read, and is read into a buffer of that size, so that
// memory is about the file's size, not twice the limit; anything longer
// than limit is a *TooLargeError.
func ReadBounded(f *os.File, limit int64) ([]byte, error) {
	if limit <= 0 {
		return io.ReadAll(f)
	}
	var buf bytes.Buffer
	if fi, err := f.Stat(); err == nil {
		size := int64(-1)
		switch mode := fi.Mode(); {
		case mode.IsRegular():
			size = fi.Size()
		case mode&fs.ModeDevice != 0 && mode&fs.ModeCharDevice == 0:
			// A block device: its size is where its end is.
			if end, err := f.Seek(0, io.SeekEnd); err == nil {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return nil, err
				}
				size = end
			}
		}
		if size > limit {
			return nil, &TooLargeError{Limit: limit}
		}
		if size >= 0 {
			buf.Grow(int(size) + bytes.MinRead)
		}
	}
	_, err := buf.ReadFrom(io.LimitReader(f, limit+1))
	data := buf.Bytes()
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &TooLargeError{Limit: limit}
	}
	return data, nil
}

// stillAt reports whether path still names the file whose information is fi.
func stillAt(fi fs.FileInfo, path string) (bool, error) {
	now, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if now.Mode()&fs.ModeSymlink != 0 {
		return false, fmt.Errorf("%s is a symbolic link; refusing to write through it", path)
	}
	return os.SameFile(fi, now), nil
}
