package certstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/internal/testhook"
)

// Add puts g into the store. With replace, an existing guardian of the same
// name is moved to the trash (so it can be restored) before g takes its
// place; without it, ErrExists. The Change names the trash ID of what it
// replaced.
func (s *Dir) Add(g *guardian.Guardian, origin Origin, replace bool) (*Change, error) {
	if err := guardian.ValidateName(g.Name); err != nil {
		return nil, err
	}
	unlock, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	replacedID, err := s.add(g, origin, replace)
	if err != nil {
		return nil, err
	}
	return &Change{Entry: loadEntry(s.path(guardiansDir, g.Name), g.Name, s.tpm), ReplacedID: replacedID}, nil
}

// add does Add's work under the lock.
func (s *Dir) add(g *guardian.Guardian, origin Origin, replace bool) (replacedID string, err error) {
	live := s.path(guardiansDir, g.Name)
	_, statErr := os.Lstat(live)
	exists := statErr == nil
	if exists && !replace {
		return "", fmt.Errorf("guardian %q %w", g.Name, ErrExists)
	}
	tmp := s.path(tmpDir, newID(time.Now())+"-"+g.Name)
	meta := metaFor(g, g.Name, origin)
	if err := writeEntry(tmp, g, meta); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("writing guardian %q: %w", g.Name, err)
	}
	if exists {
		// Replacing is two renames (the old entry to the trash, the new
		// one into place). The new entry is first renamed to a name that
		// says so, so that a run killed between the two is finished by the
		// next one (finishReplaces): NAME is never left absent.
		staged := s.path(tmpDir, replacePrefix+newID(time.Now())+"-"+g.Name)
		if err := os.Rename(tmp, staged); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
		tmp = staged
		if err := atomicfile.SyncDir(s.path(tmpDir)); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
		if replacedID, err = s.toTrash(g.Name); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
		if testhook.BetweenReplaceRenames != nil {
			testhook.BetweenReplaceRenames()
		}
	}
	if err := os.Rename(tmp, live); err != nil {
		return replacedID, fmt.Errorf("installing guardian %q: %w", g.Name, err)
	}
	if err := atomicfile.SyncDir(s.path(guardiansDir)); err != nil {
		return replacedID, err
	}
	return replacedID, atomicfile.SyncDir(s.path(tmpDir))
}

// replacePrefix starts the name of a new entry, under .tmp, that is
// replacing a live one: whole, and meant to be in place.
const replacePrefix = "replace-"

// finishReplaces completes replacements a killed run left between their two
// renames (the old entry in the trash, the new one still under .tmp): the
// new entry is put in place. One whose old entry is still live never took
// it away, and stays a leftover for store check. The exclusive lock is held.
func (s *Dir) finishReplaces() error {
	names, err := readNames(s.path(tmpDir))
	if err != nil {
		return err
	}
	idLen := len(newID(time.Now()))
	for _, n := range names {
		if !strings.HasPrefix(n, replacePrefix) || len(n) <= len(replacePrefix)+idLen+1 {
			continue
		}
		name := n[len(replacePrefix)+idLen+1:]
		if guardian.ValidateName(name) != nil {
			continue
		}
		live := s.path(guardiansDir, name)
		if _, err := os.Lstat(live); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.Rename(s.path(tmpDir, n), live); err != nil {
			return fmt.Errorf("finishing the interrupted replacement of guardian %q: %w", name, err)
		}
		if err := atomicfile.SyncDir(s.path(guardiansDir)); err != nil {
			return err
		}
		if err := atomicfile.SyncDir(s.path(tmpDir)); err != nil {
			return err
		}
	}
	return nil
}

// pendingReplace reports whether a killed replacement waits under .tmp.
func (s *Dir) pendingReplace() bool {
	names, _ := readNames(s.path(tmpDir))
	for _, n := range names {
		if strings.HasPrefix(n, replacePrefix) {
			return true
		}
	}
	return false
}

