//go:build windows

package certstore_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
)

// TestWindowsSystemStores runs the SystemStores contract over crypt32 and
// CNG, in two LocalMachine stores of its own (deleted at the end), never
// in Hyper-V's. It needs an elevated prompt on Windows; under Wine (run by
// TestWindowsSystemStoresUnderWine from Linux) private keys cannot be
// exported, and ExportKey must say so.
func TestWindowsSystemStores(t *testing.T) {
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	c := systemStoresCase{
		stores: certstore.NewWindowsSystemStores(),
		storeA: "guardctl test A " + id,
		storeB: "guardctl test B " + id,
		keyGone: func(store, tp string) func() bool {
			opens, err := certstore.KeyOpens(store, tp)
			if err != nil {
				t.Fatalf("finding the key of %s: %v", tp, err)
			}
			if !opens() {
				t.Fatalf("the key of %s does not open before Delete", tp)
			}
			return func() bool { return !opens() }
		},
	}
	t.Cleanup(func() {
		certstore.DeleteSystemStore(c.storeA)
		certstore.DeleteSystemStore(c.storeB)
	})
	if certstore.UnderWine() {
		t.Log("running under Wine")
		c.exportErr = func(err error) bool {
			return errors.Is(err, certstore.ErrKeyNotExportable) && strings.Contains(err.Error(), "Wine does not implement")
		}
	}
	testSystemStores(t, c)
}

