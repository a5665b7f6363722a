package certstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/tpmkey"
)

const (
	guardiansDir = "guardians"
	trashDir     = "trash"
	tmpDir       = ".tmp"
	lostDir      = "lost+found"
	lockName     = ".lock"
)

// Dir is guardctl's own guardian store in a directory, on every OS.
//
// Layout, under the store directory (0700):
//
//	.lock                     the lock every change holds exclusively
//	guardians/NAME/           one directory per guardian (0700):
//	    guardian.json         metadata (name, private keys or not, origin)
//	    signing.crt           PEM certificates
//	    encryption.crt
//	    signing.key           PKCS#8 PEM private keys, 0600 (absent when public only)
//	    encryption.key
//	    signing.tpmkey        or, for a TPM guardian, its TPM key blobs
//	    encryption.tpmkey     (TSS2 PRIVATE KEY PEM, 0600) and
//	    encryption.sig        the signature over its encryption certificate
//	trash/ID/NAME/            removed guardians, restorable
//	.tmp/                     entries being written; anything here after a
//	                          crash is a leftover that store check reports
//	lost+found/               what store check --repair moved aside
//	moves.json                what guardctl moved to trash/ and lost+found/
//
// Every change builds a complete entry under .tmp, syncs it, and renames it
// into place under the exclusive lock, so a crash or a concurrent run never
// leaves a half-written guardian or loses one.
type Dir struct {
	dir string
	// LockTimeout is how long a command waits for another one to finish.
	LockTimeout time.Duration
	// tpm is the TPM that TPM guardians' keys are used with (WithTPM).
	tpm *tpmkey.Device
}

// OpenDir returns the store in dir; nothing is created until the first
// change.
func OpenDir(dir string, opts ...Option) *Dir {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return &Dir{dir: dir, LockTimeout: 2 * time.Minute, tpm: o.tpm}
}

// Location is the store's directory.
func (s *Dir) Location() string { return s.dir }

func (s *Dir) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// lock takes the store lock, exclusive for changes and shared for reads. A
// read of a store that does not exist yet needs no lock.
func (s *Dir) lock(exclusive bool) (unlock func(), err error) {
	if err := s.checkTrust(); err != nil {
		return nil, err
	}
	if exclusive {
		for _, d := range []string{s.dir, s.path(guardiansDir), s.path(trashDir), s.path(tmpDir)} {
			if err := atomicfile.MkdirAll(d); err != nil {
				return nil, fmt.Errorf("creating the store: %w", err)
			}
		}
	} else if _, err := os.Stat(s.dir); errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	if exclusive {
		// What MkdirAll just made, or found, must be as safe.
		if err := s.checkTrust(); err != nil {
			return nil, err
		}
	} else if s.pendingReplace() || s.pendingPurge() {
		// A replacement killed half-way: finish it first, so that no
		// reader sees its guardian missing; and a purge, so that its keys
		// do not outlive the run that was deleting them. A reader that
		// cannot write the store reads it as it is.
		if unlock, err := takeLock(s.path(lockName), true, s.LockTimeout); err == nil {
			s.finishReplaces()
			s.finishPurges()
			unlock()
		}
	}
	unlock, err = takeLock(s.path(lockName), exclusive, s.LockTimeout)
	if err != nil || !exclusive {
		return unlock, err
	}
	if err := s.finishReplaces(); err != nil {
		unlock()
		return nil, err
	}
	if err := s.finishPurges(); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// takeLock locks the file at path, exclusive or shared, waiting at most
// timeout.
func takeLock(path string, exclusive bool, timeout time.Duration) (unlock func(), err error) {
	fl := flock.New(path, flock.SetPermissions(0o600))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var ok bool
	if exclusive {
		ok, err = fl.TryLockContext(ctx, 20*time.Millisecond)
	} else {
		ok, err = fl.TryRLockContext(ctx, 20*time.Millisecond)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		if !exclusive && errors.Is(err, os.ErrPermission) {
			// A reader without write access to the lock file (another
			// user's store) still reads; writes are atomic renames.
			return func() {}, nil
		}
		return nil, fmt.Errorf("locking the store: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("%w (waited %s)", ErrLocked, timeout)
	}
	return func() { fl.Unlock() }, nil
}

// newID names a trash or temporary entry: sortable by time, unique.
func newID(now time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return now.UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(b[:])
}

// lostProblem says what is wrong with lost+found, and what to do, when it
// exists and is not a directory: nothing can be moved there.
func (s *Dir) lostProblem() string {
	p := s.path(lostDir)
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
		return layoutProblem(p, lostDir, fi)
	}
	return ""
}

// canMoveAside says why moveAside(path) cannot be done, and what to do, or
// nil when it can: lost+found is (or can be made) a directory this user
// writes, and path can be renamed out of its directory. A dry run checks
// this as the real run does, so that both say the same.
func (s *Dir) canMoveAside(path string) error {
	lost := s.path(lostDir)
	fi, err := os.Lstat(lost)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s is not a directory, so nothing can be moved there (see the %s finding)", lost, FindingLayout)
	case err == nil && !writable(lost):
		return fmt.Errorf("%s is not writable by this user: make it writable (chmod u+w) and run --repair again", lost)
	case errors.Is(err, fs.ErrNotExist) && !writable(s.dir):
		return fmt.Errorf("%s cannot be made: %s is not writable by this user", lost, s.dir)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s cannot be read: %w", lost, err)
	}
	if parent := filepath.Dir(path); !writable(parent) {
		return fmt.Errorf("%s is not writable by this user, so nothing can be moved out of it: make it writable (chmod u+w, as its owner) and run --repair again", parent)
	}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() && !writableFile(path) {
		// Renaming a directory into another one rewrites its "..".
		return fmt.Errorf("it is a directory this user cannot write (mode %04o), which cannot be moved: make it writable (chmod u+w, as its owner) and run --repair again", fi.Mode().Perm())
	}
	return nil
}

// moveAside renames path to lost+found, keeping its base name visible.
func (s *Dir) moveAside(path string) (string, error) {
	return s.moveAsideAs(path, filepath.Base(path))
}

// moveAsideAs renames path to lost+found under base, after a unique ID.
func (s *Dir) moveAsideAs(path, base string) (string, error) {
	if err := atomicfile.MkdirAll(s.path(lostDir)); err != nil {
		return "", err
	}
	dst := s.path(lostDir, newID(time.Now())+"-"+base)
	s.recordMove(path, dst, s.knownContent(path))
	if err := os.Rename(path, dst); err != nil {
		return "", err
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return "", err
	}
	return dst, atomicfile.SyncDir(s.path(lostDir))
}
