package certstore_test

import (
	"crypto/rsa"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/hypervfake"
)

// Hyper-V-specific behaviour: pairing, statuses and repair decisions, over
// the fake of Windows.

func newHyperV(t *testing.T) (*certstore.HyperV, *hypervfake.Windows) {
	w := hypervfake.New()
	return certstore.NewHyperV(w.Stores(), w.Registry(), filepath.Join(t.TempDir(), "state")), w
}

func tps(g *guardian.Guardian) []string {
	return []string{guardian.Thumbprint(g.Signing), guardian.Thumbprint(g.Encryption)}
}

func findings(t *testing.T, s certstore.Store, repair bool) map[certstore.FindingKind][]certstore.Finding {
	t.Helper()
	fs, err := s.Check(repair)
	if err != nil {
		t.Fatal(err)
	}
	out := map[certstore.FindingKind][]certstore.Finding{}
	for _, f := range fs {
		out[f.Kind] = append(out[f.Kind], f)
	}
	return out
}

func TestHyperVWindowsMadeGuardian(t *testing.T) {
	s, w := newHyperV(t)
	if len(w.Certificates(certstore.ShieldedVMStore)) != 0 {
		t.Fatal("a fresh Windows has the store")
	}
	g := makeGuardian(t, "UntrustedGuardian", "HOST1", time.Time{})
	must(t, w.Install("UntrustedGuardian", g))
	e, err := s.Get("UntrustedGuardian")
	must(t, err)
	sameGuardian(t, e, g)
	if e.Meta.Origin != certstore.OriginHyperV || e.Warning != "" {
		t.Errorf("origin %q, warning %q", e.Meta.Origin, e.Warning)
	}
	// Reading changes nothing, and makes no state directory.
	before := w.Changes()
	s.List()
	s.Check(false)
	if w.Changes() != before {
		t.Error("a read changed the machine")
	}
}

func TestHyperVAddCreatesStoreAndRegisters(t *testing.T) {
	s, w := newHyperV(t)
	g := makeGuardian(t, "imported", "OLDHOST", time.Time{})
	c, err := s.Add(g, certstore.OriginPFX, false)
	must(t, err)
	sameGuardian(t, c.Entry, g)
	if got := w.Certificates(certstore.ShieldedVMStore); !slices.Equal(got, sorted(tps(g))) {
		t.Errorf("store: %v", got)
	}
	regs := w.Registrations()
	if len(regs) != 1 || regs[0].Name != "imported" || regs[0].SigningThumbprint != tps(g)[0] || regs[0].EncryptionThumbprint != tps(g)[1] {
		t.Errorf("registrations: %+v", regs)
	}
	// the same certificates under another name are refused
	g2 := *g
	g2.Name = "again"
	if _, err := s.Add(&g2, certstore.OriginPFX, false); !errors.Is(err, certstore.ErrExists) || !strings.Contains(err.Error(), `"imported"`) {
		t.Errorf("same certificates twice: %v", err)
	}
}

func TestHyperVRemoveMovesToTrashStore(t *testing.T) {
	s, w := newHyperV(t)
	g := makeGuardian(t, "UntrustedGuardian", "H", time.Time{})
	must(t, w.Install("UntrustedGuardian", g))
	keys := w.Keys()
	if _, err := s.Remove("UntrustedGuardian", false); err != nil {
		t.Fatal(err)
	}
	if len(w.Registrations()) != 0 || len(w.Certificates(certstore.ShieldedVMStore)) != 0 {
		t.Fatal("still registered or in the store")
	}
	if got := w.Certificates(certstore.TrashStore); !slices.Equal(got, sorted(tps(g))) || w.Keys() != keys {
		t.Fatalf("trash store %v, %d keys of %d", got, w.Keys(), keys)
	}
	c, err := s.Restore("UntrustedGuardian")
	must(t, err)
	sameGuardian(t, c.Entry, g)
	if regs := w.Registrations(); len(regs) != 1 || regs[0].Name != "UntrustedGuardian" {
		t.Errorf("not registered again: %+v", regs)
	}
	if len(w.Certificates(certstore.TrashStore)) != 0 {
		t.Error("left in the trash store")
	}
	// purge deletes certificates and keys
	if _, err := s.Remove("UntrustedGuardian", true); err != nil {
		t.Fatal(err)
	}
	if w.Keys() != keys-2 || len(w.Certificates(certstore.ShieldedVMStore)) != 0 || len(w.Registrations()) != 0 {
		t.Errorf("purge left keys %d, certs %v, registrations %v", w.Keys(), w.Certificates(certstore.ShieldedVMStore), w.Registrations())
	}
}

