//go:build unix

package certstore

import (
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/guardctl/guardctl/guardian"
)

func testGuardian(t *testing.T, name string) *guardian.Guardian {
	t.Helper()
	g, err := guardian.Generate(guardian.GenerateOptions{Name: name, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestAddGetRemoveRestore(t *testing.T) {
	old := syscall.Umask(0) // the store's modes must not depend on the umask
	defer syscall.Umask(old)
	s := OpenDir(filepath.Join(t.TempDir(), "store"))
	g := testGuardian(t, "g")
	if _, err := s.Add(g, OriginGenerated, false); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		s.dir: 0o700, s.path(guardiansDir, "g"): 0o700,
		s.path(guardiansDir, "g", signingKeyFile): 0o600, s.path(guardiansDir, "g", encryptionKeyFile): 0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), want)
		}
	}
	e, err := s.Get("g")
	if err != nil || e.Broken() || !e.Guardian.SigningKey.(*rsa.PrivateKey).Equal(g.SigningKey) || !e.Guardian.Encryption.Equal(g.Encryption) {
		t.Fatalf("Get: %v %+v", err, e)
	}
	if _, err := s.Add(testGuardian(t, "g"), OriginGenerated, false); !errors.Is(err, ErrExists) {
		t.Errorf("second Add: %v", err)
	}
	if _, err := s.Remove("g", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("g"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	r, err := s.Restore("g")
	if err != nil || r.Entry.Broken() || !r.Entry.Guardian.SigningKey.(*rsa.PrivateKey).Equal(g.SigningKey) {
		t.Fatalf("Restore: %v", err)
	}
	if _, err := s.Restore("g"); !errors.Is(err, ErrExists) {
		t.Errorf("Restore over a live guardian: %v", err)
	}
	if _, err := s.Remove("g", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Restore("g"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Restore after purge: %v", err)
	}
	if f, err := s.Check(false); err != nil || len(f) != 0 {
		t.Errorf("Check: %v %v", err, f)
	}
}

func TestReplaceKeepsOldInTrash(t *testing.T) {
	s := OpenDir(filepath.Join(t.TempDir(), "store"))
	first, second := testGuardian(t, "g"), testGuardian(t, "g")
	s.Add(first, OriginGenerated, false)
	c, err := s.Add(second, OriginPFX, true)
	if err != nil || c.ReplacedID == "" {
		t.Fatalf("replace: %+v %v", c, err)
	}
	removed, _ := s.Trash()
	if len(removed) != 1 || removed[0].Name != "g" {
		t.Fatalf("trash: %+v", removed)
	}
	e, _ := s.Get("g")
	if !e.Guardian.Signing.Equal(second.Signing) || e.Meta.Origin != OriginPFX {
		t.Error("the replacement is not live")
	}
}

func TestPublicOnlyAndBroken(t *testing.T) {
	s := OpenDir(filepath.Join(t.TempDir(), "store"))
	g := testGuardian(t, "pub").Public()
	if _, err := s.Add(g, OriginPublic, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.path(guardiansDir, "pub", signingKeyFile)); !os.IsNotExist(err) {
		t.Error("a public-only guardian has a key file")
	}
	e, _ := s.Get("pub")
	if e.Broken() || e.Meta.HasPrivateKeys {
		t.Errorf("public-only: %+v", e)
	}
	s.Add(testGuardian(t, "k"), OriginGenerated, false)
	os.WriteFile(s.path(guardiansDir, "k", signingKeyFile), []byte("junk"), 0o600)
	os.Symlink("/etc", s.path(guardiansDir, "link"))
	list, err := s.List()
	if err != nil || len(list) != 3 {
		t.Fatalf("List: %v %d", err, len(list))
	}
	for _, e := range list {
		if (e.Name == "pub") == e.Broken() {
			t.Errorf("%s: broken=%v (%s)", e.Name, e.Broken(), e.Problem)
		}
	}
	findings, _ := s.Check(true)
	if len(findings) != 2 {
		t.Errorf("Check --repair: %+v", findings)
	}
	if _, err := os.Lstat(s.path(guardiansDir, "link")); !os.IsNotExist(err) {
		t.Error("the symlinked entry is still in place")
	}
	if des, _ := os.ReadDir(s.path(lostDir)); len(des) != 2 {
		t.Errorf("lost+found has %d entries, want 2", len(des))
	}
}

func TestReadOfMissingStore(t *testing.T) {
	s := OpenDir(filepath.Join(t.TempDir(), "nothing"))
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Errorf("List: %v %v", l, err)
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Error("a read created the store")
	}
}

// TestRebuildMetaAndRecover: an entry whose only problem is guardian.json
// is rebuilt in place when its certificates and keys (or, public only, its
// signature file) verify; one whose keys are gone is not taken for public
// only, but moved aside; store recover brings a whole entry back.
func TestRebuildMetaAndRecover(t *testing.T) {
	s := OpenDir(filepath.Join(t.TempDir(), "store"))
	priv := testGuardian(t, "priv")
	pub := testGuardian(t, "pub").Public()
	lost := testGuardian(t, "lost")
	for _, c := range []struct {
		g *guardian.Guardian
		o Origin
	}{{priv, OriginGenerated}, {pub, OriginPublic}, {lost, OriginGenerated}} {
		if _, err := s.Add(c.g, c.o, false); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(s.path(guardiansDir, c.g.Name, metaFile), []byte("{"), 0o644)
	}
	os.Remove(s.path(guardiansDir, "lost", signingKeyFile))
	os.Remove(s.path(guardiansDir, "lost", encryptionKeyFile))
	e, _ := s.Get("priv")
	if !e.Broken() || !e.MetaOnly || !e.Meta.HasPrivateKeys || !e.Guardian.HasPrivateKeys() {
		t.Fatalf("priv with damaged metadata: %+v", e)
	}
	if e, _ := s.Get("lost"); e.MetaOnly {
		t.Fatal("an entry whose keys are gone was taken for public only")
	}
	findings, err := s.Check(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 3 {
		t.Fatalf("findings: %+v", findings)
	}
	for _, n := range []string{"priv", "pub"} {
		e, _ := s.Get(n)
		if e.Broken() || e.Meta.Origin != OriginRecovered {
			t.Errorf("%s after repair: %+v", n, e)
		}
	}
	if e, _ := s.Get("priv"); !e.Guardian.SigningKey.(*rsa.PrivateKey).Equal(priv.SigningKey) {
		t.Error("priv's key changed")
	}
	if e, _ := s.Get("pub"); e.Meta.HasPrivateKeys || e.Guardian.EncryptionCertSignature == nil {
		t.Error("pub lost its signature or gained keys")
	}
	if _, err := s.Get("lost"); !errors.Is(err, ErrNotFound) {
		t.Errorf("lost is still in place: %v", err)
	}
	items, err := s.LostAndFound()
	if err != nil {
		t.Fatal(err)
	}
	var lostItem *LostItem
	for i, it := range items {
		if it.Name == "lost" {
			lostItem = &items[i]
		}
	}
	if lostItem == nil || lostItem.Recoverable {
		t.Fatalf("lost+found: %+v", items)
	}
	if _, err := s.Recover("lost", "", false, false, true); !errors.Is(err, ErrUnrecoverable) {
		t.Errorf("recovering an entry without its keys: %v", err)
	}
	// A whole entry left by an interrupted write comes back, once the
	// caller accepts what guardctl cannot vouch for (issue 20, item 3).
	if err := os.Rename(s.path(guardiansDir, "priv"), s.path(tmpDir, newID(time.Now())+"-priv")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(true); err != nil {
		t.Fatal(err)
	}
	var uv *UnverifiedError
	if _, err := s.Recover("priv", "", false, false, false); !errors.As(err, &uv) || uv.Signing != guardian.Thumbprint(priv.Signing) {
		t.Fatalf("recovering a leftover without accepting it: %v", err)
	}
	if _, err := s.Recover("priv", "", false, true, true); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if _, err := s.Get("priv"); !errors.Is(err, ErrNotFound) {
		t.Fatal("a dry run recovered")
	}
	ch, err := s.Recover("priv", "", false, false, true)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Entry.Broken() || !ch.Entry.Guardian.EncryptionKey.(*rsa.PrivateKey).Equal(priv.EncryptionKey) {
		t.Errorf("recovered: %+v", ch.Entry)
	}
	if _, err := s.Recover("priv", "", false, false, true); !errors.Is(err, ErrExists) {
		t.Errorf("recovering over an existing guardian: %v", err)
	}
}
