// Package hypervfake is a fake of the two Windows interfaces the Hyper-V
// guardian store is built on (certstore.SystemStores and
// certstore.GuardianRegistry) that follows Windows' documented behaviour:
//
//   - LocalMachine system stores hold certificates keyed by their SHA-1
//     thumbprint; a store that does not exist lists as empty, and the first
//     Add creates it;
//   - a certificate's private key is a machine key kept apart from the
//     certificate, which only links to it: Move carries the link, the key
//     stays; a key can be non-exportable, or missing behind its link;
//   - HgsClient registers a name for a pair of thumbprints that must both be
//     in "Shielded VM Local Certificates", refuses a name that is taken,
//     and its Remove (Unregister) leaves the certificates where they are;
//     HasPrivateSigningKey is computed from the store, as Get-HgsGuardian
//     shows it;
//   - without HgsClient every registry call fails with
//     certstore.ErrNoHgsClient.
//
// It is only for tests: the unit tests use it in memory, and the command
// tests keep it in a file so that several guardctl processes share it. No
// release build imports it.
package hypervfake

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
)

// ErrNotFound: no certificate with that thumbprint in that store (Windows'
// CRYPT_E_NOT_FOUND).
var ErrNotFound = errors.New("cannot find object or property (CRYPT_E_NOT_FOUND)")

type certRec struct {
	DER   []byte `json:"der"`
	KeyID string `json:"keyId,omitempty"`
}

type keyRec struct {
	PKCS8      []byte `json:"pkcs8"`
	Exportable bool   `json:"exportable"`
}

type state struct {
	Stores      map[string]map[string]*certRec `json:"stores"`
	Keys        map[string]*keyRec             `json:"keys"`
	Regs        []certstore.Registration       `json:"registrations"`
	NoHgsClient bool                           `json:"noHgsClient"`
	// LegacyCSP holds the thumbprints whose keys are in a legacy CSP,
	// which HgsClient does not use (HasPrivateSigningKey is false).
	LegacyCSP map[string]bool `json:"legacyCsp,omitempty"`
	NextKey   int             `json:"nextKey"`
	// Calls counts the changes made, so tests can see that a read changed
	// nothing.
	Calls int `json:"calls"`
}

// Windows is one fake machine: its LocalMachine system stores, machine keys
// and HgsClient registrations.
type Windows struct {
	mu   sync.Mutex
	path string
	st   state
	// registerErr, when set, is what Register fails with (HgsClient
	// refusing a certificate, say), in memory only.
	registerErr error
}

// New returns an empty machine kept in memory.
func New() *Windows {
	return &Windows{st: state{Stores: map[string]map[string]*certRec{}, Keys: map[string]*keyRec{}}}
}

// Open returns the machine kept in the file at path (created on the first
// change), so that several processes share it.
func Open(path string) (*Windows, error) {
	w := New()
	w.path = path
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return w, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &w.st); err != nil {
		return nil, fmt.Errorf("fake Windows state %s: %w", path, err)
	}
	if w.st.Stores == nil {
		w.st.Stores = map[string]map[string]*certRec{}
	}
	if w.st.Keys == nil {
		w.st.Keys = map[string]*keyRec{}
	}
	return w, nil
}

// save writes the state back when it is kept in a file; the lock is held.
func (w *Windows) save() error {
	w.st.Calls++
	if w.path == "" {
		return nil
	}
	raw, err := json.Marshal(&w.st)
	if err != nil {
		return err
	}
	_, err = atomicfile.WriteFile(w.path, raw, 0o600, atomicfile.Options{Overwrite: true})
	return err
}

// Changes is how many changes the machine has seen.
func (w *Windows) Changes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st.Calls
}

// Stores returns the SystemStores side.
func (w *Windows) Stores() certstore.SystemStores { return stores{w} }

// Registry returns the GuardianRegistry side.
func (w *Windows) Registry() certstore.GuardianRegistry { return registry{w} }

type stores struct{ w *Windows }