// Remove-HgsGuardian leaves the certificates: guardctl lists them under the
// name in their subjects, says what they are, and --repair moves them to
// the trash store, from which restore brings them back as they were.
func TestHyperVLeftoverAfterRemoveHgsGuardian(t *testing.T) {
	s, w := newHyperV(t)
	g := makeGuardian(t, "UntrustedGuardian", "H", time.Time{})
	must(t, w.Install("UntrustedGuardian", g))
	must(t, w.Registry().Unregister("UntrustedGuardian"))
	e, err := s.Get("UntrustedGuardian")
	must(t, err)
	sameGuardian(t, e, g)
	if !strings.Contains(e.Warning, "Remove-HgsGuardian") {
		t.Errorf("warning: %q", e.Warning)
	}
	f := findings(t, s, false)
	if len(f[certstore.FindingLeftover]) != 1 || f[certstore.FindingLeftover][0].Name != "UntrustedGuardian" {
		t.Fatalf("findings: %+v", f)
	}
	f = findings(t, s, true)
	if a := f[certstore.FindingLeftover][0].Action; !strings.Contains(a, certstore.TrashStore) {
		t.Errorf("action: %q", a)
	}
	if !slices.Equal(w.Certificates(certstore.TrashStore), sorted(tps(g))) {
		t.Error("not in the trash store")
	}
	if f := findings(t, s, false); len(f) != 0 {
		t.Errorf("after repair: %+v", f)
	}
	c, err := s.Restore("UntrustedGuardian")
	must(t, err)
	sameGuardian(t, c.Entry, g)
	if len(w.Registrations()) != 0 || !strings.Contains(c.Entry.Warning, "not registered") {
		t.Errorf("restore registered a pair that was not: %+v %q", w.Registrations(), c.Entry.Warning)
	}
}

// Generations of UntrustedGuardian pile up when Hyper-V Manager makes a new
// one after Remove-HgsGuardian: each is paired by subject and NotBefore.
func TestHyperVGenerations(t *testing.T) {
	s, w := newHyperV(t)
	t0 := time.Date(2017, 3, 4, 10, 0, 0, 0, time.UTC)
	old := makeGuardian(t, "UntrustedGuardian", "H", t0)
	mid := makeGuardian(t, "UntrustedGuardian", "H", t0.AddDate(3, 0, 0))
	cur := makeGuardian(t, "UntrustedGuardian", "H", t0.AddDate(7, 0, 0))
	for _, g := range []*guardian.Guardian{old, mid, cur} {
		must(t, w.Install("UntrustedGuardian", g))
		if g != cur {
			must(t, w.Registry().Unregister("UntrustedGuardian"))
		}
	}
	es, err := s.List()
	must(t, err)
	want := map[string]*guardian.Guardian{"UntrustedGuardian": cur, "UntrustedGuardian@2017-03-04": old, "UntrustedGuardian@2020-03-04": mid}
	old.Name, mid.Name = "UntrustedGuardian@2017-03-04", "UntrustedGuardian@2020-03-04"
	if len(es) != 3 {
		t.Fatalf("List: %v", names(es))
	}
	for _, e := range es {
		g := want[e.Name]
		if g == nil {
			t.Fatalf("unexpected %q in %v", e.Name, names(es))
		}
		sameGuardian(t, e, g)
		if (g == cur) != (e.Warning == "") {
			t.Errorf("%s: warning %q", e.Name, e.Warning)
		}
	}
	f := findings(t, s, false)
	if len(f[certstore.FindingGenerations]) != 1 || len(f[certstore.FindingLeftover]) != 2 {
		t.Fatalf("findings: %+v", f)
	}
	if g := f[certstore.FindingGenerations][0]; !g.Warning || !strings.Contains(g.Detail, "3 generations of (UntrustedGuardian)") {
		t.Errorf("generations: %+v", g)
	}
	findings(t, s, true)
	if es, _ := s.List(); len(es) != 1 || es[0].Name != "UntrustedGuardian" {
		t.Errorf("after repair: %v", names(es))
	}
	if len(w.Certificates(certstore.TrashStore)) != 4 {
		t.Errorf("trash store: %v", w.Certificates(certstore.TrashStore))
	}
	if tr, _ := s.Trash(); len(tr) != 2 {
		t.Errorf("trash: %+v", tr)
	}
}

