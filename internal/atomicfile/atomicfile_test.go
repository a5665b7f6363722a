package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWithoutHardLinks runs TestWriteFile as on a file system that has no
// hard links (FAT, exFAT).
func TestWithoutHardLinks(t *testing.T) {
	link = func(string, string) error { return &os.LinkError{Op: "link", Err: errors.ErrUnsupported} }
	useAnonymous = false
	defer func() { link, useAnonymous = os.Link, true }()
	TestWriteFile(t)
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if _, err := WriteFile(p, []byte("one"), 0o600, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFile(p, []byte("two"), 0o600, Options{}); !errors.Is(err, ErrExists) {
		t.Errorf("overwrite without Overwrite: %v", err)
	}
	backup, err := WriteFile(p, []byte("two"), 0o640, Options{Overwrite: true, Backup: true})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(backup); string(b) != "one" {
		t.Errorf("backup holds %q", b)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Errorf("file holds %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %04o", fi.Mode().Perm())
	}
	des, _ := os.ReadDir(dir)
	for _, d := range des {
		if strings.HasPrefix(d.Name(), TempPrefix) {
			t.Errorf("temporary file left behind: %s", d.Name())
		}
	}
	link := filepath.Join(dir, "link")
	os.Symlink(p, link)
	if _, err := WriteFile(link, []byte("x"), 0o600, Options{Overwrite: true}); err == nil {
		t.Error("wrote through a symbolic link")
	}
}