func (s stores) List(store string) ([]certstore.SystemCert, error) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []certstore.SystemCert
	for _, tp := range slices.Sorted(maps.Keys(w.st.Stores[store])) {
		c := w.st.Stores[store][tp]
		cert, err := x509.ParseCertificate(c.DER)
		if err != nil {
			return nil, err
		}
		sc := certstore.SystemCert{Cert: cert, HasKey: c.KeyID != ""}
		if sc.HasKey {
			if _, ok := w.st.Keys[c.KeyID]; !ok {
				sc.KeyProblem = "Keyset does not exist (NTE_BAD_KEYSET)"
			}
		}
		out = append(out, sc)
	}
	return out, nil
}

func (s stores) Add(store string, cert *x509.Certificate, key *rsa.PrivateKey) error {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st.Stores[store] == nil {
		w.st.Stores[store] = map[string]*certRec{}
	}
	rec := &certRec{DER: cert.Raw}
	if key != nil {
		if !key.PublicKey.Equal(cert.PublicKey) {
			return errors.New("the key does not match the certificate (NTE_BAD_PUBLIC_KEY)")
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		w.st.NextKey++
		rec.KeyID = fmt.Sprintf("key-%d", w.st.NextKey)
		w.st.Keys[rec.KeyID] = &keyRec{PKCS8: der, Exportable: true}
	}
	w.st.Stores[store][guardian.Thumbprint(cert)] = rec
	return w.save()
}

func (s stores) ExportKey(store, thumbprint string) (*rsa.PrivateKey, error) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.st.Stores[store][thumbprint]
	if !ok {
		return nil, ErrNotFound
	}
	if c.KeyID == "" {
		return nil, errors.New("the certificate has no private key (CRYPT_E_NO_KEY_PROPERTY)")
	}
	k, ok := w.st.Keys[c.KeyID]
	if !ok {
		return nil, errors.New("keyset does not exist (NTE_BAD_KEYSET)")
	}
	if !k.Exportable {
		return nil, certstore.ErrKeyNotExportable
	}
	key, err := x509.ParsePKCS8PrivateKey(k.PKCS8)
	if err != nil {
		return nil, err
	}
	return key.(*rsa.PrivateKey), nil
}

func (s stores) Move(from, to, thumbprint string) error {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.st.Stores[from][thumbprint]
	if !ok {
		return ErrNotFound
	}
	if w.st.Stores[to] == nil {
		w.st.Stores[to] = map[string]*certRec{}
	}
	w.st.Stores[to][thumbprint] = c
	delete(w.st.Stores[from], thumbprint)
	return w.save()
}

func (s stores) Delete(store, thumbprint string, deleteKey bool) error {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.st.Stores[store][thumbprint]
	if !ok {
		return ErrNotFound
	}
	delete(w.st.Stores[store], thumbprint)
	if deleteKey && c.KeyID != "" {
		delete(w.st.Keys, c.KeyID)
	}
	return w.save()
}

type registry struct{ w *Windows }

func (r registry) List() ([]certstore.Registration, error) {
	w := r.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st.NoHgsClient {
		return nil, certstore.ErrNoHgsClient
	}
	out := make([]certstore.Registration, 0, len(w.st.Regs))
	for _, reg := range w.st.Regs {
		c, ok := w.st.Stores[certstore.ShieldedVMStore][reg.SigningThumbprint]
		_, keyThere := w.st.Keys[c.keyID()]
		reg.HasPrivateSigningKey = ok && keyThere && !w.st.LegacyCSP[reg.SigningThumbprint]
		out = append(out, reg)
	}
	return out, nil
}

func (c *certRec) keyID() string {
	if c == nil {
		return ""
	}
	return c.KeyID
}

func (r registry) Register(name, signing, encryption string) error {
	w := r.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st.NoHgsClient {
		return certstore.ErrNoHgsClient
	}
	if w.registerErr != nil {
		return w.registerErr
	}
	for _, reg := range w.st.Regs {
		if reg.Name == name {
			return fmt.Errorf("a guardian named %q already exists", name)
		}
	}
	for _, tp := range []string{signing, encryption} {
		if _, ok := w.st.Stores[certstore.ShieldedVMStore][tp]; !ok {
			return fmt.Errorf("the certificate %s is not in %s", tp, certstore.ShieldedVMStore)
		}
	}
	w.st.Regs = append(w.st.Regs, certstore.Registration{Name: name, SigningThumbprint: signing, EncryptionThumbprint: encryption})
	return w.save()
}