// Pairing follows NotBefore, not the order in the store, and keeps hosts
// apart; a lone certificate is named as such.
func TestHyperVPairing(t *testing.T) {
	s, w := newHyperV(t)
	t0 := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	a := makeGuardian(t, "G", "H1", t0)
	b := makeGuardian(t, "G", "H1", t0.Add(30*24*time.Hour))
	c := makeGuardian(t, "G", "H2", t0)
	st := w.Stores()
	for _, x := range []struct {
		g   *guardian.Guardian
		sig bool
		enc bool
	}{{a, true, true}, {b, true, false}, {c, true, true}} {
		if x.enc {
			must(t, st.Add(certstore.ShieldedVMStore, x.g.Encryption, x.g.EncryptionKey.(*rsa.PrivateKey)))
		}
		if x.sig {
			must(t, st.Add(certstore.ShieldedVMStore, x.g.Signing, x.g.SigningKey.(*rsa.PrivateKey)))
		}
	}
	es, err := s.List()
	must(t, err)
	if len(es) != 3 {
		t.Fatalf("List: %v", names(es))
	}
	var pairs, lone int
	for _, e := range es {
		switch {
		case e.Broken():
			lone++
			if !e.Guardian.Signing.Equal(b.Signing) || !strings.Contains(e.Problem, "encryption certificate is not in") {
				t.Errorf("lone: %s %q", e.Name, e.Problem)
			}
		default:
			pairs++
			if !(e.Guardian.Signing.Equal(a.Signing) && e.Guardian.Encryption.Equal(a.Encryption)) &&
				!(e.Guardian.Signing.Equal(c.Signing) && e.Guardian.Encryption.Equal(c.Encryption)) {
				t.Errorf("%s is paired wrongly", e.Name)
			}
		}
	}
	if pairs != 2 || lone != 1 {
		t.Errorf("%d pairs, %d lone", pairs, lone)
	}
	// A certificate that is no guardian's is reported, never moved.
	_, other := makeCert(t, "some other certificate", t0, 0)
	must(t, st.Add(certstore.ShieldedVMStore, other, nil))
	f := findings(t, s, true)
	if u := f[certstore.FindingUnexpected]; len(u) != 1 || u[0].Action != "" {
		t.Errorf("unexpected: %+v", u)
	}
	if !slices.Contains(w.Certificates(certstore.ShieldedVMStore), guardian.Thumbprint(other)) {
		t.Error("repair moved a certificate that is not a guardian's")
	}
}

