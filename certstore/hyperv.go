package certstore

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
)

// TrashStore is the LocalMachine system store where the Hyper-V store keeps
// removed guardians' certificates, with their keys, until they are restored
// or purged.
const TrashStore = "guardctl Removed Guardians"

// PersonalStore is LocalMachine's Personal store, where a PFX imported
// without naming a store lands.
const PersonalStore = "My"

// OriginHyperV: a guardian guardctl did not add (Hyper-V Manager,
// New-HgsGuardian or a script made it).
const OriginHyperV Origin = "hyperv"

// ExpiringWithin is when a guardian counts as expiring.
const ExpiringWithin = 60 * 24 * time.Hour

// HyperV is Hyper-V's own guardian store: the certificates with their
// machine keys in the LocalMachine store ShieldedVMStore, and the names
// HgsClient registers for them. It is built only on SystemStores and
// GuardianRegistry, so everything here runs, and is tested, on every OS.
//
// What Windows does not keep is kept in a small state directory: which
// certificates guardctl added under which name (a name HgsClient could not
// register yet, an imported public guardian's signature), and one record
// per removed guardian (name, thumbprints, whether it was registered), so
// that Restore moves its certificates back from TrashStore and registers
// the name again. No secret is ever written there.
//
// Guardians are:
//   - every HgsClient registration, with its certificates when they are in
//     ShieldedVMStore (broken when they are not);
//   - pairs guardctl added that are not registered (no HgsClient, or
//     unregistered behind guardctl's back);
//   - pairs in ShieldedVMStore that no registration names, paired as the
//     Windows scripts pair them: by the NAME in "CN=Shielded VM
//     Signing|Encryption Certificate (NAME) (HOST)" and by NotBefore. The
//     newest takes NAME when it is free; other generations are named
//     NAME@DATE (the date of NotBefore).
type HyperV struct {
	stores   SystemStores
	registry GuardianRegistry
	stateDir string
	// LockTimeout is how long a command waits for another one to finish.
	LockTimeout time.Duration
	// Now is the clock (tests set it).
	Now func() time.Time
}

// NewHyperV returns the Hyper-V store over the given Windows interfaces,
// keeping its own records in stateDir.
func NewHyperV(stores SystemStores, registry GuardianRegistry, stateDir string) *HyperV {
	return &HyperV{stores: stores, registry: registry, stateDir: stateDir, LockTimeout: 2 * time.Minute, Now: time.Now}
}

