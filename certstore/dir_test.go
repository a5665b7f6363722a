//go:build unix

package certstore

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

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
	if err != nil || e.Broken() || !e.Guardian.SigningKey.Equal(g.SigningKey) || !e.Guardian.Encryption.Equal(g.Encryption) {
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
	if err != nil || r.Entry.Broken() || !r.Entry.Guardian.SigningKey.Equal(g.SigningKey) {
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