// The story of seed 004: the user deleted the certificates of a registered
// guardian; Windows then fails with "an error occurred while applying
// security changes", and only Remove-HgsGuardian fixed it.
func TestHyperVRegistrationWithoutCertificates(t *testing.T) {
	s, w := newHyperV(t)
	g := makeGuardian(t, "UntrustedGuardian", "H", time.Time{})
	must(t, w.Install("UntrustedGuardian", g))
	for _, tp := range tps(g) {
		must(t, w.Stores().Delete(certstore.ShieldedVMStore, tp, true))
	}
	e, err := s.Get("UntrustedGuardian")
	must(t, err)
	if !strings.Contains(e.Problem, "registered with HgsClient, but both its certificates are gone") || !strings.Contains(e.Problem, "applying security changes") {
		t.Errorf("problem: %q", e.Problem)
	}
	f := findings(t, s, true)
	if b := f[certstore.FindingBroken]; len(b) != 1 || !strings.Contains(b[0].Action, "unregistered") {
		t.Fatalf("findings: %+v", f)
	}
	if len(w.Registrations()) != 0 {
		t.Error("still registered")
	}
	if tr, _ := s.Trash(); len(tr) != 1 || tr[0].Name != "UntrustedGuardian" {
		t.Errorf("not remembered: %+v", tr)
	}
	_, err = s.Restore("UntrustedGuardian")
	if err == nil || !strings.Contains(err.Error(), "import its PFX pair") {
		t.Errorf("restore without certificates: %v", err)
	}
	// Once its certificates are back (imported by hand), restore registers
	// the name again.
	st := w.Stores()
	must(t, st.Add(certstore.ShieldedVMStore, g.Signing, g.SigningKey.(*rsa.PrivateKey)))
	must(t, st.Add(certstore.ShieldedVMStore, g.Encryption, g.EncryptionKey.(*rsa.PrivateKey)))
	c, err := s.Restore("UntrustedGuardian")
	must(t, err)
	sameGuardian(t, c.Entry, g)
	if len(w.Registrations()) != 1 {
		t.Error("not registered again")
	}
}

// "The guardian 'UntrustedGuardian' cannot be the owner because it has no
// private key": certificates imported without keys, then registered.
func TestHyperVNoPrivateKeys(t *testing.T) {
	s, w := newHyperV(t)
	g := makeGuardian(t, "UntrustedGuardian", "H", time.Time{})
	st := w.Stores()
	must(t, st.Add(certstore.ShieldedVMStore, g.Signing, nil))
	must(t, st.Add(certstore.ShieldedVMStore, g.Encryption, nil))
	must(t, w.Registry().Register("UntrustedGuardian", tps(g)[0], tps(g)[1]))
	e, err := s.Get("UntrustedGuardian")
	must(t, err)
	if !strings.Contains(e.Problem, "HasPrivateSigningKey = False") || e.Meta.HasPrivateKeys {
		t.Errorf("problem: %q", e.Problem)
	}
	f := findings(t, s, true)
	if n := f[certstore.FindingNoPrivateKey]; len(n) != 1 || n[0].Action != "" {
		t.Fatalf("findings: %+v", f)
	}
	if _, err := s.Get("UntrustedGuardian"); err != nil {
		t.Fatal("repair removed it")
	}
	// Importing the PFX pair again over it (--force) puts the keys in.
	c, err := s.Add(g, certstore.OriginPFX, true)
	must(t, err)
	sameGuardian(t, c.Entry, g)
	if len(w.Registrations()) != 1 {
		t.Errorf("registrations: %+v", w.Registrations())
	}
	// A key deleted behind its certificate's back cannot be opened.
	must(t, w.DropKey(certstore.ShieldedVMStore, tps(g)[1]))
	e, _ = s.Get("UntrustedGuardian")
	if !strings.Contains(e.Problem, "encryption certificate's private key cannot be opened") || !strings.Contains(e.Problem, "cannot be the owner") {
		t.Errorf("problem: %q", e.Problem)
	}
}

func TestHyperVKeyNotExportable(t *testing.T) {
	s, w := newHyperV(t)
	g := makeGuardian(t, "G", "H", time.Time{})
	must(t, w.Install("G", g))
	must(t, w.SetExportable(certstore.ShieldedVMStore, tps(g)[0], false))
	e, err := s.Get("G")
	must(t, err)
	if e.Broken() || !e.Meta.HasPrivateKeys || e.Guardian.SigningKey != nil {
		t.Fatalf("entry: %q %+v", e.Problem, e.Meta)
	}
	if !errors.Is(e.KeyErr, certstore.ErrKeyNotExportable) || !strings.Contains(e.KeyErr.Error(), `"G"`) {
		t.Errorf("KeyErr: %v", e.KeyErr)
	}
}

