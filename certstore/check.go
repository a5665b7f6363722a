package certstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/tpmkey"
)

// FindingKind classifies what store check found.
type FindingKind string

const (
	// FindingBroken: a guardian entry that cannot be read whole.
	FindingBroken FindingKind = "broken"
	// FindingLeftover: the remains of a write that was interrupted.
	FindingLeftover FindingKind = "leftover"
	// FindingUnexpected: something in the store guardctl did not put there.
	FindingUnexpected FindingKind = "unexpected"
	// FindingPermissions: a key or directory readable by others.
	FindingPermissions FindingKind = "permissions"
	// FindingUnverified: a guardian in trash/ or lost+found/ that is not
	// what guardctl moved there, as it was (planted, changed since, dated
	// in the future): restore and recover ask before bringing it back.
	FindingUnverified FindingKind = "unverified"
	// FindingTPMKey: a TPM guardian whose keys do not load into this TPM
	// (another machine's TPM, a TPM cleared since, or no TPM). Nothing
	// repairs that: the escrow guardian opens its key protectors.
	FindingTPMKey FindingKind = "tpm-key"

	// The Hyper-V store's own findings (FindingBroken and FindingLeftover
	// are used there too).

	// FindingNoPrivateKey: a guardian whose private keys are missing or
	// cannot be opened, so this host cannot be the owner of a key
	// protector or unwrap one with it. Nothing can repair that but
	// importing the keys again.
	FindingNoPrivateKey FindingKind = "no-private-key"
	// FindingUnregistered: a pair guardctl added while HgsClient was
	// missing; --repair registers it.
	FindingUnregistered FindingKind = "unregistered"
	// FindingGenerations: several generations of the same guardian name.
	FindingGenerations FindingKind = "generations"
	// FindingExpired and FindingExpiring: certificates past, or within
	// ExpiringWithin of, their end of validity. Hyper-V still unwraps with
	// them; plan a new guardian.
	FindingExpired  FindingKind = "expired"
	FindingExpiring FindingKind = "expiring"
	// FindingMisplaced: a guardian's certificate in LocalMachine's
	// Personal store, where an imported PFX lands when no store is named
	// and where Hyper-V does not look.
	FindingMisplaced FindingKind = "misplaced"
)

// Finding is one problem in the store.
type Finding struct {
	Kind   FindingKind `json:"kind"`
	Path   string      `json:"path"` // relative to the store
	Name   string      `json:"name,omitempty"`
	Detail string      `json:"detail"`
	Action string      `json:"action,omitempty"` // what --repair did
	// Repairable: --repair acts on this finding (it did when Action is
	// set). A dry run of --repair reports what it would change with it.
	Repairable bool `json:"repairable,omitempty"`
	// CannotRepair says why --repair cannot act on a finding it would
	// otherwise repair (lost+found is not a directory, the entry cannot be
	// moved), or why it failed to, and what to do. A dry run checks the
	// same, so that it predicts what the real run does.
	CannotRepair string `json:"cannotRepair,omitempty"`
	// Warning: worth knowing, but not a problem (store check still exits
	// 0 for it).
	Warning bool `json:"warning,omitempty"`
}

// checker gathers the findings of Dir.Check and, with repair, acts on
// each one as it is found. A repair that fails for one finding is noted in
// it and the check goes on with the others.
type checker struct {
	s      *Dir
	repair bool
	out    []Finding
}

func (c *checker) rel(p string) string {
	r, _ := filepath.Rel(c.s.dir, p)
	return filepath.ToSlash(r)
}

// report adds a finding --repair does not act on.
func (c *checker) report(f Finding) { c.out = append(c.out, f) }

// move adds f, found at path, which --repair moves to lost+found.
func (c *checker) move(f Finding, path string) {
	f.Repairable = true
	if err := c.s.canMoveAside(path); err != nil {
		f.Repairable, f.CannotRepair = false, err.Error()
	} else if c.repair {
		if dst, err := c.s.moveAside(path); err != nil {
			f.Repairable, f.CannotRepair = false, fmt.Sprintf("moving it to %s failed: %v", lostDir, err)
		} else {
			f.Action = "moved to " + c.rel(dst)
		}
	}
	c.out = append(c.out, f)
}

// removeEmpty adds f, an empty directory found at path, which --repair
// removes: it holds nothing to keep.
func (c *checker) removeEmpty(f Finding, path string) {
	f.Repairable = true
	if c.repair {
		if err := os.Remove(path); err != nil {
			f.Repairable, f.CannotRepair = false, fmt.Sprintf("removing it failed: %v", err)
		} else {
			f.Action = "removed (it was empty)"
		}
	}
	c.out = append(c.out, f)
}

