package certstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/hypervfake"
)

// systemStoresCase is one SystemStores implementation under the contract
// below: the fake of Windows here, crypt32 and CNG on Windows (under Wine
// too, from TestWindowsSystemStoresUnderWine).
type systemStoresCase struct {
	stores certstore.SystemStores
	// storeA and storeB are two LocalMachine stores that do not exist yet.
	storeA, storeB string
	// exportErr is nil where private keys export; otherwise what
	// ExportKey of an exportable key must say (Wine 8.0 cannot export).
	exportErr func(err error) bool
	// keyGone, where the case can see machine keys, is called before
	// Delete and returns whether the key of tp in store is gone since.
	keyGone func(store, tp string) func() bool
}

// testSystemStores is the contract of certstore.SystemStores.
func testSystemStores(t *testing.T, c systemStoresCase) {
	s := c.stores
	key, cert := makeCert(t, "Shielded VM Signing Certificate (contract) (host)", time.Now().Add(-time.Hour), 0)
	tp := guardian.Thumbprint(cert)
	_, pubCert := makeCert(t, "Shielded VM Encryption Certificate (contract) (host)", time.Now().Add(-time.Hour), 0)
	pubTP := guardian.Thumbprint(pubCert)

	// find looks tp up in store's list.
	find := func(store, tp string) (certstore.SystemCert, bool) {
		t.Helper()
		list, err := s.List(store)
		if err != nil {
			t.Fatalf("List(%q): %v", store, err)
		}
		for _, sc := range list {
			if guardian.Thumbprint(sc.Cert) == tp {
				return sc, true
			}
		}
		return certstore.SystemCert{}, false
	}
	// one finds tp in store, or fails.
	one := func(store, tp string) certstore.SystemCert {
		t.Helper()
		sc, ok := find(store, tp)
		if !ok {
			t.Fatalf("List(%q) does not show %s", store, tp)
		}
		return sc
	}
	absent := func(store, tp string) {
		t.Helper()
		if _, ok := find(store, tp); ok {
			t.Fatalf("List(%q) still shows %s", store, tp)
		}
	}
	linked := func(store, tp string) {
		t.Helper()
		if sc := one(store, tp); !sc.HasKey || sc.KeyProblem != "" {
			t.Fatalf("%s in %q: HasKey %v, KeyProblem %q; want its key linked and opening", tp, store, sc.HasKey, sc.KeyProblem)
		}
	}

	// A store that does not exist is empty, and reading it does not make it.
	for range 2 {
		if list, err := s.List(c.storeA); err != nil || len(list) != 0 {
			t.Fatalf("List of a missing store: %v, %v; want empty", list, err)
		}
	}
	if err := s.Delete(c.storeA, tp, true); err == nil {
		t.Fatal("Delete from a missing store succeeded")
	}
	if err := s.Move(c.storeA, c.storeB, tp); err == nil {
		t.Fatal("Move from a missing store succeeded")
	}
	if _, err := s.ExportKey(c.storeA, tp); err == nil || errors.Is(err, certstore.ErrKeyNotExportable) {
		t.Fatalf("ExportKey from a missing store: %v; want not found", err)
	}

	// A key that does not match its certificate is refused.
	other, _ := makeCert(t, "other", time.Now(), 0)
	if err := s.Add(c.storeA, cert, other); err == nil {
		t.Fatal("Add with a key of another certificate succeeded")
	}

	// Add creates the store; the certificate is listed with its key.
	if err := s.Add(c.storeA, cert, key); err != nil {
		t.Fatalf("Add with a key: %v", err)
	}
	linked(c.storeA, tp)
	if got := one(c.storeA, tp).Cert; !got.Equal(cert) {
		t.Fatal("List gives another certificate back")
	}
	// A certificate alone has no key.
	if err := s.Add(c.storeA, pubCert, nil); err != nil {
		t.Fatalf("Add without a key: %v", err)
	}
	if sc := one(c.storeA, pubTP); sc.HasKey || sc.KeyProblem != "" {
		t.Fatalf("a certificate added without a key: HasKey %v, KeyProblem %q", sc.HasKey, sc.KeyProblem)
	}
	if _, err := s.ExportKey(c.storeA, pubTP); err == nil {
		t.Fatal("ExportKey of a certificate without a key succeeded")
	}
	// Adding it again keeps one copy.
	if err := s.Add(c.storeA, cert, key); err != nil {
		t.Fatalf("Add again: %v", err)
	}
	if list, _ := s.List(c.storeA); len(list) != 2 {
		t.Fatalf("after adding the same certificate twice the store holds %d certificates, want 2", len(list))
	}
	linked(c.storeA, tp)

	// Move to a new store and back: the key stays linked.
	if err := s.Move(c.storeA, c.storeB, tp); err != nil {
		t.Fatalf("Move: %v", err)
	}
	absent(c.storeA, tp)
	linked(c.storeB, tp)
	if err := s.Move(c.storeB, c.storeA, tp); err != nil {
		t.Fatalf("Move back: %v", err)
	}
	absent(c.storeB, tp)
	linked(c.storeA, tp)
	if err := s.Move(c.storeB, c.storeA, tp); err == nil {
		t.Fatal("Move of a certificate the store no longer holds succeeded")
	}

	// Export where the platform allows it.
	got, err := s.ExportKey(c.storeA, tp)
	switch {
	case c.exportErr == nil && err != nil:
		t.Fatalf("ExportKey: %v", err)
	case c.exportErr == nil && !got.Equal(key):
		t.Fatal("ExportKey gives another key back")
	case c.exportErr != nil && (err == nil || !c.exportErr(err)):
		t.Fatalf("ExportKey: %v; this platform cannot export, and must say so", err)
	case c.exportErr != nil:
		t.Logf("ExportKey, as expected here: %v", err)
	}

	// Delete: without deleteKey the key stays, with it the key goes.
	var gone func() bool
	if c.keyGone != nil {
		gone = c.keyGone(c.storeA, tp)
	}
	if err := s.Delete(c.storeA, pubTP, false); err != nil {
		t.Fatalf("Delete without a key: %v", err)
	}
	absent(c.storeA, pubTP)
	if err := s.Delete(c.storeA, tp, true); err != nil {
		t.Fatalf("Delete with its key: %v", err)
	}
	absent(c.storeA, tp)
	if gone != nil && !gone() {
		t.Fatal("Delete with deleteKey left the private key behind")
	}
	if err := s.Delete(c.storeA, tp, true); err == nil {
		t.Fatal("Delete of a certificate that is gone succeeded")
	}
	if list, err := s.List(c.storeA); err != nil || len(list) != 0 {
		t.Fatalf("store after deleting everything: %d certificates, %v", len(list), err)
	}
}

func TestSystemStoresFake(t *testing.T) {
	w := hypervfake.New()
	testSystemStores(t, systemStoresCase{
		stores: w.Stores(),
		storeA: "A", storeB: "B",
		keyGone: func(string, string) func() bool {
			n := w.Keys()
			return func() bool { return w.Keys() == n-1 }
		},
	})
}
