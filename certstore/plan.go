package certstore

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/guardctl/guardctl/guardian"
)

// Plan is what a change would do to a store, decided from what the store
// holds now through the Store interface alone, so that it holds for every
// implementation: a command decides with it whether to act, and --dry-run
// reports it without acting, so both say the same.
type Plan struct {
	// Changed: the change would alter the store.
	Changed bool
	// Existing is the guardian the name has now, if any.
	Existing *Entry
	// AddsKeys: Existing is whole and public only, with the same two
	// certificates as the guardian being added, which has its private
	// keys. Adding it loses nothing and needs no replace: the command
	// passes replace for it (the public-only entry goes to the trash, as a
	// replaced guardian does).
	AddsKeys bool
}

// Holds reports whether e already is g: whole, with the same two
// certificates (the same thumbprints), and with the private keys if g has
// them. Importing g again would change nothing.
func (e *Entry) Holds(g *guardian.Guardian) bool {
	return !e.Broken() && e.sameCerts(g) && (!g.HasPrivateKeys() || e.Meta.HasPrivateKeys)
}

// sameCerts reports whether e has g's two certificates (the same
// thumbprints), broken or not.
func (e *Entry) sameCerts(g *guardian.Guardian) bool {
	h := e.Guardian
	return h != nil && h.Signing != nil && h.Encryption != nil &&
		h.Signing.Equal(g.Signing) && h.Encryption.Equal(g.Encryption)
}

// PlanAdd says what Add(g, _, replace) would do: nothing when the store
// already holds g under its name; a change that adds g's private keys
// (AddsKeys) when the store holds g public only; ErrExists when it holds
// another guardian of that name, or a broken one, and replace is not set;
// else a change.
func PlanAdd(s Store, g *guardian.Guardian, replace bool) (Plan, error) {
	e, err := s.Get(g.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		return Plan{Changed: true}, nil
	case err != nil:
		return Plan{}, err
	case e.Holds(g):
		return Plan{Existing: e}, nil
	case !e.Broken() && e.sameCerts(g) && g.HasPrivateKeys():
		// Holds failed on the keys alone: the store has g public only.
		return Plan{Changed: true, Existing: e, AddsKeys: true}, nil
	case !replace && e.Broken():
		what := "other certificates"
		if e.sameCerts(g) {
			what = "the same certificates"
		}
		return Plan{Existing: e}, fmt.Errorf("guardian %q %w in %s with %s, and is broken: %s", g.Name, ErrExists, s.Location(), what, e.Problem)
	case !replace:
		return Plan{Existing: e}, fmt.Errorf("guardian %q %w in %s with other certificates", g.Name, ErrExists, s.Location())
	}
	return Plan{Changed: true, Existing: e}, nil
}

// PlanRemove says what Remove(name, _) would do: ErrNotFound when there is
// no such guardian, else a change.
func PlanRemove(s Store, name string) (Plan, error) {
	e, err := s.Get(name)
	if err != nil {
		return Plan{}, err
	}
	return Plan{Changed: true, Existing: e}, nil
}

// PlanRestore says what Restore(name) would do: ErrExists when a guardian
// has that name now (unless it is only what is left of the removed one
// itself, as an interrupted removal in Hyper-V's store leaves it),
// ErrNotFound when the trash holds none, else a change.
func PlanRestore(s Store, name string) (Plan, error) {
	removed, err := s.Trash()
	if err != nil {
		return Plan{}, err
	}
	var newest *Removed
	for i := range removed {
		if removed[i].Name == name {
			newest = &removed[i]
			break
		}
	}
	if e, err := s.Get(name); err == nil {
		if newest == nil || !leftOf(e, newest) {
			return Plan{Existing: e}, fmt.Errorf("guardian %q %w; remove or rename it before restoring", name, ErrExists)
		}
		return Plan{Changed: true, Existing: e}, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Plan{}, err
	}
	if newest == nil {
		return Plan{}, fmt.Errorf("removed guardian %q %w in the trash of %s", name, ErrNotFound, s.Location())
	}
	return Plan{Changed: true}, nil
}

// leftOf reports whether e is only what is left of the removed guardian
// r: a store that records r's thumbprints, e not usable as it is (it has a
// warning or a problem), and each certificate e still has one of r's (or
// none at all).
func leftOf(e *Entry, r *Removed) bool {
	if r.Signing == "" || (e.Problem == "" && e.Warning == "") {
		return false
	}
	for _, c := range []*x509.Certificate{e.Guardian.Signing, e.Guardian.Encryption} {
		if c == nil {
			continue
		}
		if tp := guardian.Thumbprint(c); tp != r.Signing && tp != r.Encryption {
			return false
		}
	}
	return true
}