// chmod adds f, found at path, which --repair sets to mode.
func (c *checker) chmod(f Finding, path string, mode fs.FileMode) {
	f.Repairable = true
	if c.repair {
		if err := os.Chmod(path, mode); err != nil {
			f.Repairable, f.CannotRepair = false, fmt.Sprintf("setting mode %04o failed: %v", mode, err)
		} else {
			f.Action = fmt.Sprintf("set mode %04o", mode)
		}
	}
	c.out = append(c.out, f)
}

// Check inspects the store under the exclusive lock (so that no write is in
// flight and every temporary entry is a leftover) and, with repair, moves
// broken entries and leftovers to lost+found and tightens permissions.
// Nothing is ever deleted but empty directories (and, when the lock is
// taken, the purges a killed run left, which the user asked to delete). A repair that cannot be made (or fails) for one
// finding says so in its CannotRepair, and the others are still made; the
// error is for a store that cannot be checked at all.
func (s *Dir) Check(repair bool) ([]Finding, error) {
	if _, err := os.Stat(s.dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	// A store that is not safe to use is reported, not repaired: what
	// someone else could change cannot be trusted to be put right here.
	// Nor is one whose own directories are not directories.
	if ps := s.trustProblems(); len(ps) > 0 {
		return ps, nil
	}
	// The store's own directories must let their owner in before anything
	// in them can be locked or looked at; setting a mode needs no lock.
	c := &checker{s: s, repair: repair}
	for _, d := range []string{s.dir, s.path(guardiansDir), s.path(trashDir), s.path(tmpDir), s.path(lostDir)} {
		if closedDir(d, c) {
			return c.out, nil
		}
	}
	unlock, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if d := s.lostProblem(); d != "" {
		c.report(Finding{Kind: FindingLayout, Path: lostDir, Detail: d})
	}
	s.checkPerm(s.dir, c)
	names, err := readNames(s.path(guardiansDir))
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		p := s.path(guardiansDir, n)
		closed := s.checkClosed(p, c)
		e := loadEntry(p, n, s.tpm)
		if closed {
			// What its owner cannot read yet is not damage: the real
			// run reads it once its mode is set.
			e = withoutDenied(e)
		}
		if e.Broken() && e.MetaOnly {
			// Certificates and keys that verify as a pair stay where
			// they are; only the metadata is rebuilt.
			f := Finding{Kind: FindingBroken, Path: c.rel(p), Name: n, Detail: e.Problem, Repairable: true}
			if err := s.canRebuildMeta(p); err != nil {
				f.Repairable, f.CannotRepair = false, err.Error()
			} else if repair {
				if f.Action, err = s.rebuildMeta(p, e); err != nil {
					f.Repairable, f.CannotRepair = false, fmt.Sprintf("rebuilding its %s failed: %v", metaFile, err)
				}
			}
			c.report(f)
			continue
		}
		if e.Broken() {
			c.move(Finding{Kind: FindingBroken, Path: c.rel(p), Name: n, Detail: e.Problem}, p)
			continue
		}
		keyFiles := []string{"", signingKeyFile, encryptionKeyFile}
		if e.Meta.Keys == guardian.KeysTPM {
			keyFiles = []string{"", signingTPMKeyFile, encryptionTPMKeyFile}
			s.checkTPMKeys(e, c.rel(p), c)
		}
		for _, f := range keyFiles {
			if f != "" && !e.Meta.HasPrivateKeys {
				continue
			}
			s.checkPerm(filepath.Join(p, f), c)
		}
	}
	if err := s.checkTrash(c); err != nil {
		return nil, err
	}
	s.checkLost(c)
	leftovers, err := readNames(s.path(tmpDir))
	if err != nil {
		return nil, err
	}
	for _, n := range leftovers {
		p := s.path(tmpDir, n)
		f := Finding{Kind: FindingLeftover, Path: c.rel(p), Detail: "left by an interrupted write; it was never part of the store"}
		if emptyDir(p) {
			c.removeEmpty(f, p)
			continue
		}
		c.move(f, p)
	}
	top, err := readNames(s.dir)
	if err != nil {
		return nil, err
	}
	for _, n := range top {
		switch n {
		case guardiansDir, trashDir, tmpDir, lostDir, lockName, movesFile:
			continue
		}
		p := s.path(n)
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && strings.HasPrefix(n, atomicfile.TempPrefix) {
			// moves.json's temporary file, from a run killed while
			// writing it under the lock this check holds: a record of
			// a move, never a guardian.
			f := Finding{Kind: FindingLeftover, Path: c.rel(p), Detail: "a temporary file of an interrupted write", Repairable: true}
			if repair {
				if err := os.Remove(p); err != nil {
					f.Repairable, f.CannotRepair = false, fmt.Sprintf("removing it failed: %v", err)
				} else {
					f.Action = "removed (an interrupted write's temporary file)"
				}
			}
			c.report(f)
			continue
		}
		c.move(Finding{Kind: FindingUnexpected, Path: c.rel(p), Detail: "not part of a guardctl store"}, p)
	}
	return c.out, nil
}

