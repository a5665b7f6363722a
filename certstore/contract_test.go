package certstore_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/hypervfake"
)

// The contract every Store implementation keeps, run against each: the
// directory store, and the Hyper-V store over the fake of Windows. (Under
// Wine and on a Windows runner the same suite runs over the real
// interfaces.)

// impl is one Store implementation under test, with the ways to break a
// guardian in it that users hit.
type impl struct {
	name string
	open func(t *testing.T) (certstore.Store, breaker)
	caps caps
	// probe, when set, finds the caps when the contract runs.
	probe func() caps
}

// caps is what an implementation's platform cannot do, so that the
// contract asks for what it can: Wine cannot export private keys (they
// stay usable in place, Entry.KeyErr says why not), and a Windows without
// HgsClient registers no names (Add and Restore say so in a Notice).
type caps struct {
	noExport bool
	noHgs    bool
}

// current is the caps of the implementation under test (the contract runs
// its cases one after another).
var current caps

type breaker interface {
	// dropKey deletes a guardian's signing private key, leaving the rest.
	dropKey(t *testing.T, s certstore.Store, name string)
	// dropCerts deletes a guardian's certificates by hand.
	dropCerts(t *testing.T, s certstore.Store, name string)
}

type dirBreaker struct{ dir string }

func (b dirBreaker) dropKey(t *testing.T, _ certstore.Store, name string) {
	must(t, os.Remove(filepath.Join(b.dir, "guardians", name, "signing.key")))
}

func (b dirBreaker) dropCerts(t *testing.T, _ certstore.Store, name string) {
	must(t, os.Remove(filepath.Join(b.dir, "guardians", name, "signing.crt")))
	must(t, os.Remove(filepath.Join(b.dir, "guardians", name, "encryption.crt")))
}

type hypervBreaker struct{ w *hypervfake.Windows }

func (b hypervBreaker) dropKey(t *testing.T, s certstore.Store, name string) {
	e, err := s.Get(name)
	must(t, err)
	must(t, b.w.DropKey(certstore.ShieldedVMStore, guardian.Thumbprint(e.Guardian.Signing)))
}

func (b hypervBreaker) dropCerts(t *testing.T, s certstore.Store, name string) {
	e, err := s.Get(name)
	must(t, err)
	for _, c := range []*x509.Certificate{e.Guardian.Signing, e.Guardian.Encryption} {
		must(t, b.w.Stores().Delete(certstore.ShieldedVMStore, guardian.Thumbprint(c), false))
	}
}

// impls are the implementations under test; on Windows (and under Wine),
// contract_windows_test.go adds Hyper-V's store over the real interfaces.
var impls = []impl{
	{name: "dir", open: func(t *testing.T) (certstore.Store, breaker) {
		dir := filepath.Join(t.TempDir(), "store")
		return certstore.OpenDir(dir), dirBreaker{dir}
	}},
	{name: "hyperv", open: func(t *testing.T) (certstore.Store, breaker) {
		w := hypervfake.New()
		return certstore.NewHyperV(w.Stores(), w.Registry(), filepath.Join(t.TempDir(), "state")), hypervBreaker{w}
	}},
}

func TestContract(t *testing.T) {
	for _, im := range impls {
		current = im.caps
		if im.probe != nil {
			current = im.probe()
		}
		defer func() { current = caps{} }()
		t.Run(im.name, func(t *testing.T) {
			for _, c := range contract {
				t.Run(c.name, func(t *testing.T) {
					s, b := im.open(t)
					c.run(t, s, b)
				})
			}
		})
	}
}