// Without HgsClient the certificates are stored, the name is remembered,
// and the caller is told once; when HgsClient is there later, --repair
// registers it.
func TestHyperVNoHgsClient(t *testing.T) {
	s, w := newHyperV(t)
	must(t, w.SetNoHgsClient(true))
	g := makeGuardian(t, "imported", "H", time.Time{})
	c, err := s.Add(g, certstore.OriginPFX, false)
	must(t, err)
	if !strings.Contains(c.Notice, `"imported" was not registered`) {
		t.Errorf("notice: %q", c.Notice)
	}
	sameGuardian(t, c.Entry, g)
	if c.Entry.Warning != "" {
		t.Errorf("warning without HgsClient: %q", c.Entry.Warning)
	}
	if f := findings(t, s, false); len(f) != 0 {
		t.Errorf("findings: %+v", f)
	}
	// remove and restore work without HgsClient too
	if _, err := s.Remove("imported", false); err != nil {
		t.Fatal(err)
	}
	if c, err = s.Restore("imported"); err != nil || c.Notice == "" {
		t.Fatalf("restore: %+v %v", c, err)
	}
	must(t, w.SetNoHgsClient(false))
	e, _ := s.Get("imported")
	if !strings.Contains(e.Warning, "not registered with HgsClient yet") {
		t.Errorf("warning: %q", e.Warning)
	}
	f := findings(t, s, true)
	if u := f[certstore.FindingUnregistered]; len(u) != 1 || u[0].Action != "registered with HgsClient" {
		t.Fatalf("findings: %+v", f)
	}
	if regs := w.Registrations(); len(regs) != 1 || regs[0].Name != "imported" {
		t.Errorf("registrations: %+v", regs)
	}
	if f := findings(t, s, false); len(f) != 0 {
		t.Errorf("after repair: %+v", f)
	}
}

// A certificate without a guardian-shaped subject (an imported PFX pair
// made by openssl) keeps the name it was imported under, registered or not.
func TestHyperVImportedAnySubject(t *testing.T) {
	s, w := newHyperV(t)
	must(t, w.SetNoHgsClient(true))
	g := &guardian.Guardian{Name: "host-b"}
	t0 := time.Now().Add(-time.Hour)
	g.SigningKey, g.Signing = makeCert(t, "sig", t0, 0)
	g.EncryptionKey, g.Encryption = makeCert(t, "enc", t0, 0)
	_, err := s.Add(g, certstore.OriginPFX, false)
	must(t, err)
	e, err := s.Get("host-b")
	must(t, err)
	sameGuardian(t, e, g)
	if f := findings(t, s, false); len(f) != 0 {
		t.Errorf("findings: %+v", f)
	}
}