// checkTPMKeys reports a TPM guardian whose keys do not load into the
// store's TPM, once (the first key that fails says why).
func (s *Dir) checkTPMKeys(e *Entry, rel string, c *checker) {
	for _, k := range []any{e.Guardian.SigningKey, e.Guardian.EncryptionKey} {
		tk, ok := k.(*tpmkey.Key)
		if !ok {
			continue
		}
		if err := tk.Check(); err != nil {
			c.report(Finding{Kind: FindingTPMKey, Path: rel, Name: e.Name, Detail: err.Error() +
				"; nothing here can repair that: open its key protectors with the escrow guardian and grant a new TPM guardian"})
			return
		}
	}
}

// checkTrash finds what in trash/ is not a removed guardian (trash/ID/NAME,
// ID as newID makes it, NAME a guardian's directory): --repair moves each
// such thing to lost+found, like a broken entry (a guardian in a trash
// entry with a malformed ID goes there whole, where store recover finds
// it), and removes a trash entry it leaves empty. An empty trash entry,
// left by an interrupted remove or restore, is a leftover.
func (s *Dir) checkTrash(c *checker) error {
	ids, err := readNames(s.path(trashDir))
	if err != nil {
		return err
	}
	moves := s.loadMoves()
	for _, id := range ids {
		p := s.path(trashDir, id)
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() {
			c.move(Finding{Kind: FindingUnexpected, Path: c.rel(p), Detail: "not a trash entry (a directory ID/NAME holding a removed guardian)"}, p)
			continue
		}
		names, err := readNames(p)
		if err != nil {
			c.report(Finding{Kind: FindingUnexpected, Path: c.rel(p), Detail: "cannot be read: " + describe(err)})
			continue
		}
		if len(names) == 0 {
			c.removeEmpty(Finding{Kind: FindingLeftover, Path: c.rel(p), Detail: "an empty trash entry, left by an interrupted remove or restore"}, p)
			continue
		}
		made, validID := trashTime(id)
		moved := 0
		for _, n := range names {
			q := filepath.Join(p, n)
			d := trashedProblem(q, n)
			if d == "" && validID {
				if problem := s.movedProblem(moves, q, made); problem != "" {
					// Moved to lost+found it no longer stands for a
					// removal 'guardian restore' brings back.
					c.move(Finding{Kind: FindingUnverified, Path: c.rel(q), Name: n, Detail: problem}, q)
					if c.out[len(c.out)-1].Action != "" {
						moved++
					}
				}
				continue
			}
			f := Finding{Kind: FindingUnexpected, Path: c.rel(q), Detail: d}
			if d == "" {
				f.Name = n
				f.Detail = fmt.Sprintf("%s is not a trash ID (guardctl makes them as YYYYMMDDTHHMMSS.NNNNNNNNNZ-XXXXXXXX), so this is not a removed guardian 'guardian restore' can find", id)
			}
			c.move(f, q)
			if c.out[len(c.out)-1].Action != "" {
				moved++
			}
		}
		if moved == len(names) {
			os.Remove(p) // now empty: it held nothing else
		}
	}
	return nil
}

// checkLost reports the guardians in lost+found that are not what guardctl
// moved there, as it was (planted, changed, dated in the future); --repair
// leaves them, and store recover asks before it brings one back. What
// guardctl moved there from a leftover is recorded as such and not
// reported.
func (s *Dir) checkLost(c *checker) {
	if s.lostProblem() != "" {
		return
	}
	ids, err := readNames(s.path(lostDir))
	if err != nil {
		return
	}
	moves := s.loadMoves()
	for _, id := range ids {
		it := s.lostItem(id)
		if it.Kind != "guardian" {
			continue
		}
		p := s.path(lostDir, id)
		if problem := s.movedProblem(moves, p, it.MovedAt); problem != "" {
			c.report(Finding{Kind: FindingUnverified, Path: c.rel(p), Name: it.Name, Detail: problem + "; 'guardctl store recover' shows its thumbprints and asks before it brings it back"})
		}
	}
}

// emptyDir reports whether path is a directory (not a link to one) with
// nothing in it.
func emptyDir(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() {
		return false
	}
	names, err := readNames(path)
	return err == nil && len(names) == 0
}

// permFor is the mode a store path should have: private keys 0600,
// directories 0700.
func permFor(path string) fs.FileMode {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return 0o700
	}
	return 0o600
}