// toTrash moves the live entry name to trash/ID/name; the lock is held.
func (s *Dir) toTrash(name string) (string, error) {
	id := newID(time.Now())
	holder := s.path(trashDir, id)
	if err := atomicfile.MkdirAll(holder); err != nil {
		return "", err
	}
	// Recorded before the move, so that a run killed after it leaves no
	// unrecorded entry (a record of what never arrived is dropped later).
	// A record that cannot be written only makes restore ask.
	s.recordMove(s.path(guardiansDir, name), filepath.Join(holder, name), true)
	if err := os.Rename(s.path(guardiansDir, name), filepath.Join(holder, name)); err != nil {
		os.Remove(holder)
		return "", fmt.Errorf("moving guardian %q to the trash: %w", name, err)
	}
	if err := atomicfile.SyncDir(holder); err != nil {
		return "", err
	}
	return id, atomicfile.SyncDir(s.path(guardiansDir))
}

// Get reads one guardian. A broken entry is returned with its Problem set,
// not as an error; ErrNotFound when there is no entry.
func (s *Dir) Get(name string) (*Entry, error) {
	if err := guardian.ValidateName(name); err != nil {
		return nil, err
	}
	unlock, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := s.path(guardiansDir, name)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		// No entry (with guardians/ not a directory, there is none either:
		// lock refuses such a store, but never show one made up).
		return nil, fmt.Errorf("guardian %q %w in %s", name, ErrNotFound, s.dir)
	}
	return loadEntry(dir, name, s.tpm), nil
}

// List reads every guardian, broken ones included, sorted by name.
func (s *Dir) List() ([]*Entry, error) {
	unlock, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	names, err := readNames(s.path(guardiansDir))
	if err != nil {
		return nil, err
	}
	out := make([]*Entry, 0, len(names))
	for _, n := range names {
		out = append(out, loadEntry(s.path(guardiansDir, n), n, s.tpm))
	}
	return out, nil
}

func readNames(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range des {
		names = append(names, d.Name())
	}
	sort.Strings(names)
	return names, nil
}

// Remove takes a guardian out of the store, broken or not. Without purge it
// goes to the trash and Restore brings it back; the trash ID is returned.
// With purge it is deleted: first renamed out of the live set, so a crash
// while deleting leaves a leftover, never a half-deleted guardian.
func (s *Dir) Remove(name string, purge bool) (string, error) {
	if err := guardian.ValidateName(name); err != nil {
		return "", err
	}
	unlock, err := s.lock(true)
	if err != nil {
		return "", err
	}
	defer unlock()
	live := s.path(guardiansDir, name)
	if _, err := os.Lstat(live); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("guardian %q %w in %s", name, ErrNotFound, s.dir)
	}
	if !purge {
		return s.toTrash(name)
	}
	doomed := s.path(tmpDir, newID(time.Now())+purgeInfix+name)
	if err := os.Rename(live, doomed); err != nil {
		return "", err
	}
	if err := atomicfile.SyncDir(s.path(guardiansDir)); err != nil {
		return "", err
	}
	return "", os.RemoveAll(doomed)
}

// purgeInfix is between the ID and the guardian's name of an entry, under
// .tmp, that a purge took out of the live set to delete it.
const purgeInfix = "-purge-"

// purgeEntry is the shape of the names Remove gives what it purges.
var purgeEntry = regexp.MustCompile(`^\d{8}T\d{6}\.\d{9}Z-[0-9a-f]{8}` + purgeInfix)

// finishPurges deletes what purges a killed run left under .tmp: the user
// asked for those private keys to be gone, so the next run finishes the
// deletion instead of leaving them for store check to move aside as
// something recoverable. The exclusive lock is held, so no purge is under
// way in another process.
func (s *Dir) finishPurges() error {
	names, err := readNames(s.path(tmpDir))
	if err != nil {
		return err
	}
	for _, n := range names {
		if !purgeEntry.MatchString(n) || guardian.ValidateName(n[len(purgeEntry.FindString(n)):]) != nil {
			continue
		}
		if err := os.RemoveAll(s.path(tmpDir, n)); err != nil {
			return fmt.Errorf("finishing the interrupted purge of guardian %q: %w", n[len(purgeEntry.FindString(n)):], err)
		}
	}
	return nil
}

// pendingPurge reports whether a killed purge waits under .tmp.
func (s *Dir) pendingPurge() bool {
	names, _ := readNames(s.path(tmpDir))
	for _, n := range names {
		if purgeEntry.MatchString(n) {
			return true
		}
	}
	return false
}

// Removed is a guardian in the trash.
type Removed struct {
	Name      string
	ID        string
	RemovedAt time.Time
	// Signing and Encryption are the removed guardian's thumbprints where
	// the store records them (Hyper-V's does), else empty.
	Signing, Encryption string
	// Unverified says why the directory store cannot vouch for this entry
	// (no record of guardctl moving it there, files changed since, a time
	// in the future, which RemovedAt then does not repeat); restore asks
	// before it brings such an entry back.
	Unverified string
}