// TestHgsRegistry: without HgsClient (under Wine, or a Windows without
// Hyper-V) every call is ErrNoHgsClient. With it, List works; and where
// GUARDCTL_TEST_HGS_REGISTER=1 (the Windows CI runner, which may change
// the machine) a pair put in Shielded VM Local Certificates is registered,
// listed with its thumbprints, and unregistered again.
func TestHgsRegistry(t *testing.T) {
	r := certstore.NewHgsRegistry()
	regs, err := r.List()
	if certstore.UnderWine() || errors.Is(err, certstore.ErrNoHgsClient) {
		if !errors.Is(err, certstore.ErrNoHgsClient) {
			t.Fatalf("List: %v; want ErrNoHgsClient", err)
		}
		t.Logf("no HgsClient here: %v", err)
		if err := r.Register("g", strings.Repeat("A", 40), strings.Repeat("B", 40)); !errors.Is(err, certstore.ErrNoHgsClient) {
			t.Fatalf("Register: %v; want ErrNoHgsClient", err)
		}
		if err := r.Unregister("g"); !errors.Is(err, certstore.ErrNoHgsClient) {
			t.Fatalf("Unregister: %v; want ErrNoHgsClient", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	t.Logf("HgsClient lists %d guardians", len(regs))
	if os.Getenv("GUARDCTL_TEST_HGS_REGISTER") != "1" {
		t.Skip("GUARDCTL_TEST_HGS_REGISTER is not 1: not registering a guardian on this machine")
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "guardctl test " + hex.EncodeToString(b)
	g := makeGuardian(t, name, "ci", time.Time{})
	s := certstore.NewWindowsSystemStores()
	sig, enc := guardian.Thumbprint(g.Signing), guardian.Thumbprint(g.Encryption)
	for _, c := range []struct {
		cert *x509.Certificate
		key  *rsa.PrivateKey
		tp   string
	}{{g.Signing, g.SigningKey.(*rsa.PrivateKey), sig}, {g.Encryption, g.EncryptionKey.(*rsa.PrivateKey), enc}} {
		must(t, s.Add(certstore.ShieldedVMStore, c.cert, c.key))
		t.Cleanup(func() { s.Delete(certstore.ShieldedVMStore, c.tp, true) })
	}
	if err := r.Register(name, sig, enc); err != nil {
		t.Fatalf("Register: %v", err)
	}
	t.Cleanup(func() { r.Unregister(name) })
	find := func() *certstore.Registration {
		regs, err := r.List()
		must(t, err)
		for _, reg := range regs {
			if reg.Name == name {
				return &reg
			}
		}
		return nil
	}
	reg := find()
	if reg == nil || reg.SigningThumbprint != sig || reg.EncryptionThumbprint != enc || !reg.HasPrivateSigningKey {
		t.Fatalf("after Register, List shows %+v; want %s, %s with the signing key", reg, sig, enc)
	}
	if err := r.Register(name, sig, enc); err == nil {
		t.Fatal("registering a name twice succeeded")
	}
	must(t, r.Unregister(name))
	if reg := find(); reg != nil {
		t.Fatalf("after Unregister, List still shows %+v", reg)
	}
	// The certificates stay, as with Remove-HgsGuardian.
	list, err := s.List(certstore.ShieldedVMStore)
	must(t, err)
	n := 0
	for _, c := range list {
		if tp := guardian.Thumbprint(c.Cert); tp == sig || tp == enc {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("after Unregister %d of the two certificates are in the store", n)
	}
}

// TestHgsRegistryProtocol checks the Go side of the HgsClient registry
// (how PowerShell is called, the marked answers, thumbprints, errors)
// against a fake powershell.exe that answers as the scripts do; run by
// TestWindowsSystemStoresUnderWine, which builds the fake. Real PowerShell
// and HgsClient are TestHgsRegistry's, on the Windows runner.
func TestHgsRegistryProtocol(t *testing.T) {
	fake := os.Getenv("GUARDCTL_FAKE_POWERSHELL")
	if fake == "" {
		t.Skip("GUARDCTL_FAKE_POWERSHELL is not set: TestWindowsSystemStoresUnderWine runs this with its fake PowerShell")
	}
	certstore.UsePowerShell(t, fake)
	// Not t.TempDir: Wine 8.0 lacks what os.RemoveAll uses on Windows.
	dir, err := os.MkdirTemp("", "hgs-")
	must(t, err)
	statePath := filepath.Join(dir, "hgs.json")
	t.Cleanup(func() { os.Remove(statePath); os.Remove(dir) })
	t.Setenv("FAKE_HGS_STATE", statePath)
	g := makeGuardian(t, "G", "host", time.Time{})
	sig, enc := guardian.Thumbprint(g.Signing), guardian.Thumbprint(g.Encryption)
	setState := func(absent bool) {
		t.Helper()
		st := map[string]any{"Absent": absent, "Certs": map[string]string{
			sig: base64.StdEncoding.EncodeToString(g.Signing.Raw),
			enc: base64.StdEncoding.EncodeToString(g.Encryption.Raw),
		}}
		raw, err := json.Marshal(st)
		must(t, err)
		must(t, os.WriteFile(statePath, raw, 0o600))
	}
	r := certstore.NewHgsRegistry()

	setState(true)
	if _, err := r.List(); !errors.Is(err, certstore.ErrNoHgsClient) {
		t.Fatalf("List without HgsClient: %v", err)
	}
	if err := r.Register("G", sig, enc); !errors.Is(err, certstore.ErrNoHgsClient) {
		t.Fatalf("Register without HgsClient: %v", err)
	}

	setState(false)
	regs, err := r.List()
	if err != nil || len(regs) != 0 {
		t.Fatalf("List of none: %v, %v", regs, err)
	}
	// Any name HgsClient takes, spaces and non-ASCII included, goes through
	// the environment and comes back through base64 JSON.
	name := "Guardian (Müller) 1"
	must(t, r.Register(name, sig, enc))
	regs, err = r.List()
	must(t, err)
	if len(regs) != 1 || regs[0] != (certstore.Registration{Name: name, SigningThumbprint: sig, EncryptionThumbprint: enc, HasPrivateSigningKey: true}) {
		t.Fatalf("List after Register: %+v", regs)
	}
	err = r.Register(name, sig, enc)
	if err == nil || errors.Is(err, certstore.ErrNoHgsClient) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Register of a taken name: %v; want HgsClient's error", err)
	}
	if err := r.Register("other", strings.Repeat("0", 40), enc); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Register of a certificate not in the store: %v", err)
	}
	must(t, r.Unregister(name))
	if regs, err := r.List(); err != nil || len(regs) != 0 {
		t.Fatalf("List after Unregister: %v, %v", regs, err)
	}
	if err := r.Unregister(name); err == nil || errors.Is(err, certstore.ErrNoHgsClient) {
		t.Fatalf("Unregister of an unknown name: %v", err)
	}
}
