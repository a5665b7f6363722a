package certstore

import (
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
}

// Holds reports whether e already is g: whole, with the same two
// certificates (the same thumbprints), and with the private keys if g has
// them. Importing g again would change nothing.
func (e *Entry) Holds(g *guardian.Guardian) bool {
	h := e.Guardian
	return !e.Broken() && h != nil && h.Signing != nil && h.Encryption != nil &&
		h.Signing.Equal(g.Signing) && h.Encryption.Equal(g.Encryption) &&
		(!g.HasPrivateKeys() || e.Meta.HasPrivateKeys)
}

// PlanAdd says what Add(g, _, replace) would do: nothing when the store
// already holds g under its name, ErrExists when it holds another guardian
// of that name and replace is not set, else a change.
func PlanAdd(s Store, g *guardian.Guardian, replace bool) (Plan, error) {
	e, err := s.Get(g.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		return Plan{Changed: true}, nil
	case err != nil:
		return Plan{}, err
	case e.Holds(g):
		return Plan{Existing: e}, nil
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
// has that name now, ErrNotFound when the trash holds none, else a change.
func PlanRestore(s Store, name string) (Plan, error) {
	if e, err := s.Get(name); err == nil {
		return Plan{Existing: e}, fmt.Errorf("guardian %q %w; remove or rename it before restoring", name, ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return Plan{}, err
	}
	removed, err := s.Trash()
	if err != nil {
		return Plan{}, err
	}
	for _, r := range removed {
		if r.Name == name {
			return Plan{Changed: true}, nil
		}
	}
	return Plan{}, fmt.Errorf("removed guardian %q %w in the trash of %s", name, ErrNotFound, s.Location())
}
