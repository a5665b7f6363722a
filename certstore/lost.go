package certstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/guardctl/guardctl/guardian"
)

// LostItem is one thing in the directory store's lost+found: what store
// check --repair moved aside.
type LostItem struct {
	// ID is its name in lost+found.
	ID string `json:"id"`
	// Path is relative to the store.
	Path    string    `json:"path"`
	MovedAt time.Time `json:"movedAt"`
	// Kind is "guardian" for a guardian entry's directory (a broken entry,
	// or an interrupted write), "file" for anything else.
	Kind string `json:"kind"`
	// Name is the guardian it holds, as store recover names it.
	Name           string `json:"name,omitempty"`
	HasPrivateKeys bool   `json:"hasPrivateKeys"`
	// PrivateKeys counts the private keys that could be read (0 to 2).
	PrivateKeys int `json:"privateKeys"`
	// Recoverable: its certificates (and keys) verify as a pair, so store
	// recover can bring it back; otherwise Problems says why not.
	Recoverable bool     `json:"recoverable"`
	Problems    []string `json:"problems,omitempty"`
	// Unverified says why the item is not what guardctl moved here from
	// the store's own guardians, as it was (planted, changed since, dated
	// in the future, an interrupted write's leftover): store recover then
	// shows its thumbprints and asks.
	Unverified string `json:"unverified,omitempty"`

	entry *Entry
}

// ErrUnrecoverable: a lost+found item whose certificates and keys do not
// make a guardian.
var ErrUnrecoverable = errors.New("cannot be recovered")

// idPrefix is the ID newID puts before a base name.
var idPrefix = regexp.MustCompile(`^(\d{8}T\d{6}\.\d{9}Z)-[0-9a-f]{8}-`)

// LostAndFound lists lost+found, newest first.
func (s *Dir) LostAndFound() ([]LostItem, error) {
	unlock, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.lostAndFound()
}

func (s *Dir) lostAndFound() ([]LostItem, error) {
	if d := s.lostProblem(); d != "" {
		return nil, fmt.Errorf("%w: %s", ErrLayout, d)
	}
	ids, err := readNames(s.path(lostDir))
	if err != nil {
		return nil, err
	}
	moves := s.loadMoves()
	var out []LostItem
	for _, id := range ids {
		it := s.lostItem(id)
		if it.Kind == "guardian" {
			it.Unverified = s.lostUnverified(moves, it)
		}
		out = append(out, it)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].MovedAt.After(out[j].MovedAt) })
	return out, nil
}

// lostItem reads lost+found/id.
func (s *Dir) lostItem(id string) LostItem {
	it := LostItem{ID: id, Path: lostDir + "/" + id, Kind: "file"}
	base := id
	if m := idPrefix.FindStringSubmatch(base); m != nil {
		it.MovedAt, _ = time.Parse("20060102T150405.000000000Z", m[1])
		base = base[len(m[0]):]
	}
	p := s.path(lostDir, id)
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() {
		it.Problems = []string{"not a guardian entry (a single file, or unreadable)"}
		return it
	}
	it.Kind = "guardian"
	// An interrupted write's directory is named ID-NAME too.
	for {
		m := idPrefix.FindStringSubmatch(base)
		if m == nil {
			break
		}
		base = base[len(m[0]):]
	}
	it.Name = base
	var meta Meta
	if raw, err := readRegular(s.path(lostDir, id, metaFile)); err == nil {
		if jsonErr := json.Unmarshal(raw, &meta); jsonErr == nil && guardian.ValidateName(meta.Name) == nil {
			it.Name = meta.Name
		}
	}
	if guardian.ValidateName(it.Name) != nil {
		it.Problems = []string{fmt.Sprintf("its name %q is not a guardian name: give one with --as", it.Name)}
		it.Name = ""
		return it
	}
	e := loadEntry(p, it.Name, s.tpm)
	it.entry = e
	it.HasPrivateKeys = e.Meta.HasPrivateKeys
	for _, k := range []bool{e.Guardian.SigningKey != nil, e.Guardian.EncryptionKey != nil} {
		if k {
			it.PrivateKeys++
		}
	}
	it.Recoverable = !e.Broken() || e.MetaOnly
	if !it.Recoverable {
		it.Problems = e.Problems
	}
	return it
}