func TestHyperVExpiry(t *testing.T) {
	s, w := newHyperV(t)
	old := makeGuardian(t, "old", "H", time.Now().AddDate(-10, 0, -3))
	soon := makeGuardian(t, "soon", "H", time.Now().AddDate(-10, 0, 20))
	must(t, w.Install("old", old))
	must(t, w.Install("soon", soon))
	f := findings(t, s, true)
	if e := f[certstore.FindingExpired]; len(e) != 1 || e[0].Name != "old" || !e[0].Warning {
		t.Errorf("expired: %+v", e)
	}
	if e := f[certstore.FindingExpiring]; len(e) != 1 || e[0].Name != "soon" || !e[0].Warning || !strings.Contains(e[0].Detail, "in 19 days") && !strings.Contains(e[0].Detail, "in 20 days") {
		t.Errorf("expiring: %+v", e)
	}
	if len(w.Registrations()) != 2 {
		t.Error("repair touched expired guardians")
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// When HgsClient refuses the name, Add takes back what it put in; a
// guardian it was to replace stays in the trash, restorable.
func TestHyperVRegisterRefused(t *testing.T) {
	s, w := newHyperV(t)
	old := makeGuardian(t, "G", "H", time.Time{})
	must(t, w.Install("G", old))
	keys := w.Keys()
	w.FailRegister(errors.New("the certificate is not valid for this purpose"))
	_, err := s.Add(makeGuardian(t, "G", "H", time.Time{}), certstore.OriginPFX, true)
	if err == nil || !strings.Contains(err.Error(), "not valid for this purpose") || !strings.Contains(err.Error(), "guardian restore G") {
		t.Fatalf("Add: %v", err)
	}
	if len(w.Certificates(certstore.ShieldedVMStore)) != 0 || w.Keys() != keys {
		t.Errorf("left behind: %v, %d keys of %d", w.Certificates(certstore.ShieldedVMStore), w.Keys(), keys)
	}
	w.FailRegister(nil)
	c, err := s.Restore("G")
	must(t, err)
	sameGuardian(t, c.Entry, old)
}

// HgsClient takes any string as a name; one guardctl cannot take is shown
// as a valid one, and restore registers the original again.
func TestHyperVNameGuardctlCannotTake(t *testing.T) {
	s, w := newHyperV(t)
	g := makeGuardian(t, "ゲスト", "H", time.Time{})
	must(t, w.Install("ゲスト: lab/1", g))
	es, err := s.List()
	must(t, err)
	if len(es) != 1 || es[0].Name != "____ lab_1" {
		t.Fatalf("List: %v", names(es))
	}
	name := es[0].Name
	if !strings.Contains(es[0].Warning, `HgsClient names it "ゲスト: lab/1"`) {
		t.Errorf("warning: %q", es[0].Warning)
	}
	if _, err := s.Remove(name, false); err != nil {
		t.Fatal(err)
	}
	if len(w.Registrations()) != 0 {
		t.Fatal("not unregistered")
	}
	if _, err := s.Restore(name); err != nil {
		t.Fatal(err)
	}
	if regs := w.Registrations(); len(regs) != 1 || regs[0].Name != "ゲスト: lab/1" {
		t.Errorf("registered again as %+v", regs)
	}
}

// HgsClient's HasPrivateSigningKey = False with a key the store links (one
// in a legacy CSP): the guardian still exports, and check names it.
func TestHyperVKeyHgsClientDoesNotUse(t *testing.T) {
	s, w := newHyperV(t)
	g := makeGuardian(t, "G", "H", time.Time{})
	must(t, w.Install("G", g))
	must(t, w.MoveKeyToLegacyCSP(tps(g)[0]))
	e, err := s.Get("G")
	must(t, err)
	sameGuardian(t, e, g)
	if !strings.Contains(e.Warning, "HasPrivateSigningKey = False") {
		t.Errorf("warning: %q", e.Warning)
	}
	f := findings(t, s, true)
	if n := f[certstore.FindingNoPrivateKey]; len(n) != 1 || n[0].Action != "" || n[0].Warning {
		t.Errorf("findings: %+v", f)
	}
}

// A PFX imported without naming a store lands in Personal, where Hyper-V
// does not look (seed 004): check says so, and leaves it there.
func TestHyperVCertificateInPersonal(t *testing.T) {
	s, w := newHyperV(t)
	g := makeGuardian(t, "UntrustedGuardian", "OLDHOST", time.Time{})
	must(t, w.Stores().Add(certstore.PersonalStore, g.Signing, g.SigningKey.(*rsa.PrivateKey)))
	f := findings(t, s, true)
	m := f[certstore.FindingMisplaced]
	if len(m) != 1 || !m[0].Warning || m[0].Action != "" || !strings.Contains(m[0].Detail, "signing certificate of guardian (UntrustedGuardian) (OLDHOST) is in LocalMachine\\Personal") {
		t.Fatalf("findings: %+v", f)
	}
	if len(w.Certificates(certstore.PersonalStore)) != 1 {
		t.Error("repair moved it")
	}
}