var contract = []struct {
	name string
	run  func(t *testing.T, s certstore.Store, b breaker)
}{
	{"empty", func(t *testing.T, s certstore.Store, _ breaker) {
		if es, err := s.List(); err != nil || len(es) != 0 {
			t.Fatalf("List of an empty store: %v %v", es, err)
		}
		if _, err := s.Get("g"); !errors.Is(err, certstore.ErrNotFound) {
			t.Errorf("Get: %v", err)
		}
		if _, err := s.Remove("g", false); !errors.Is(err, certstore.ErrNotFound) {
			t.Errorf("Remove: %v", err)
		}
		if _, err := s.Restore("g"); !errors.Is(err, certstore.ErrNotFound) {
			t.Errorf("Restore: %v", err)
		}
		if r, err := s.Trash(); err != nil || len(r) != 0 {
			t.Errorf("Trash: %v %v", r, err)
		}
		if f, err := s.Check(false); err != nil || len(f) != 0 {
			t.Errorf("Check: %v %v", f, err)
		}
		if f, err := s.Check(true); err != nil || len(f) != 0 {
			t.Errorf("Check --repair: %v %v", f, err)
		}
		if s.Location() == "" {
			t.Error("no Location")
		}
	}},
	{"invalid names", func(t *testing.T, s certstore.Store, _ breaker) {
		for _, n := range []string{"", "../x", "a/b", ".hidden"} {
			if _, err := s.Get(n); err == nil || errors.Is(err, certstore.ErrNotFound) {
				t.Errorf("Get(%q): %v", n, err)
			}
			g := makeGuardian(t, "x", "h", time.Time{})
			g.Name = n
			if _, err := s.Add(g, certstore.OriginGenerated, false); err == nil {
				t.Errorf("Add(%q) succeeded", n)
			}
		}
	}},
	{"add get list", func(t *testing.T, s certstore.Store, _ breaker) {
		g := makeGuardian(t, "g", "h", time.Time{})
		c, err := s.Add(g, certstore.OriginGenerated, false)
		if err != nil {
			t.Fatal(err)
		}
		if (c.Notice != "") != current.noHgs || c.ReplacedID != "" {
			t.Errorf("Change: %+v", c)
		}
		sameGuardian(t, c.Entry, g)
		e, err := s.Get("g")
		if err != nil {
			t.Fatal(err)
		}
		sameGuardian(t, e, g)
		if e.Meta.Origin != certstore.OriginGenerated || e.Meta.AddedAt.IsZero() {
			t.Errorf("Meta: %+v", e.Meta)
		}
		if _, err := s.Add(makeGuardian(t, "g", "h", time.Time{}), certstore.OriginGenerated, false); !errors.Is(err, certstore.ErrExists) {
			t.Errorf("Add over a guardian: %v", err)
		}
		s.Add(makeGuardian(t, "a", "h", time.Time{}), certstore.OriginPFX, false)
		s.Add(makeGuardian(t, "z", "h", time.Time{}), certstore.OriginPFX, false)
		es, err := s.List()
		if err != nil || len(es) != 3 || es[0].Name != "a" || es[1].Name != "g" || es[2].Name != "z" {
			t.Fatalf("List: %v %v", names(es), err)
		}
		for _, e := range es {
			if e.Broken() || e.Warning != "" || !e.Meta.HasPrivateKeys || (e.KeyErr != nil) != current.noExport {
				t.Errorf("%s: %q %q %v", e.Name, e.Problem, e.Warning, e.KeyErr)
			}
		}
		if f, err := s.Check(false); err != nil || len(f) != 0 {
			t.Errorf("Check: %+v %v", f, err)
		}
	}},
	{"replace keeps the old one in the trash", func(t *testing.T, s certstore.Store, _ breaker) {
		first, second := makeGuardian(t, "g", "h", time.Time{}), makeGuardian(t, "g", "h", time.Time{})
		if _, err := s.Add(first, certstore.OriginGenerated, false); err != nil {
			t.Fatal(err)
		}
		c, err := s.Add(second, certstore.OriginPFX, true)
		if err != nil || c.ReplacedID == "" {
			t.Fatalf("replace: %+v %v", c, err)
		}
		sameGuardian(t, c.Entry, second)
		tr, _ := s.Trash()
		if len(tr) != 1 || tr[0].Name != "g" || tr[0].ID != c.ReplacedID {
			t.Fatalf("Trash: %+v", tr)
		}
		if _, err := s.Remove("g", true); err != nil {
			t.Fatal(err)
		}
		r, err := s.Restore("g")
		if err != nil {
			t.Fatal(err)
		}
		sameGuardian(t, r.Entry, first)
	}},
	{"remove restore purge", func(t *testing.T, s certstore.Store, _ breaker) {
		g := makeGuardian(t, "g", "h", time.Time{})
		s.Add(g, certstore.OriginGenerated, false)
		id, err := s.Remove("g", false)
		if err != nil || id == "" {
			t.Fatalf("Remove: %q %v", id, err)
		}
		if _, err := s.Get("g"); !errors.Is(err, certstore.ErrNotFound) {
			t.Errorf("Get after Remove: %v", err)
		}
		tr, err := s.Trash()
		if err != nil || len(tr) != 1 || tr[0].Name != "g" || tr[0].ID != id || tr[0].RemovedAt.IsZero() {
			t.Fatalf("Trash: %+v %v", tr, err)
		}
		if es, _ := s.List(); len(es) != 0 {
			t.Errorf("List after Remove: %v", names(es))
		}
		if f, err := s.Check(false); err != nil || len(f) != 0 {
			t.Errorf("Check after Remove: %+v %v", f, err)
		}
		r, err := s.Restore("g")
		if err != nil {
			t.Fatalf("Restore: %v", err)
		}
		sameGuardian(t, r.Entry, g)
		if r.Entry.Meta.Origin != certstore.OriginGenerated {
			t.Errorf("origin after restore: %q", r.Entry.Meta.Origin)
		}
		if tr, _ := s.Trash(); len(tr) != 0 {
			t.Errorf("Trash after Restore: %+v", tr)
		}
		if _, err := s.Restore("g"); !errors.Is(err, certstore.ErrExists) && !errors.Is(err, certstore.ErrNotFound) {
			t.Errorf("Restore again: %v", err)
		}
		// Restore refuses to take a name a guardian has now.
		s.Remove("g", false)
		s.Add(makeGuardian(t, "g", "h", time.Time{}), certstore.OriginGenerated, false)
		if _, err := s.Restore("g"); !errors.Is(err, certstore.ErrExists) {
			t.Errorf("Restore over a live guardian: %v", err)
		}
		if _, err := s.Remove("g", true); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get("g"); !errors.Is(err, certstore.ErrNotFound) {
			t.Errorf("Get after purge: %v", err)
		}
		if tr, _ := s.Trash(); len(tr) != 1 {
			t.Errorf("purge went to the trash: %+v", tr)
		}
		if f, err := s.Check(false); err != nil || len(f) != 0 {
			t.Errorf("Check: %+v %v", f, err)
		}
	}},
	{"public only", func(t *testing.T, s certstore.Store, _ breaker) {
		_, p := makePublic(t, "pub")
		c, err := s.Add(p, certstore.OriginPublic, false)
		if err != nil {
			t.Fatal(err)
		}
		e := c.Entry
		if e.Broken() || e.Meta.HasPrivateKeys || e.Guardian.SigningKey != nil || e.Meta.Origin != certstore.OriginPublic {
			t.Fatalf("public entry: %q %+v", e.Problem, e.Meta)
		}
		if _, err := e.Guardian.MarshalPublic(); err != nil {
			t.Errorf("a public guardian cannot be exported again: %v", err)
		}
		if f, err := s.Check(false); err != nil || len(f) != 0 {
			t.Errorf("Check: %+v %v", f, err)
		}
		s.Remove("pub", false)
		r, err := s.Restore("pub")
		if err != nil || r.Entry.Broken() || r.Entry.Meta.HasPrivateKeys {
			t.Fatalf("Restore: %+v %v", r, err)
		}
	}},
	{"a public-only guardian gains its private keys", func(t *testing.T, s certstore.Store, b breaker) {
		g, p := makePublic(t, "pub")
		if _, err := s.Add(p, certstore.OriginPublic, false); err != nil {
			t.Fatal(err)
		}
		// The same certificates with their keys: a change, and no replace
		// needed; the public file again, or another pair, are not.
		plan, err := certstore.PlanAdd(s, g, false)
		if err != nil || !plan.Changed || !plan.AddsKeys {
			t.Fatalf("PlanAdd with keys: %+v %v", plan, err)
		}
		if plan, err := certstore.PlanAdd(s, p, false); err != nil || plan.Changed || plan.AddsKeys {
			t.Errorf("PlanAdd of the public guardian again: %+v %v", plan, err)
		}
		other := makeGuardian(t, "pub", "h2", time.Time{})
		if _, err := certstore.PlanAdd(s, other, false); !errors.Is(err, certstore.ErrExists) || !strings.Contains(err.Error(), "other certificates") {
			t.Errorf("PlanAdd of other certificates: %v", err)
		}
		c, err := s.Add(g, certstore.OriginPFX, plan.AddsKeys)
		if err != nil {
			t.Fatal(err)
		}
		sameGuardian(t, c.Entry, g)
		if plan, err := certstore.PlanAdd(s, g, false); err != nil || plan.Changed {
			t.Errorf("PlanAdd once the keys are there: %+v %v", plan, err)
		}
		if plan, err := certstore.PlanAdd(s, p, false); err != nil || plan.Changed {
			t.Errorf("PlanAdd of the public guardian once the keys are there: %+v %v", plan, err)
		}
		// A broken guardian with these certificates needs replace, and
		// the error does not call them other certificates.
		b.dropKey(t, s, "pub")
		if _, err := certstore.PlanAdd(s, g, false); !errors.Is(err, certstore.ErrExists) || !strings.Contains(err.Error(), "the same certificates, and is broken") {
			t.Errorf("PlanAdd over a broken guardian: %v", err)
		}
		if plan, err := certstore.PlanAdd(s, g, true); err != nil || !plan.Changed || plan.AddsKeys {
			t.Errorf("PlanAdd over a broken guardian with replace: %+v %v", plan, err)
		}
	}},
	{"a lost private key", func(t *testing.T, s certstore.Store, b breaker) {
		s.Add(makeGuardian(t, "ok", "h", time.Time{}), certstore.OriginGenerated, false)
		s.Add(makeGuardian(t, "g", "h", time.Time{}), certstore.OriginGenerated, false)
		b.dropKey(t, s, "g")
		// What is left is reported, not what the guardian had: no private
		// keys (both are needed), and the encryption key that remains.
		es, err := s.List()
		must(t, err)
		e, err := s.Get("g")
		must(t, err)
		for _, e := range append(es, e) {
			if e.Name != "g" {
				continue
			}
			if e.Meta.HasPrivateKeys || e.Guardian.SigningKey != nil || (e.Guardian.EncryptionKey == nil) != current.noExport {
				t.Errorf("%s: private keys %v, signing key %v, encryption key %v; want only the encryption key",
					e.Name, e.Meta.HasPrivateKeys, e.Guardian.SigningKey != nil, e.Guardian.EncryptionKey != nil)
			}
		}
		brokenEverywhere(t, s, "g")
	}},
	{"certificates deleted by hand", func(t *testing.T, s certstore.Store, b breaker) {
		s.Add(makeGuardian(t, "ok", "h", time.Time{}), certstore.OriginGenerated, false)
		s.Add(makeGuardian(t, "g", "h", time.Time{}), certstore.OriginGenerated, false)
		b.dropCerts(t, s, "g")
		brokenEverywhere(t, s, "g")
	}},
	{"repair moves the broken aside and loses nothing", func(t *testing.T, s certstore.Store, b breaker) {
		ok := makeGuardian(t, "ok", "h", time.Time{})
		s.Add(ok, certstore.OriginGenerated, false)
		s.Add(makeGuardian(t, "g", "h", time.Time{}), certstore.OriginGenerated, false)
		b.dropCerts(t, s, "g")
		found, err := s.Check(true)
		if err != nil || len(found) == 0 {
			t.Fatalf("Check --repair: %+v %v", found, err)
		}
		for _, f := range found {
			if f.Action == "" && !f.Warning {
				t.Errorf("not repaired: %+v", f)
			}
		}
		if f, err := s.Check(false); err != nil || len(f) != 0 {
			t.Errorf("Check after --repair: %+v %v", f, err)
		}
		e, err := s.Get("ok")
		if err != nil {
			t.Fatal(err)
		}
		sameGuardian(t, e, ok)
		if _, err := s.Get("g"); !errors.Is(err, certstore.ErrNotFound) {
			t.Errorf("the broken guardian is still live: %v", err)
		}
	}},
}