// Recover brings a guardian back from lost+found: item is an ID in
// lost+found, or a guardian name (the newest recoverable item holding it).
// Its certificates and keys must verify as a pair; it is added as a new
// entry (under as, when given) with its metadata rebuilt if need be, and
// with replace an existing guardian of that name goes to the trash. The
// lost+found item itself is left as it is. With dryRun, everything is
// checked and nothing is written; Change.Entry is then the guardian as it
// would be added.
//
// An item that is not what guardctl moved there from the store's own
// guardians, as it was (LostItem.Unverified), is recovered only with
// accept; without it the answer is an *UnverifiedError, whose thumbprints
// the command shows before it asks. By name, the newest verified item wins.
func (s *Dir) Recover(item, as string, replace, dryRun, accept bool) (*Change, error) {
	unlock, err := s.lock(!dryRun)
	if err != nil {
		return nil, err
	}
	defer unlock()
	items, err := s.lostAndFound()
	if err != nil {
		return nil, err
	}
	var found *LostItem
	for i := range items {
		if items[i].ID == item {
			found = &items[i]
			break
		}
	}
	// By guardian name: the newest recoverable item guardctl vouches for,
	// else the newest recoverable one, else the newest one (to say what is
	// wrong with it).
	for i := range items {
		if found == nil && items[i].Name == item && items[i].Recoverable && items[i].Unverified == "" {
			found = &items[i]
		}
	}
	for i := range items {
		if found == nil && items[i].Name == item && items[i].Recoverable {
			found = &items[i]
		}
	}
	for i := range items {
		if found == nil && items[i].Name == item {
			found = &items[i]
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%q: no such item in %s/%s, and no recoverable guardian of that name there: %w", item, s.dir, lostDir, ErrNotFound)
	}
	if !found.Recoverable && !(found.Kind == "guardian" && found.Name == "" && as != "") {
		return nil, fmt.Errorf("%s %w: %s", found.Path, ErrUnrecoverable, strings.Join(found.Problems, "; "))
	}
	name := found.Name
	if as != "" {
		name = as
	}
	if err := guardian.ValidateName(name); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(s.path(guardiansDir, name)); err == nil && !replace {
		return nil, fmt.Errorf("guardian %q %w", name, ErrExists)
	}
	if found.Unverified != "" && !accept {
		return nil, unverified(s, s.path(lostDir, found.ID), found.ID, name, found.Unverified)
	}
	e := found.entry
	if e == nil || e.Name != name {
		e = loadEntry(s.path(lostDir, found.ID), name, s.tpm)
		if e.Broken() && !e.MetaOnly {
			return nil, fmt.Errorf("%s %w: %s", found.Path, ErrUnrecoverable, e.Problem)
		}
	}
	g := *e.Guardian
	g.Name = name
	notice := fmt.Sprintf("%s is left as it was; delete it when it is no longer needed", found.Path)
	if dryRun {
		if _, err := os.Lstat(s.path(guardiansDir, name)); err == nil && !replace {
			return nil, fmt.Errorf("guardian %q %w", name, ErrExists)
		}
		return &Change{Entry: &Entry{Name: name, Meta: metaFor(&g, name, OriginRecovered), Guardian: &g}, Notice: notice}, nil
	}
	origin := e.Meta.Origin
	if e.Broken() || origin == "" {
		origin = OriginRecovered
	}
	replacedID, err := s.add(&g, origin, replace)
	if err != nil {
		return nil, err
	}
	return &Change{Entry: loadEntry(s.path(guardiansDir, name), name, s.tpm), ReplacedID: replacedID, Notice: notice}, nil
}