// Location names the store in messages.
func (s *HyperV) Location() string { return `LocalMachine\` + ShieldedVMStore }

const (
	hvRecordsFile = "guardians.json"
	hvTrashDir    = "trash"
)

// hvRecord is what guardctl remembers about a pair it added.
type hvRecord struct {
	Name       string    `json:"name"`
	Signing    string    `json:"signing"`
	Encryption string    `json:"encryption"`
	Origin     Origin    `json:"origin"`
	AddedAt    time.Time `json:"addedAt"`
	// Pending: guardctl has yet to register the name (HgsClient was missing
	// when it was added or restored). A record of a pair no registration
	// names that is not pending is a leftover: the name was unregistered
	// behind guardctl's back.
	Pending bool `json:"pending,omitempty"`
	// EncryptionSignature is a public-only guardian's signature over its
	// encryption certificate, needed to export it again.
	EncryptionSignature []byte `json:"encryptionSignature,omitempty"`
}

// hvRemoved is one removed guardian: what Restore needs.
type hvRemoved struct {
	Version    int    `json:"version"`
	ID         string `json:"id"`
	Name       string `json:"name"`
	Signing    string `json:"signing,omitempty"`
	Encryption string `json:"encryption,omitempty"`
	Registered bool   `json:"registered"`
	// HgsName is the name HgsClient had for it, when that is not Name (a
	// name guardctl could not take as it was).
	HgsName   string    `json:"hgsName,omitempty"`
	RemovedAt time.Time `json:"removedAt"`
	Reason    string    `json:"reason"`
	// Moved lists the thumbprints moved to TrashStore; a certificate that
	// was already gone is not in it.
	Moved  []string  `json:"moved"`
	Record *hvRecord `json:"record,omitempty"`
}

// hvState is one consistent look at everything the store is made of.
type hvState struct {
	certs   map[string]SystemCert // ShieldedVMStore, by thumbprint
	unknown []string              // thumbprints of certificates no guardian claims
	regs    []Registration
	noHgs   bool
	records []hvRecord
	gs      []*hvGuardian
}

// hvGuardian is one guardian as found, before it becomes an Entry.
type hvGuardian struct {
	name         string
	sigTP, encTP string
	sig, enc     *SystemCert
	reg          *Registration
	rec          *hvRecord
	subjectName  string // the NAME in the certificates' subjects
	leftover     bool   // a pair no registration names, with HgsClient there
	pending      bool   // added by guardctl, not registered yet
	problem      string
	warning      string
}

func (g *hvGuardian) hasKeys() bool {
	return g.sig != nil && g.enc != nil && g.sig.HasKey && g.enc.HasKey && g.sig.KeyProblem == "" && g.enc.KeyProblem == ""
}

func (g *hvGuardian) public() bool { return g.rec != nil && g.rec.Origin == OriginPublic }

// thumbprints are the guardian's certificates that are in ShieldedVMStore.
func (g *hvGuardian) present() []string {
	var out []string
	if g.sig != nil {
		out = append(out, g.sigTP)
	}
	if g.enc != nil {
		out = append(out, g.encTP)
	}
	return out
}

func normTP(tp string) string {
	return strings.ToUpper(strings.NewReplacer(" ", "", ":", "", "\u200e", "").Replace(tp))
}

var subjectRE = regexp.MustCompile(`^Shielded VM (Signing|Encryption) Certificate \((.+)\) \(([^()]*)\)$`)

// subjectOf parses a guardian certificate's common name: role, name, host.
func subjectOf(c *x509.Certificate) (role, name, host string, ok bool) {
	m := subjectRE.FindStringSubmatch(c.Subject.CommonName)
	if m == nil {
		return "", "", "", false
	}
	return strings.ToLower(m[1]), m[2], m[3], true
}

func (s *HyperV) lock(exclusive bool) (func(), error) {
	if exclusive {
		if err := atomicfile.MkdirAll(filepath.Join(s.stateDir, hvTrashDir)); err != nil {
			return nil, fmt.Errorf("creating guardctl's Hyper-V records: %w", err)
		}
	} else if _, err := os.Stat(s.stateDir); errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	return takeLock(filepath.Join(s.stateDir, lockName), exclusive, s.LockTimeout)
}

// locked takes the lock and reads the store under it: every operation
// starts so. The caller runs unlock when it is done with st.
func (s *HyperV) locked(exclusive bool) (st *hvState, unlock func(), err error) {
	if unlock, err = s.lock(exclusive); err != nil {
		return nil, nil, err
	}
	if st, err = s.load(); err != nil {
		unlock()
		return nil, nil, err
	}
	return st, unlock, nil
}

// load reads the store, the registrations and guardctl's records, and
// works out the guardians.
func (s *HyperV) load() (*hvState, error) {
	st := &hvState{certs: map[string]SystemCert{}}
	certs, err := s.stores.List(ShieldedVMStore)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.Location(), err)
	}
	for _, c := range certs {
		st.certs[guardian.Thumbprint(c.Cert)] = c
	}
	st.regs, err = s.registry.List()
	if errors.Is(err, ErrNoHgsClient) {
		st.noHgs, st.regs = true, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading HgsClient's guardians: %w", err)
	}
	if st.records, err = s.readRecords(); err != nil {
		return nil, err
	}
	st.gs = st.guardians()
	return st, nil
}

func (s *HyperV) readRecords() ([]hvRecord, error) {
	raw, err := os.ReadFile(filepath.Join(s.stateDir, hvRecordsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("reading guardctl's Hyper-V records: %w; the machine's guardians are for administrators: run guardctl from an elevated prompt", err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading guardctl's Hyper-V records: %w", err)
	}
	var recs []hvRecord
	if err := json.Unmarshal(raw, &recs); err != nil {
		return nil, fmt.Errorf("guardctl's Hyper-V records (%s) are damaged: %w", filepath.Join(s.stateDir, hvRecordsFile), err)
	}
	return recs, nil
}

func (s *HyperV) writeRecords(recs []hvRecord) error {
	if recs == nil {
		recs = []hvRecord{}
	}
	raw, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	_, err = atomicfile.WriteFile(filepath.Join(s.stateDir, hvRecordsFile), append(raw, '\n'), 0o600, atomicfile.Options{Overwrite: true})
	return err
}

// setRecord replaces the record of the pair with these thumbprints (or
// adds it); with rec nil it drops it.
func (s *HyperV) setRecord(sigTP, encTP string, rec *hvRecord) error {
	recs, err := s.readRecords()
	if err != nil {
		return err
	}
	out := recs[:0]
	for _, r := range recs {
		if r.Signing != sigTP || r.Encryption != encTP {
			out = append(out, r)
		}
	}
	if rec != nil {
		out = append(out, *rec)
	}
	return s.writeRecords(out)
}

// guardians works the guardians out of the state.
func (st *hvState) guardians() []*hvGuardian {
	var gs []*hvGuardian
	used := map[string]bool{}
	taken := map[string]bool{}
	cert := func(tp string) *SystemCert {
		if c, ok := st.certs[tp]; ok {
			return &c
		}
		return nil
	}
	recordOf := func(sig, enc string) *hvRecord {
		for i := range st.records {
			if st.records[i].Signing == sig && st.records[i].Encryption == enc {
				return &st.records[i]
			}
		}
		return nil
	}
	// Registrations whose names guardctl takes as they are come first;
	// any other name (HgsClient takes any string) is shown as a valid one.
	for _, valid := range []bool{true, false} {
		for i := range st.regs {
			r := &st.regs[i]
			if (guardian.ValidateName(r.Name) == nil) != valid {
				continue
			}
			g := &hvGuardian{name: r.Name, reg: r, sigTP: normTP(r.SigningThumbprint), encTP: normTP(r.EncryptionThumbprint)}
			g.sig, g.enc = cert(g.sigTP), cert(g.encTP)
			g.rec = recordOf(g.sigTP, g.encTP)
			if !valid {
				g.name = validName(r.Name)
				if taken[g.name] {
					g.name = freeName(taken, g.name, g.sig, g.enc, g.sigTP+g.encTP)
				}
			}
			used[g.sigTP], used[g.encTP], taken[g.name] = true, true, true
			gs = append(gs, g)
		}
	}
	for i := range st.records {
		r := &st.records[i]
		if used[r.Signing] || used[r.Encryption] {
			continue
		}
		g := &hvGuardian{name: r.Name, rec: r, sigTP: r.Signing, encTP: r.Encryption}
		g.sig, g.enc = cert(g.sigTP), cert(g.encTP)
		g.pending = !st.noHgs && r.Pending
		g.leftover = !st.noHgs && !r.Pending
		if taken[g.name] {
			g.name = freeName(taken, g.name, g.sig, g.enc, g.sigTP)
		}
		used[g.sigTP], used[g.encTP], taken[g.name] = true, true, true
		gs = append(gs, g)
	}
	// The rest: pair what the subjects name, newest first.
	type half struct {
		tp         string
		c          SystemCert
		name, host string
	}
	var sigs, encs []half
	var rest []string
	for tp, c := range st.certs {
		if used[tp] {
			continue
		}
		role, name, host, ok := subjectOf(c.Cert)
		switch {
		case !ok:
			rest = append(rest, tp)
		case role == "signing":
			sigs = append(sigs, half{tp, c, name, host})
		default:
			encs = append(encs, half{tp, c, name, host})
		}
	}
	newestFirst := func(h []half) {
		sort.Slice(h, func(i, j int) bool {
			if !h[i].c.Cert.NotBefore.Equal(h[j].c.Cert.NotBefore) {
				return h[i].c.Cert.NotBefore.After(h[j].c.Cert.NotBefore)
			}
			return h[i].tp < h[j].tp
		})
	}
	newestFirst(sigs)
	newestFirst(encs)
	paired := map[string]bool{}
	var found []*hvGuardian
	for _, sh := range sigs {
		best := -1
		var bestGap time.Duration
		for i, eh := range encs {
			if paired[eh.tp] || eh.name != sh.name || eh.host != sh.host {
				continue
			}
			gap := eh.c.Cert.NotBefore.Sub(sh.c.Cert.NotBefore).Abs()
			if gap <= time.Hour && (best < 0 || gap < bestGap) {
				best, bestGap = i, gap
			}
		}
		sc := sh.c
		g := &hvGuardian{subjectName: sh.name, sigTP: sh.tp, sig: &sc}
		if best >= 0 {
			ec := encs[best].c
			g.encTP, g.enc = encs[best].tp, &ec
			paired[encs[best].tp] = true
		}
		found = append(found, g)
	}
	for _, eh := range encs {
		if !paired[eh.tp] {
			ec := eh.c
			found = append(found, &hvGuardian{subjectName: eh.name, encTP: eh.tp, enc: &ec})
		}
	}
	sort.SliceStable(found, func(i, j int) bool { return notBefore(found[i]).After(notBefore(found[j])) })
	for _, g := range found {
		g.name = g.subjectName
		if taken[g.name] || guardian.ValidateName(g.name) != nil {
			g.name = freeName(taken, g.subjectName, g.sig, g.enc, g.sigTP+g.encTP)
		}
		taken[g.name] = true
		g.leftover = !st.noHgs
		gs = append(gs, g)
	}
	sort.Strings(rest)
	st.unknown = rest
	for _, g := range gs {
		if g.subjectName == "" {
			if c := g.anyCert(); c != nil {
				_, g.subjectName, _, _ = subjectOf(c.Cert)
			}
		}
		g.diagnose()
	}
	sort.SliceStable(gs, func(i, j int) bool { return gs[i].name < gs[j].name })
	return gs
}

func (g *hvGuardian) anyCert() *SystemCert {
	if g.sig != nil {
		return g.sig
	}
	return g.enc
}

func notBefore(g *hvGuardian) time.Time {
	if c := g.anyCert(); c != nil {
		return c.Cert.NotBefore
	}
	return time.Time{}
}

// validName makes a guardian name of a name HgsClient took: every other
// character becomes '_', and dots and spaces at either end go.
func validName(name string) string {
	b := []rune(name)
	for i, r := range b {
		if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(" ._-+@()", r))) {
			b[i] = '_'
		}
	}
	n := strings.Trim(string(b), ". ")
	if len(n) > guardian.MaxNameLength {
		n = strings.TrimRight(n[:guardian.MaxNameLength], ". ")
	}
	if n == "" {
		n = "guardian"
	}
	return n
}

// freeName finds a name for one more generation of base: base@DATE, then
// base@DATE-THUMB, where DATE is the day its certificates were made.
func freeName(taken map[string]bool, base string, sig, enc *SystemCert, tp string) string {
	if guardian.ValidateName(base) != nil {
		base = "guardian"
	}
	c := sig
	if c == nil {
		c = enc
	}
	date := "unknown"
	if c != nil {
		date = c.Cert.NotBefore.UTC().Format("2006-01-02")
	}
	for _, n := range []string{base + "@" + date, base + "@" + date + "-" + tp[:min(8, len(tp))]} {
		if !taken[n] && len(n) <= guardian.MaxNameLength {
			return n
		}
	}
	for i := 2; ; i++ {
		n := fmt.Sprintf("%s@%s-%d", base, date, i)
		if !taken[n] {
			return n
		}
	}
}

// diagnose sets problem (the guardian cannot be used as it is) and warning
// (it can, but something about it needs attention).
func (g *hvGuardian) diagnose() {
	role := func(sig bool) string {
		if sig {
			return "signing"
		}
		return "encryption"
	}
	switch {
	case g.reg != nil && g.sig == nil && g.enc == nil:
		g.problem = fmt.Sprintf("registered with HgsClient, but both its certificates are gone from %s (Hyper-V then fails with \"an error occurred while applying security changes\")", ShieldedVMStore)
		return
	case g.reg != nil && (g.sig == nil || g.enc == nil):
		tp := g.sigTP
		if g.enc == nil {
			tp = g.encTP
		}
		g.problem = fmt.Sprintf("registered with HgsClient, but its %s certificate %s is gone from %s (Hyper-V then fails with \"an error occurred while applying security changes\")", role(g.sig == nil), tp, ShieldedVMStore)
		return
	case g.sig == nil && g.enc == nil:
		g.problem = fmt.Sprintf("guardctl's record of it remains, but both its certificates are gone from %s", ShieldedVMStore)
		return
	case g.sig == nil || g.enc == nil:
		g.problem = fmt.Sprintf("lone %s certificate: its %s certificate is not in %s", role(g.sig != nil), role(g.sig == nil), ShieldedVMStore)
		return
	}
	for _, c := range []struct {
		sc  *SystemCert
		sig bool
	}{{g.sig, true}, {g.enc, false}} {
		if c.sc.KeyProblem != "" {
			g.problem = fmt.Sprintf("the %s certificate's private key cannot be opened (%s): this host cannot be the owner of a key protector or unwrap one with it", role(c.sig), c.sc.KeyProblem)
			return
		}
	}
	switch {
	case !g.sig.HasKey && !g.enc.HasKey && !g.public():
		g.problem = "no private keys (HasPrivateSigningKey = False): this host cannot be the owner of a key protector or start a VM protected by it; import the PFX pair with its keys"
		return
	case g.sig.HasKey != g.enc.HasKey:
		g.problem = fmt.Sprintf("the %s certificate has no private key: this host cannot use this guardian; import the PFX pair with its keys", role(!g.sig.HasKey))
		return
	}
	switch {
	case g.pending:
		g.warning = "not registered with HgsClient yet (HgsClient was missing, or guardctl was interrupted); 'guardctl store check --repair' registers it"
	case g.leftover:
		g.warning = "not registered with HgsClient: a pair Remove-HgsGuardian left behind; 'guardctl store check --repair' moves it to the trash"
	case g.reg != nil && g.name != g.reg.Name:
		g.warning = fmt.Sprintf("HgsClient names it %q, which guardctl cannot take as a name (letters, digits, space and . _ - + @ ( ) only), so it is shown as %q", g.reg.Name, g.name)
	case g.reg != nil && !g.reg.HasPrivateSigningKey && g.hasKeys():
		g.warning = "HgsClient reports no private signing key (HasPrivateSigningKey = False) although the store links one (a key in a legacy CSP, which HgsClient does not use, for instance): this host cannot be the owner of a key protector with it; export it and import it again with --force"
	}
}

// entry turns g into an Entry, reading the private keys out where Windows
// lets it.
func (s *HyperV) entry(g *hvGuardian) *Entry {
	e := &Entry{Name: g.name, Guardian: &guardian.Guardian{Name: g.name}, Problem: g.problem, Warning: g.warning}
	e.Meta = Meta{Version: 1, Name: g.name, Origin: OriginHyperV}
	if g.rec != nil {
		e.Meta.Origin, e.Meta.AddedAt = g.rec.Origin, g.rec.AddedAt
		e.Guardian.EncryptionCertSignature = g.rec.EncryptionSignature
	}
	if g.sig != nil {
		e.Guardian.Signing = g.sig.Cert
	}
	if g.enc != nil {
		e.Guardian.Encryption = g.enc.Cert
	}
	if g.problem != "" || !g.hasKeys() {
		s.loneKeys(g, e)
		return e
	}
	e.Meta.HasPrivateKeys = true
	sk, err := s.stores.ExportKey(ShieldedVMStore, g.sigTP)
	if err != nil {
		e.KeyErr = fmt.Errorf("guardian %q: Windows would not give out its signing key: %w", g.name, err)
		return e
	}
	ek, err := s.stores.ExportKey(ShieldedVMStore, g.encTP)
	if err != nil {
		e.KeyErr = fmt.Errorf("guardian %q: Windows would not give out its encryption key: %w", g.name, err)
		return e
	}
	switch {
	case !sk.PublicKey.Equal(g.sig.Cert.PublicKey):
		e.Problem = "the signing key does not match the signing certificate"
	case !ek.PublicKey.Equal(g.enc.Cert.PublicKey):
		e.Problem = "the encryption key does not match the encryption certificate"
	default:
		e.Guardian.SigningKey, e.Guardian.EncryptionKey = sk, ek
	}
	return e
}

// loneKeys puts into a broken guardian's entry the private keys that are
// still there and open, so that it shows what is left (one private key, when
// the other was lost), as the directory store's entries do. Such an entry
// is never used for cryptography; a key Windows will not give out, or that
// does not match its certificate, is left out.
func (s *HyperV) loneKeys(g *hvGuardian, e *Entry) {
	if g.problem == "" {
		return
	}
	for i, c := range []struct {
		sc *SystemCert
		tp string
	}{{g.sig, g.sigTP}, {g.enc, g.encTP}} {
		if c.sc == nil || !c.sc.HasKey || c.sc.KeyProblem != "" {
			continue
		}
		if k, err := s.stores.ExportKey(ShieldedVMStore, c.tp); err == nil && k.PublicKey.Equal(c.sc.Cert.PublicKey) {
			if i == 0 {
				e.Guardian.SigningKey = k
			} else {
				e.Guardian.EncryptionKey = k
			}
		}
	}
}

func (st *hvState) find(name string) *hvGuardian {
	for _, g := range st.gs {
		if g.name == name {
			return g
		}
	}
	return nil
}

// List reads every guardian, broken ones included, sorted by name.
func (s *HyperV) List() ([]*Entry, error) {
	st, unlock, err := s.locked(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := make([]*Entry, 0, len(st.gs))
	for _, g := range st.gs {
		out = append(out, s.entry(g))
	}
	return out, nil
}

// Get reads one guardian; ErrNotFound when there is none.
func (s *HyperV) Get(name string) (*Entry, error) {
	if err := guardian.ValidateName(name); err != nil {
		return nil, err
	}
	st, unlock, err := s.locked(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	g := st.find(name)
	if g == nil {
		return nil, s.notFound(name)
	}
	return s.entry(g), nil
}

func (s *HyperV) notFound(name string) error {
	return fmt.Errorf("guardian %q %w in %s", name, ErrNotFound, s.Location())
}

// Add puts g into ShieldedVMStore (created if missing), its keys as
// exportable machine keys, and registers the name with HgsClient. Without
// HgsClient the certificates are stored and the Change's Notice says the
// name is not registered.
func (s *HyperV) Add(g *guardian.Guardian, origin Origin, replace bool) (*Change, error) {
	if err := guardian.ValidateName(g.Name); err != nil {
		return nil, err
	}
	if g.Signing == nil || g.Encryption == nil {
		return nil, fmt.Errorf("guardian %q lacks a certificate", g.Name)
	}
	// Windows would keep a TPM guardian's keys in the Platform Crypto
	// Provider, which guardctl does not drive (docs/hyperv.md).
	if g.KeyLocation() == guardian.KeysTPM {
		return nil, fmt.Errorf("guardian %q keeps its keys in a TPM, and %s takes only software keys: %w", g.Name, s.Location(), ErrTPMUnsupported)
	}
	var sk, ek *rsa.PrivateKey
	var err error
	if g.HasPrivateKeys() {
		if sk, ek, err = g.SoftwareKeys(); err != nil {
			return nil, err
		}
	}
	st, unlock, err := s.locked(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ch := &Change{}
	if old := st.find(g.Name); old != nil {
		if !replace {
			return nil, fmt.Errorf("guardian %q %w in %s", g.Name, ErrExists, s.Location())
		}
		if ch.ReplacedID, err = s.toTrash(st, old, "replaced"); err != nil {
			return nil, err
		}
		if st, err = s.load(); err != nil {
			return nil, err
		}
	}
	sigTP, encTP := guardian.Thumbprint(g.Signing), guardian.Thumbprint(g.Encryption)
	for _, other := range st.gs {
		if other.reg != nil && (other.sigTP == sigTP || other.encTP == encTP || other.sigTP == encTP || other.encTP == sigTP) {
			return nil, fmt.Errorf("these certificates are already guardian %q in %s: %w", other.name, s.Location(), ErrExists)
		}
	}
	// Certificates already there (a pair no registration names) get the
	// keys linked again; new ones are taken back out if registering fails.
	var added []string
	for _, c := range []struct {
		cert *x509.Certificate
		key  *rsa.PrivateKey
		tp   string
	}{{g.Signing, sk, sigTP}, {g.Encryption, ek, encTP}} {
		_, there := st.certs[c.tp]
		if there && c.key == nil {
			continue // never drop the key link of a certificate already there
		}
		if err := s.stores.Add(ShieldedVMStore, c.cert, c.key); err != nil {
			s.takeBack(added)
			return nil, fmt.Errorf("adding guardian %q's certificates to %s: %w", g.Name, s.Location(), err)
		}
		if !there {
			added = append(added, c.tp)
		}
	}
	rec := hvRecord{Name: g.Name, Signing: sigTP, Encryption: encTP, Origin: origin, AddedAt: s.Now().UTC().Truncate(time.Second)}
	if !g.HasPrivateKeys() {
		rec.EncryptionSignature = g.EncryptionCertSignature
	}
	if err := s.registry.Register(g.Name, sigTP, encTP); errors.Is(err, ErrNoHgsClient) {
		rec.Pending = true
		ch.Notice = noHgsNotice(g.Name)
	} else if err != nil {
		s.takeBack(added)
		err = fmt.Errorf("registering guardian %q with HgsClient: %w", g.Name, err)
		if ch.ReplacedID != "" {
			err = fmt.Errorf("%w; the guardian it was to replace is in the trash: 'guardctl guardian restore %s' brings it back", err, g.Name)
		}
		return nil, err
	}
	if err := s.setRecord(sigTP, encTP, &rec); err != nil {
		return nil, err
	}
	if st, err = s.load(); err != nil {
		return nil, err
	}
	ng := st.find(g.Name)
	if ng == nil {
		return nil, fmt.Errorf("guardian %q was added but cannot be read back from %s", g.Name, s.Location())
	}
	ch.Entry = s.entry(ng)
	return ch, nil
}

func noHgsNotice(name string) string {
	return fmt.Sprintf("HgsClient is not installed on this machine (no Hyper-V), so the name %q was not registered: the certificates and keys are in %s, but Get-HgsGuardian does not list it and Hyper-V does not use it as a guardian by name until it is registered; once Hyper-V is installed, 'guardctl store check --repair' registers it", name, ShieldedVMStore)
}

// takeBack deletes certificates Add had just put in, with their keys.
func (s *HyperV) takeBack(tps []string) {
	for _, tp := range tps {
		s.stores.Delete(ShieldedVMStore, tp, true)
	}
}

// toTrash removes g: its record first (so nothing is ever in TrashStore
// that Restore cannot name), then its registration, then its certificates
// with their keys moved to TrashStore. The lock is held.
func (s *HyperV) toTrash(st *hvState, g *hvGuardian, reason string) (string, error) {
	now := s.Now()
	r := hvRemoved{Version: 1, ID: newID(now), Name: g.name, Signing: g.sigTP, Encryption: g.encTP,
		Registered: g.reg != nil || (g.rec != nil && g.rec.Pending), RemovedAt: now.UTC(), Reason: reason, Moved: g.present(), Record: g.rec}
	if g.reg != nil && g.reg.Name != g.name {
		r.HgsName = g.reg.Name
	}
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if _, err := atomicfile.WriteFile(filepath.Join(s.stateDir, hvTrashDir, r.ID+".json"), append(raw, '\n'), 0o600, atomicfile.Options{}); err != nil {
		return "", fmt.Errorf("recording removed guardian %q: %w", g.name, err)
	}
	if g.reg != nil {
		if err := s.registry.Unregister(g.reg.Name); err != nil && !errors.Is(err, ErrNoHgsClient) {
			os.Remove(filepath.Join(s.stateDir, hvTrashDir, r.ID+".json"))
			return "", fmt.Errorf("unregistering guardian %q: %w", g.name, err)
		}
	}
	for _, tp := range r.Moved {
		if err := s.stores.Move(ShieldedVMStore, TrashStore, tp); err != nil {
			return "", fmt.Errorf("moving guardian %q's certificate %s to %q: %w (it is unregistered; 'guardctl guardian restore %s' puts back what was moved)", g.name, tp, TrashStore, err, g.name)
		}
	}
	if g.rec != nil {
		if err := s.setRecord(g.rec.Signing, g.rec.Encryption, nil); err != nil {
			return r.ID, err
		}
	}
	return r.ID, nil
}

// Remove takes a guardian out, broken or not. Without purge it is
// unregistered and its certificates, with their keys, move to TrashStore,
// from where Restore brings them back (unlike Remove-HgsGuardian, nothing
// is lost). With purge the certificates and their keys are deleted.
func (s *HyperV) Remove(name string, purge bool) (string, error) {
	if err := guardian.ValidateName(name); err != nil {
		return "", err
	}
	st, unlock, err := s.locked(true)
	if err != nil {
		return "", err
	}
	defer unlock()
	g := st.find(name)
	if g == nil {
		return "", s.notFound(name)
	}
	if !purge {
		return s.toTrash(st, g, "removed")
	}
	if g.reg != nil {
		if err := s.registry.Unregister(g.reg.Name); err != nil && !errors.Is(err, ErrNoHgsClient) {
			return "", fmt.Errorf("unregistering guardian %q: %w", name, err)
		}
	}
	for _, tp := range g.present() {
		if err := s.stores.Delete(ShieldedVMStore, tp, true); err != nil {
			return "", fmt.Errorf("deleting guardian %q's certificate %s: %w", name, tp, err)
		}
	}
	if g.rec != nil {
		return "", s.setRecord(g.rec.Signing, g.rec.Encryption, nil)
	}
	return "", nil
}

// ownPart reports whether every certificate g names (in the store or
// only in guardctl's record of it) is one of r's.
func ownPart(g *hvGuardian, r *hvRemoved) bool {
	n := 0
	for _, tp := range []string{g.sigTP, g.encTP} {
		if tp == "" {
			continue
		}
		if tp != r.Signing && tp != r.Encryption {
			return false
		}
		n++
	}
	return n > 0
}

func (s *HyperV) removed() ([]hvRemoved, error) {
	des, err := os.ReadDir(filepath.Join(s.stateDir, hvTrashDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []hvRemoved
	for _, d := range des {
		if !strings.HasSuffix(d.Name(), ".json") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(s.stateDir, hvTrashDir, d.Name()))
		if err != nil {
			return nil, err
		}
		var r hvRemoved
		if err := json.Unmarshal(raw, &r); err != nil || r.Version != 1 || r.ID+".json" != d.Name() {
			continue // not one of ours; never acted on
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out, nil
}

// Trash lists removed guardians, newest first.
func (s *HyperV) Trash() ([]Removed, error) {
	unlock, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rs, err := s.removed()
	if err != nil {
		return nil, err
	}
	out := make([]Removed, 0, len(rs))
	for _, r := range rs {
		out = append(out, Removed{Name: r.Name, ID: r.ID, RemovedAt: r.RemovedAt, Signing: r.Signing, Encryption: r.Encryption})
	}
	return out, nil
}

// Restore moves the certificates of the most recently removed guardian
// called name back from TrashStore and registers the name again (when it
// was registered).
func (s *HyperV) Restore(name string) (*Change, error) {
	if err := guardian.ValidateName(name); err != nil {
		return nil, err
	}
	st, unlock, err := s.locked(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rs, err := s.removed()
	if err != nil {
		return nil, err
	}
	var r *hvRemoved
	for i := range rs {
		if rs[i].Name == name {
			r = &rs[i]
			break
		}
	}
	// A guardian has the name now, unless it is (part of) this one's own
	// pair, not registered: put back by hand, or left by a removal that
	// was interrupted.
	if live := st.find(name); live != nil && (r == nil || live.reg != nil || !ownPart(live, r)) {
		return nil, fmt.Errorf("guardian %q %w; remove or rename it before restoring", name, ErrExists)
	}
	if r == nil {
		return nil, fmt.Errorf("removed guardian %q %w in the trash of %s", name, ErrNotFound, s.Location())
	}
	trash, err := s.stores.List(TrashStore)
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", TrashStore, err)
	}
	inTrash := map[string]bool{}
	for _, c := range trash {
		inTrash[guardian.Thumbprint(c.Cert)] = true
	}
	for _, tp := range []string{r.Signing, r.Encryption} {
		if tp == "" {
			continue
		}
		switch {
		case st.certs[tp].Cert != nil:
		case inTrash[tp]:
			if err := s.stores.Move(TrashStore, ShieldedVMStore, tp); err != nil {
				return nil, fmt.Errorf("moving certificate %s back to %s: %w", tp, ShieldedVMStore, err)
			}
		default:
			return nil, fmt.Errorf("guardian %q cannot be restored: its certificate %s is in neither %s nor %q (it was already gone when the guardian was removed); import its PFX pair instead ('guardctl guardian import %s --dir DIR')", name, tp, ShieldedVMStore, TrashStore, name)
		}
	}
	// The record keeps the name the guardian had, and says it is to be
	// registered before the trash record goes: a restore interrupted from
	// here on is finished by 'store check --repair', which registers it.
	rec := hvRecord{Name: name, Signing: r.Signing, Encryption: r.Encryption, Origin: OriginHyperV}
	if r.Record != nil {
		rec = *r.Record
		rec.Name = name
	}
	rec.Pending = r.Registered
	if err := s.setRecord(r.Signing, r.Encryption, &rec); err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(s.stateDir, hvTrashDir, r.ID+".json")); err != nil {
		return nil, err
	}
	ch := &Change{}
	if r.Registered {
		hgsName := name
		if r.HgsName != "" {
			hgsName = r.HgsName
		}
		if err := s.registry.Register(hgsName, r.Signing, r.Encryption); errors.Is(err, ErrNoHgsClient) {
			ch.Notice = noHgsNotice(name)
		} else if err != nil {
			return nil, fmt.Errorf("registering guardian %q with HgsClient again: %w (its certificates are back in %s; 'guardctl store check --repair' tries again)", name, err, ShieldedVMStore)
		} else {
			rec.Pending = false
			if err := s.setRecord(r.Signing, r.Encryption, &rec); err != nil {
				return nil, err
			}
		}
	}
	if st, err = s.load(); err != nil {
		return nil, err
	}
	g := st.find(name)
	if g == nil {
		return nil, fmt.Errorf("guardian %q was restored but cannot be read back from %s", name, s.Location())
	}
	ch.Entry = s.entry(g)
	return ch, nil
}