func (s *Dir) checkPerm(path string, c *checker) {
	if runtime.GOOS == "windows" {
		return // modes do not express access there; the ACLs of the store's parent do
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&fs.ModeSymlink != 0 {
		return
	}
	if fi.Mode().Perm()&0o077 != 0 {
		c.chmod(Finding{Kind: FindingPermissions, Path: c.rel(path), Detail: fmt.Sprintf("mode %04o lets other users read it; want %04o", fi.Mode().Perm(), permFor(path))}, path, permFor(path))
	}
}

// checkClosed finds, in the guardian entry at dir, the directory and the
// files whose mode denies their owner, the user running guardctl, what the
// store needs (a directory its owner can list and change, files their owner
// can read): a mode problem, not damage. --repair gives each the mode the
// store writes it with. It reports whether any is left as it was (a dry
// run, a chmod that failed): the entry cannot then be read as it will be.
func (s *Dir) checkClosed(dir string, c *checker) (left bool) {
	if closedDir(dir, c) {
		return true // what is in it cannot be looked at until it is set
	}
	for _, f := range []struct {
		name string
		want fs.FileMode
	}{{metaFile, 0o644}, {signingCertFile, 0o644}, {encryptionCertFil, 0o644}, {encryptionSigFile, 0o644}, {signingKeyFile, 0o600}, {encryptionKeyFile, 0o600}} {
		if closed(filepath.Join(dir, f.name), false, 0o400, f.want, "reading it", c) {
			left = true
		}
	}
	return left
}

// closedDir is closed for a directory of the store: its owner must be able
// to list and change it (0700).
func closedDir(dir string, c *checker) bool {
	return closed(dir, true, 0o700, 0o700, "listing or changing it", c)
}

// closed reports (and with repair sets to want) a file or directory this
// user owns whose mode lacks need, the access the store needs: it reports
// whether it is left so (a dry run, a chmod that failed).
func closed(path string, isDir bool, need, want fs.FileMode, denies string, c *checker) bool {
	if runtime.GOOS == "windows" {
		return false // modes do not express access there
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.IsDir() != isDir || (!isDir && !fi.Mode().IsRegular()) {
		return false // absent, unreadable or of another type: loadEntry says so
	}
	if uid, ok := ownerOf(fi); !ok || uid != os.Geteuid() || fi.Mode().Perm()&need == need {
		return false
	}
	c.chmod(Finding{Kind: FindingPermissions, Path: c.rel(path), Detail: fmt.Sprintf("mode %04o denies its owner %s; want %04o", fi.Mode().Perm(), denies, want)}, path, want)
	return c.out[len(c.out)-1].Action == ""
}

// withoutDenied is e without its "permission denied" problems, for an entry
// whose modes checkClosed found too closed and left so: what is behind them
// is unknown until they are set. It keeps every other problem (and then is
// not taken for one whose metadata alone can be rebuilt).
func withoutDenied(e *Entry) *Entry {
	var kept []string
	for _, p := range e.Problems {
		if !strings.HasSuffix(p, ": "+describe(fs.ErrPermission)) {
			kept = append(kept, p)
		}
	}
	f := *e
	f.Problems, f.Problem, f.MetaOnly = kept, strings.Join(kept, "; "), false
	return &f
}

// canRebuildMeta says why rebuildMeta cannot be done on the entry at dir,
// or nil: its damaged guardian.json must be moved aside, and a new one
// written in dir.
func (s *Dir) canRebuildMeta(dir string) error {
	old := filepath.Join(dir, metaFile)
	if _, err := os.Lstat(old); err == nil {
		if err := s.canMoveAside(old); err != nil {
			return err
		}
	}
	if !writable(dir) {
		return fmt.Errorf("%s is not writable by this user, so a new %s cannot be written there: make it writable (chmod u+w, as its owner) and run --repair again", dir, metaFile)
	}
	return nil
}

// rebuildMeta writes a new guardian.json for the entry at dir, whose
// certificates and keys verify as a pair (Entry.MetaOnly); a damaged
// guardian.json is moved to lost+found first. It returns what it did.
func (s *Dir) rebuildMeta(dir string, e *Entry) (string, error) {
	action := "rebuilt " + metaFile + " from the entry's certificates and keys"
	old := filepath.Join(dir, metaFile)
	if _, err := os.Lstat(old); err == nil {
		dst, err := s.moveAsideAs(old, e.Name+"-"+metaFile)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(s.dir, dst)
		action += "; the damaged one was moved to " + filepath.ToSlash(rel)
	}
	// A TPM guardian's blobs carry their policy; the TPM's identity and
	// the PCR values at creation are gone with the old metadata.
	meta := metaFor(e.Guardian, e.Name, OriginRecovered)
	if fi, err := os.Stat(filepath.Join(dir, signingCertFile)); err == nil {
		meta.AddedAt = fi.ModTime().UTC().Truncate(time.Second)
	}
	mj, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeNew(old, append(mj, '\n'), 0o644); err != nil {
		return "", err
	}
	return action, atomicfile.SyncDir(dir)
}
