package certstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
)

// ErrUntrusted: the store's own directories are not safe to use: a symbolic
// link among them, writable by other users, or owned by another user. Any
// of these lets someone else change what the store holds, and the store is
// what decides which owners this host trusts.
var ErrUntrusted = errors.New("the store is not safe to use")

// FindingUntrusted: a store path that makes the store unsafe (ErrUntrusted).
const FindingUntrusted FindingKind = "untrusted"

// trustProblems lists what makes the store unsafe to use: one message per
// path, empty when it is safe. The store directory itself may be reached
// through a link (the administrator's layout); nothing inside it may be a
// link.
func (s *Dir) trustProblems() []Finding {
	var out []Finding
	for _, rel := range []string{"", guardiansDir, trashDir, tmpDir, lostDir, lockName} {
		p := s.path(rel)
		var fi fs.FileInfo
		var err error
		if rel == "" {
			fi, err = os.Stat(p)
		} else {
			fi, err = os.Lstat(p)
		}
		if err != nil {
			continue // absent (created 0700 when needed) or unreadable (reported when used)
		}
		shown := rel
		if shown == "" {
			shown = "."
		}
		add := func(format string, args ...any) {
			out = append(out, Finding{Kind: FindingUntrusted, Path: shown, Detail: fmt.Sprintf(format, args...)})
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			add("%s is a symbolic link; refusing to use the store", p)
			continue
		}
		if runtime.GOOS == "windows" {
			continue // modes and owners do not express access there; the ACLs do
		}
		if fi.IsDir() && fi.Mode().Perm()&0o022 != 0 {
			add("%s is writable by other users (mode %04o); refusing to use it", p, fi.Mode().Perm())
		}
		if uid, ok := ownerOf(fi); ok && uid != os.Geteuid() {
			add("%s is owned by user %d, not by the user running guardctl (%d); refusing to use it", p, uid, os.Geteuid())
		}
	}
	return out
}

// checkTrust fails with ErrUntrusted on the first of trustProblems.
func (s *Dir) checkTrust() error {
	if ps := s.trustProblems(); len(ps) > 0 {
		return fmt.Errorf("%w: %s", ErrUntrusted, ps[0].Detail)
	}
	return nil
}
