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

// ErrLayout: one of the store's own paths is not what the store needs there
// (guardians/ a regular file, .lock a directory, the store itself a file).
// Nothing can be read or written in the store until it is put right.
var ErrLayout = errors.New("the store's layout is damaged")

// FindingLayout: a store path of the wrong type (ErrLayout).
const FindingLayout FindingKind = "layout"

// trustProblems lists what makes the store unsafe or impossible to use:
// one finding per path (FindingUntrusted or FindingLayout), empty when it
// is safe. The store directory itself may be reached through a link (the
// administrator's layout); nothing inside it may be a link.
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
		// lost+found is only needed to repair: Check reports it.
		if d := layoutProblem(p, rel, fi); d != "" && rel != lostDir {
			out = append(out, Finding{Kind: FindingLayout, Path: shown, Detail: d})
			if rel == "" {
				return out // nothing under it can be looked at
			}
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

// layoutProblem says what is wrong, and what to do, when the store path p
// (rel inside the store) is not of the type the store needs there: the
// store and its directories directories, .lock a regular file. Empty when
// it is right.
func layoutProblem(p, rel string, fi fs.FileInfo) string {
	switch {
	case rel == "" && !fi.IsDir():
		return fmt.Sprintf("%s is %s, not a directory: --store (or GUARDCTL_STORE) must name a store directory, or a path where guardctl can make one", p, typeOf(fi))
	case rel == lockName && !fi.Mode().IsRegular():
		return fmt.Sprintf("%s is %s, not the store's lock file: rename it (mv %s %s.old; an empty directory can just be removed) and guardctl makes a new one", p, typeOf(fi), p, p)
	case rel != "" && rel != lockName && !fi.IsDir():
		return fmt.Sprintf("%s is %s, not a directory: rename it (mv %s %s.old), and 'guardctl store check --repair' then moves it to %s", p, typeOf(fi), p, p, lostDir)
	}
	return ""
}

// typeOf names the type of file fi describes, with its article.
func typeOf(fi fs.FileInfo) string {
	m := fi.Mode()
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "neither a file nor a directory"
}

// checkTrust fails with ErrUntrusted or ErrLayout on the first of
// trustProblems.
func (s *Dir) checkTrust() error {
	if ps := s.trustProblems(); len(ps) > 0 {
		if ps[0].Kind == FindingLayout {
			return fmt.Errorf("%w: %s", ErrLayout, ps[0].Detail)
		}
		return fmt.Errorf("%w: %s", ErrUntrusted, ps[0].Detail)
	}
	return nil
}