// brokenEverywhere: a broken guardian is listed with its problem, shown,
// found by Check, and can be removed.
func brokenEverywhere(t *testing.T, s certstore.Store, name string) {
	t.Helper()
	es, err := s.List()
	if err != nil || len(es) != 2 {
		t.Fatalf("List: %v %v", names(es), err)
	}
	for _, e := range es {
		if (e.Name == name) != e.Broken() {
			t.Errorf("%s: problem %q", e.Name, e.Problem)
		}
	}
	e, err := s.Get(name)
	if err != nil || !e.Broken() {
		t.Fatalf("Get: %+v %v", e, err)
	}
	found, err := s.Check(false)
	if err != nil {
		t.Fatal(err)
	}
	named := false
	for _, f := range found {
		named = named || (f.Name == name && !f.Warning && f.Detail != "")
	}
	if !named {
		t.Errorf("Check did not name %s: %+v", name, found)
	}
	if _, err := s.Remove(name, false); err != nil {
		t.Fatalf("Remove of a broken guardian: %v", err)
	}
	if f, err := s.Check(false); err != nil || len(f) != 0 {
		t.Errorf("Check after Remove: %+v %v", f, err)
	}
}

func sameGuardian(t *testing.T, e *certstore.Entry, g *guardian.Guardian) {
	t.Helper()
	if e == nil {
		t.Fatal("no entry")
	}
	if e.Broken() || e.Name != g.Name {
		t.Fatalf("entry %q: %q", e.Name, e.Problem)
	}
	if !e.Guardian.Signing.Equal(g.Signing) || !e.Guardian.Encryption.Equal(g.Encryption) {
		t.Fatalf("entry %q has other certificates", e.Name)
	}
	if g.HasPrivateKeys() && current.noExport {
		if !e.Meta.HasPrivateKeys || !errors.Is(e.KeyErr, certstore.ErrKeyNotExportable) {
			t.Fatalf("entry %q: private keys %v, %v; want them held but not exportable", e.Name, e.Meta.HasPrivateKeys, e.KeyErr)
		}
		return
	}
	if g.HasPrivateKeys() {
		if !e.Meta.HasPrivateKeys || e.Guardian.SigningKey == nil || !e.Guardian.SigningKey.(*rsa.PrivateKey).Equal(g.SigningKey) || !e.Guardian.EncryptionKey.(*rsa.PrivateKey).Equal(g.EncryptionKey) {
			t.Fatalf("entry %q lost its private keys (%v)", e.Name, e.KeyErr)
		}
	}
}