func (r registry) Unregister(name string) error {
	w := r.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st.NoHgsClient {
		return certstore.ErrNoHgsClient
	}
	for i, reg := range w.st.Regs {
		if reg.Name == name {
			w.st.Regs = append(w.st.Regs[:i], w.st.Regs[i+1:]...)
			return w.save()
		}
	}
	return fmt.Errorf("no guardian named %q", name)
}

// The rest breaks the machine the ways users do, for tests.

// SetNoHgsClient makes the machine one without HgsClient (no Hyper-V).
func (w *Windows) SetNoHgsClient(none bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st.NoHgsClient = none
	return w.save()
}

// MoveKeyToLegacyCSP makes the key of a certificate one HgsClient does not
// use, as an import into a legacy CSP leaves it.
func (w *Windows) MoveKeyToLegacyCSP(thumbprint string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st.LegacyCSP == nil {
		w.st.LegacyCSP = map[string]bool{}
	}
	w.st.LegacyCSP[thumbprint] = true
	return w.save()
}

// FailRegister makes every Register fail with err (nil: succeed again).
func (w *Windows) FailRegister(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.registerErr = err
}

// SetExportable marks the key of a certificate in store exportable or not.
func (w *Windows) SetExportable(store, thumbprint string, exportable bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.st.Stores[store][thumbprint]
	if !ok || w.st.Keys[c.KeyID] == nil {
		return ErrNotFound
	}
	w.st.Keys[c.KeyID].Exportable = exportable
	return w.save()
}

// DropKey deletes a certificate's key and keeps the link to it, as when a
// key file is deleted by hand.
func (w *Windows) DropKey(store, thumbprint string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.st.Stores[store][thumbprint]
	if !ok {
		return ErrNotFound
	}
	delete(w.st.Keys, c.KeyID)
	return w.save()
}

// Install does what New-HgsGuardian -Name NAME -GenerateCertificates
// leaves behind, for a pair made beforehand: both certificates with their
// keys in Shielded VM Local Certificates, registered under name.
func (w *Windows) Install(name string, g *guardian.Guardian) error {
	s := w.Stores()
	sk, ek, err := g.SoftwareKeys()
	if err != nil {
		return err
	}
	if err := s.Add(certstore.ShieldedVMStore, g.Signing, sk); err != nil {
		return err
	}
	if err := s.Add(certstore.ShieldedVMStore, g.Encryption, ek); err != nil {
		return err
	}
	return w.Registry().Register(name, guardian.Thumbprint(g.Signing), guardian.Thumbprint(g.Encryption))
}

// Certificates lists the thumbprints in a store.
func (w *Windows) Certificates(store string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.st.Stores[store]))
}

// Registrations lists the registered names.
func (w *Windows) Registrations() []certstore.Registration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]certstore.Registration(nil), w.st.Regs...)
}

// Keys is how many machine keys exist.
func (w *Windows) Keys() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.st.Keys)
}

// Env names the file that holds a fake Windows machine for guardctl
// processes a test starts: the package main test binary, and guardctl
// built with the guardctl_testhooks tag (../../e2e). In them, and only
// there, --store hyperv is Hyper-V's store over that fake, on any OS.
const Env = "GUARDCTL_TEST_FAKE_WINDOWS"

// OpenStore opens a store from its --store value as certstore.Open does,
// except that Hyper-V's store, when Env names a file, is over the fake
// machine kept in that file (its trash beside it).
func OpenStore(spec string, opts ...certstore.Option) (certstore.Store, error) {
	path := os.Getenv(Env)
	if spec != certstore.HyperVSpec || path == "" {
		return certstore.Open(spec, opts...)
	}
	w, err := Open(path)
	if err != nil {
		return nil, err
	}
	return certstore.NewHyperV(w.Stores(), w.Registry(), filepath.Join(filepath.Dir(path), "guardctl-hyperv")), nil
}
