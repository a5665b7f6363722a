// Package certstore keeps guardians: one Store interface, in the manner of
// google/certtostore, with two implementations behind it. Dir is guardctl's
// own store in a directory, on every OS; the Hyper-V store is Windows'
// LocalMachine "Shielded VM Local Certificates" store with HgsClient's
// guardian registration. Open picks one from the --store value, so that
// commands never ask which store they talk to.
package certstore

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/tpmkey"
)

var (
	// ErrNotFound: no guardian (or removed guardian) of that name.
	ErrNotFound = errors.New("not found")
	// ErrExists: a guardian of that name is already in the store.
	ErrExists = errors.New("already exists")
	// ErrLocked: another guardctl held the store for longer than LockTimeout.
	ErrLocked = errors.New("store is locked by another guardctl process")
	// ErrUnsupported: the store asked for does not exist on this system.
	ErrUnsupported = errors.New("not available on this system")
	// ErrTPMUnsupported: a TPM guardian given to a store that cannot hold
	// one (Hyper-V's, which would need the Platform Crypto Provider).
	ErrTPMUnsupported = errors.New("TPM guardians are not supported in this store")
)

// Store is a guardian store. Names are guardian names
// (guardian.ValidateName). A broken guardian is an Entry with a Problem,
// never an error, so that every one of them can be listed, shown and
// removed.
type Store interface {
	// Location names the store in messages: a directory, or the Windows
	// certificate store.
	Location() string
	// List reads every guardian, broken ones included, sorted by name.
	List() ([]*Entry, error)
	// Get reads one guardian; ErrNotFound when there is none.
	Get(name string) (*Entry, error)
	// Add puts g into the store. With replace, an existing guardian of the
	// same name goes to the trash first; without it, ErrExists.
	Add(g *guardian.Guardian, origin Origin, replace bool) (*Change, error)
	// Remove takes a guardian out of the store, broken or not: to the
	// trash (the trash ID is returned), or deleted with purge.
	Remove(name string, purge bool) (trashID string, err error)
	// Trash lists removed guardians, newest first.
	Trash() ([]Removed, error)
	// Restore brings back the most recently removed guardian called name;
	// ErrExists when a guardian has that name now.
	Restore(name string) (*Change, error)
	// Check finds broken guardians and leftovers and, with repair, moves
	// them out of the way without losing anything.
	Check(repair bool) ([]Finding, error)
}

// Change is what Add or Restore did.
type Change struct {
	// Entry is the guardian as the store holds it now.
	Entry *Entry
	// ReplacedID is the trash ID of the guardian Add replaced, if any.
	ReplacedID string
	// Notice is something the user must be told once (for example that
	// the name could not be registered); empty when all went as asked.
	Notice string
}

// HyperVSpec is the --store value that selects Hyper-V's store.
const HyperVSpec = "hyperv"

// Open returns the store spec names: HyperVSpec for Hyper-V's store (an
// ErrUnsupported error where there is none), anything else a directory.
func Open(spec string, opts ...Option) (Store, error) {
	if spec == HyperVSpec {
		return openHyperV()
	}
	return OpenDir(spec, opts...), nil
}

// Option is an option of Open.
type Option func(*options)

type options struct {
	tpm *tpmkey.Device
}

// WithTPM names the TPM that TPM guardians' keys are used with. Without
// it, a TPM guardian is listed and shown but its keys cannot be used.
func WithTPM(d *tpmkey.Device) Option {
	return func(o *options) { o.tpm = d }
}

// DefaultSpec is the store used when none is given (DESIGN §2): Hyper-V's
// store on Windows, /var/lib/guardctl for root on Linux, the per-user data
// directory otherwise.
func DefaultSpec() string {
	switch runtime.GOOS {
	case "windows":
		return HyperVSpec
	case "linux":
		if os.Geteuid() == 0 {
			return "/var/lib/guardctl"
		}
		if x := os.Getenv("XDG_DATA_HOME"); x != "" {
			return filepath.Join(x, "guardctl")
		}
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, ".local", "share", "guardctl")
		}
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "guardctl")
	}
	return "guardctl-store"
}
