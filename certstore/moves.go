package certstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
)

// movesFile records what guardctl moved into trash/ and lost+found/, so that
// restore and recover bring back only what guardctl put there, as it was:
// a guardian planted in the trash (named to look like the newest removal of
// an owner) is not restored as if it had been removed. Someone who can
// write the store can also rewrite this file; what it adds is that a
// planted entry needs a forged record too, and that guardctl then asks,
// showing the thumbprints, instead of restoring silently.
const movesFile = "moves.json"

// moveRecord is one move.
type moveRecord struct {
	From    string    `json:"from"` // relative to the store
	MovedAt time.Time `json:"movedAt"`
	Digest  string    `json:"sha256"` // of the entry's files (contentDigest)
	// Known: it came from the live guardians, whose content is the store's
	// own; false for what guardctl moved without a record of it (an
	// interrupted write's leftover, an unrecorded trash entry).
	Known bool `json:"known"`
}

// clockSkew is how far in the future a trash or lost+found ID may be (a
// clock corrected backwards after the move) before it is taken as made up.
const clockSkew = 10 * time.Minute

func (s *Dir) loadMoves() map[string]moveRecord {
	moves := map[string]moveRecord{}
	if raw, err := readRegular(s.path(movesFile)); err == nil {
		json.Unmarshal(raw, &moves)
	}
	return moves
}

// recordMove notes that guardctl is about to move from (a path in the
// store) to to; the exclusive lock is held. Records of what is not there
// (any more, or yet: a move killed before its rename) are dropped.
func (s *Dir) recordMove(from, to string, known bool) error {
	moves := s.loadMoves()
	for p := range moves {
		if _, err := os.Lstat(s.path(filepath.FromSlash(p))); errors.Is(err, fs.ErrNotExist) {
			delete(moves, p)
		}
	}
	moves[s.relPath(to)] = moveRecord{From: s.relPath(from), MovedAt: time.Now().UTC(), Digest: contentDigest(from), Known: known}
	data, err := json.MarshalIndent(moves, "", "  ")
	if err != nil {
		return err
	}
	_, err = atomicfile.WriteFile(s.path(movesFile), append(data, '\n'), 0o600, atomicfile.Options{Overwrite: true})
	return err
}

func (s *Dir) relPath(p string) string {
	r, err := filepath.Rel(s.dir, p)
	if err != nil {
		return p
	}
	return filepath.ToSlash(r)
}

// contentDigest is the SHA-256 over the names, types, sizes and contents of
// the files in the directory at path (or of the file at path), in name
// order. Only regular files are read, streamed, so a planted FIFO or a huge
// file neither blocks nor fills memory.
func contentDigest(path string) string {
	h := sha256.New()
	fi, err := os.Lstat(path)
	if err != nil {
		return ""
	}
	if !fi.IsDir() {
		hashFile(h, path, fi)
		return hex.EncodeToString(h.Sum(nil))
	}
	names, _ := readNames(path)
	for _, n := range names {
		p := filepath.Join(path, n)
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00", n, fi.Mode().Type(), fi.Size())
		hashFile(h, p, fi)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func hashFile(h io.Writer, path string, fi fs.FileInfo) {
	if !fi.Mode().IsRegular() {
		return
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return
	}
	defer f.Close()
	io.Copy(h, f)
}

// movedProblem says why the trash or lost+found entry at path, whose ID
// says it was made at made, is not what guardctl moved there as it was; ""
// when it is.
func (s *Dir) movedProblem(moves map[string]moveRecord, path string, made time.Time) string {
	if made.After(time.Now().Add(clockSkew)) {
		return fmt.Sprintf("its time (%s) lies in the future: guardctl did not put it there", made.Format(time.RFC3339))
	}
	rec, ok := moves[s.relPath(path)]
	if !ok {
		return "guardctl has no record of moving it there (put there by hand or by another program, or by a guardctl before 2026-12)"
	}
	if rec.Digest != contentDigest(path) {
		return fmt.Sprintf("its files changed after guardctl moved it there on %s", rec.MovedAt.Format(time.RFC3339))
	}
	return ""
}

// UnverifiedError is a removed or lost guardian that restore or recover
// would bring back although it is not what guardctl moved there, as it was
// (Problem says why). The command shows its thumbprints and asks; the
// Accept variants (RestoreID, Recover with accept) then bring it back.
type UnverifiedError struct {
	Path, Name, Problem string
	// ID is the trash ID or lost+found item to pass back.
	ID                  string
	Signing, Encryption string // thumbprints
	PublicOnly          bool
}

func (e *UnverifiedError) Error() string {
	keys := "with private keys"
	if e.PublicOnly {
		keys = "public only"
	}
	return fmt.Sprintf("%s: %s; it holds guardian %q (%s), signing certificate %s, encryption certificate %s", e.Path, e.Problem, e.Name, keys, e.Signing, e.Encryption)
}

// unverified builds the UnverifiedError of the entry at path.
func unverified(s *Dir, path, id, name, problem string) *UnverifiedError {
	e := loadEntry(path, name, s.tpm)
	u := &UnverifiedError{Path: s.relPath(path), ID: id, Name: name, Problem: problem, PublicOnly: !e.Guardian.HasPrivateKeys()}
	if e.Guardian.Signing != nil {
		u.Signing = guardian.Thumbprint(e.Guardian.Signing)
	}
	if e.Guardian.Encryption != nil {
		u.Encryption = guardian.Thumbprint(e.Guardian.Encryption)
	}
	return u
}

// knownContent reports whether what is at path, about to be moved to
// lost+found, is the store's own: a live entry, or a trash entry guardctl
// moved there and that is as it was.
func (s *Dir) knownContent(path string) bool {
	rel := s.relPath(path)
	if len(rel) > len(guardiansDir) && rel[:len(guardiansDir)+1] == guardiansDir+"/" {
		return true
	}
	rec, ok := s.loadMoves()[rel]
	return ok && rec.Known && rec.Digest == contentDigest(path)
}

// lostUnverified says why the lost+found guardian item it is not what
// guardctl moved there from the store's own content, as it was; "" when it
// is.
func (s *Dir) lostUnverified(moves map[string]moveRecord, it LostItem) string {
	path := s.path(lostDir, it.ID)
	if p := s.movedProblem(moves, path, it.MovedAt); p != "" {
		return p
	}
	if rec := moves[s.relPath(path)]; !rec.Known {
		return fmt.Sprintf("guardctl moved it here from %s, which was not a guardian of the store (an interrupted write's leftover, or an entry it had no record of)", rec.From)
	}
	return ""
}