func names(es []*certstore.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Keys are expensive to make; the tests share a few. Certificates (and so
// thumbprints) are new each time.
var (
	keysOnce sync.Once
	keys     []*rsa.PrivateKey
	nextKey  int
	keysMu   sync.Mutex
)

func testKey(t *testing.T) *rsa.PrivateKey {
	keysOnce.Do(func() {
		for range 6 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys = append(keys, k)
		}
	})
	keysMu.Lock()
	defer keysMu.Unlock()
	nextKey++
	return keys[nextKey%len(keys)]
}

// makeGuardian makes a guardian shaped like Hyper-V's, made at notBefore
// (now when zero).
func makeGuardian(t *testing.T, name, host string, notBefore time.Time) *guardian.Guardian {
	t.Helper()
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Hour)
	}
	g := &guardian.Guardian{Name: name}
	g.SigningKey, g.Signing = makeCert(t, fmt.Sprintf("Shielded VM Signing Certificate (%s) (%s)", name, host), notBefore, x509.KeyUsageDigitalSignature)
	g.EncryptionKey, g.Encryption = makeCert(t, fmt.Sprintf("Shielded VM Encryption Certificate (%s) (%s)", name, host), notBefore, x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment)
	return g
}

func makeCert(t *testing.T, cn string, notBefore time.Time, usage x509.KeyUsage) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key := testKey(t)
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	ski := sha1.Sum(pub)
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore.UTC().Truncate(time.Second), NotAfter: notBefore.UTC().Truncate(time.Second).AddDate(10, 0, 0),
		KeyUsage: usage, BasicConstraintsValid: true, SubjectKeyId: ski[:], SignatureAlgorithm: x509.SHA256WithRSA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	c, err := x509.ParseCertificate(der)
	must(t, err)
	return key, c
}

// makePublic makes a guardian and its public part as a public guardian
// file carries it (with its signature over its encryption certificate).
func makePublic(t *testing.T, name string) (g, public *guardian.Guardian) {
	t.Helper()
	g = makeGuardian(t, name, "h", time.Time{})
	sig, err := g.SignEncryptionCertificate()
	must(t, err)
	public = g.Public()
	public.EncryptionCertSignature = sig
	return g, public
}