// Trash lists removed guardians, newest first.
func (s *Dir) Trash() ([]Removed, error) {
	unlock, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.trash()
}

func (s *Dir) trash() ([]Removed, error) {
	ids, err := readNames(s.path(trashDir))
	if err != nil {
		return nil, err
	}
	moves := s.loadMoves()
	var out []Removed
	for i := len(ids) - 1; i >= 0; i-- {
		ts, ok := trashTime(ids[i])
		if !ok {
			continue // not a trash entry: store check reports it
		}
		names, err := readNames(s.path(trashDir, ids[i]))
		if err != nil {
			continue
		}
		for _, n := range names {
			if trashedProblem(s.path(trashDir, ids[i], n), n) == "" {
				r := Removed{Name: n, ID: ids[i], RemovedAt: ts}
				r.Unverified = s.movedProblem(moves, s.path(trashDir, ids[i], n), ts)
				if ts.After(time.Now().Add(clockSkew)) {
					r.RemovedAt = time.Time{} // made up
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// trashID is the shape of the IDs newID makes.
var trashID = regexp.MustCompile(`^\d{8}T\d{6}\.\d{9}Z-[0-9a-f]{8}$`)

// trashTime is when the trash entry id was made; false when id is not one
// newID made.
func trashTime(id string) (time.Time, bool) {
	if !trashID.MatchString(id) {
		return time.Time{}, false
	}
	ts, err := time.Parse("20060102T150405.000000000Z", id[:strings.IndexByte(id, '-')])
	return ts, err == nil
}

// trashedProblem says why path, named name, in a trash entry is not a
// removed guardian (a directory with a guardian's name, broken or not), or
// "" when it is one.
func trashedProblem(path, name string) string {
	fi, err := os.Lstat(path)
	switch {
	case err != nil:
		return "cannot be read: " + describe(err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return "a symbolic link, not a removed guardian"
	case !fi.IsDir():
		return "a regular file, not a removed guardian (a guardian's directory)"
	case guardian.ValidateName(name) != nil:
		return "not a removed guardian: its name is not a guardian name"
	}
	return ""
}

// Restore brings back the most recently removed guardian called name that
// guardctl moved to the trash and that is as it was then. When the trash
// holds only others of that name (planted, changed, dated in the future,
// or removed by a guardctl that kept no record), it returns an
// *UnverifiedError naming the newest, which RestoreID brings back.
func (s *Dir) Restore(name string) (*Change, error) {
	return s.restore(name, "")
}

// RestoreID brings back the removed guardian name from the trash entry id,
// whether or not guardctl's record of moving it there matches: for a
// person who saw an UnverifiedError's thumbprints and confirmed.
func (s *Dir) RestoreID(name, id string) (*Change, error) {
	return s.restore(name, id)
}

func (s *Dir) restore(name, id string) (*Change, error) {
	if err := guardian.ValidateName(name); err != nil {
		return nil, err
	}
	unlock, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	live := s.path(guardiansDir, name)
	if _, err := os.Lstat(live); err == nil {
		return nil, fmt.Errorf("guardian %q %w; remove or rename it before restoring", name, ErrExists)
	}
	removed, err := s.trash()
	if err != nil {
		return nil, err
	}
	var first *UnverifiedError
	for _, r := range removed {
		if r.Name != name || (id != "" && r.ID != id) {
			continue
		}
		holder := s.path(trashDir, r.ID)
		if id == "" && r.Unverified != "" {
			if first == nil {
				first = unverified(s, filepath.Join(holder, name), r.ID, name, r.Unverified)
			}
			continue
		}
		if err := os.Rename(filepath.Join(holder, name), live); err != nil {
			return nil, fmt.Errorf("restoring guardian %q: %w", name, err)
		}
		if err := atomicfile.SyncDir(s.path(guardiansDir)); err != nil {
			return nil, err
		}
		os.Remove(holder) // only if empty
		return &Change{Entry: loadEntry(live, name, s.tpm)}, nil
	}
	if first != nil {
		return nil, first
	}
	return nil, fmt.Errorf("removed guardian %q %w in the trash of %s", name, ErrNotFound, s.dir)
}
