package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestUpdateConcurrent: many Updates of one file at once each add a line;
// none is lost, and the backups are 0600 copies.
func TestUpdateConcurrent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := Update(p, UpdateOptions{Backup: i%2 == 0}, func(old []byte) ([]byte, error) {
				return append(old, fmt.Sprintf("line %d\n", i)...), nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(p)
	for i := range n {
		if !bytes.Contains(data, fmt.Appendf(nil, "line %d\n", i)) {
			t.Errorf("line %d was lost:\n%s", i, data)
		}
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("the file's mode became %04o", fi.Mode().Perm())
	}
	backups, _ := filepath.Glob(p + ".*.bak")
	if len(backups) != n/2 {
		t.Errorf("%d backups; want %d", len(backups), n/2)
	}
	for _, b := range backups {
		if fi, _ := os.Stat(b); fi.Mode().Perm() != 0o600 {
			t.Errorf("backup %s has mode %04o", b, fi.Mode().Perm())
		}
	}
	// unchanged: nil from change writes nothing
	if _, changed, err := Update(p, UpdateOptions{}, func([]byte) ([]byte, error) { return nil, nil }); changed || err != nil {
		t.Errorf("a nil change: changed %v, %v", changed, err)
	}
	link := filepath.Join(filepath.Dir(p), "link")
	os.Symlink(p, link)
	if _, _, err := Update(link, UpdateOptions{}, func(old []byte) ([]byte, error) { return old, nil }); err == nil {
		t.Error("Update wrote through a symbolic link")
	}
}

// TestUpdateBackup: Update's backup holds the old content, mode 0600, the
// file keeps its mode and nothing temporary is left. On Linux the backup is
// the old file itself (a hard link, nothing copied or synced); as on a
// file system without hard links it is a copy.
func TestUpdateBackup(t *testing.T) {
	for _, linked := range []bool{true, false} {
		t.Run(fmt.Sprintf("linked=%v", linked), func(t *testing.T) {
			if linked && runtime.GOOS != "linux" {
				t.Skip("linkOpen is Linux's")
			}
			useAnonymous = linked
			defer func() { useAnonymous = true }()
			dir := t.TempDir()
			p := filepath.Join(dir, "vm.kp")
			if err := os.WriteFile(p, []byte("one"), 0o644); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Stat(p)
			backup, changed, err := Update(p, UpdateOptions{Backup: true}, func(old []byte) ([]byte, error) {
				return append(old, " two"...), nil
			})
			if err != nil || !changed {
				t.Fatalf("changed %v, %v", changed, err)
			}
			if b, _ := os.ReadFile(p); string(b) != "one two" {
				t.Errorf("file holds %q", b)
			}
			if b, _ := os.ReadFile(backup); string(b) != "one" {
				t.Errorf("backup holds %q", b)
			}
			fi, _ := os.Stat(p)
			bi, err := os.Stat(backup)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o644 || bi.Mode().Perm() != 0o600 {
				t.Errorf("file mode %04o, backup mode %04o; want 0644 and 0600", fi.Mode().Perm(), bi.Mode().Perm())
			}
			if os.SameFile(before, bi) != linked {
				t.Errorf("the backup is the old file itself: %v; want %v", os.SameFile(before, bi), linked)
			}
			des, _ := os.ReadDir(dir)
			if len(des) != 2 {
				t.Errorf("%d files in the directory; want the file and its backup", len(des))
			}
			for _, d := range des {
				if strings.HasPrefix(d.Name(), TempPrefix) {
					t.Errorf("temporary file left behind: %s", d.Name())
				}
			}
		})
	}
}

// TestUpdateBackupOfLinkedFile: a file with a second name gets a copy as
// its backup, so that the file under its other name keeps its mode.
func TestUpdateBackupOfLinkedFile(t *testing.T) {
	dir := t.TempDir()
	p, other := filepath.Join(dir, "vm.kp"), filepath.Join(dir, "other-name.kp")
	if err := os.WriteFile(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(p, other); err != nil {
		t.Skip("no hard links here:", err)
	}
	backup, _, err := Update(p, UpdateOptions{Backup: true}, func(old []byte) ([]byte, error) { return []byte("two"), nil })
	if err != nil {
		t.Fatal(err)
	}
	oi, _ := os.Stat(other)
	bi, _ := os.Stat(backup)
	if oi.Mode().Perm() != 0o644 || os.SameFile(oi, bi) {
		t.Errorf("the other name's mode is %04o, the backup is the same file: %v; want 0644 and a copy", oi.Mode().Perm(), os.SameFile(oi, bi))
	}
	if b, _ := os.ReadFile(backup); string(b) != "one" || bi.Mode().Perm() != 0o600 {
		t.Errorf("backup holds %q, mode %04o", b, bi.Mode().Perm())
	}
}

// TestUpdateBackupWhereModesCannotChange: where the old file cannot be made
// 0600 (root without CAP_FOWNER, root-squashed NFS), the backup is a copy.
func TestUpdateBackupWhereModesCannotChange(t *testing.T) {
	makePrivate = func(*os.File) error { return os.ErrPermission }
	defer func() { makePrivate = func(f *os.File) error { return f.Chmod(0o600) } }()
	dir := t.TempDir()
	p := filepath.Join(dir, "vm.kp")
	if err := os.WriteFile(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	backup, changed, err := Update(p, UpdateOptions{Backup: true}, func([]byte) ([]byte, error) { return []byte("two"), nil })
	if err != nil || !changed {
		t.Fatalf("changed %v, %v", changed, err)
	}
	bi, err := os.Stat(backup)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(backup); string(b) != "one" || bi.Mode().Perm() != 0o600 || os.SameFile(before, bi) {
		t.Errorf("backup holds %q, mode %04o, the old file itself: %v; want a 0600 copy of \"one\"", b, bi.Mode().Perm(), os.SameFile(before, bi))
	}
	des, _ := os.ReadDir(dir)
	if len(des) != 2 {
		t.Errorf("%d files in the directory; want the file and its backup", len(des))
	}
}

// TestLongNames: a file whose name is as long as the file system allows
// can still be rewritten with a backup; the temporary and backup names are
// made from a shortened name.
func TestLongNames(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, strings.Repeat("k", 230)+"é.kp")
	if err := os.WriteFile(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	backup, _, err := Update(p, UpdateOptions{Backup: true}, func([]byte) ([]byte, error) { return []byte("two"), nil })
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(backup); string(b) != "one" || !strings.HasPrefix(filepath.Base(backup), strings.Repeat("k", 200)) || !strings.HasSuffix(backup, ".bak") {
		t.Errorf("backup %s holds %q", backup, b)
	}
	if _, err := WriteFile(p, []byte("three"), 0o644, Options{Overwrite: true, Backup: true}); err != nil {
		t.Fatal(err)
	}
	useAnonymous = false
	defer func() { useAnonymous = true }()
	if _, err := WriteFile(p, []byte("four"), 0o644, Options{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFile(filepath.Join(dir, "missing", "x.kp"), nil, 0o644, Options{}); !errors.Is(err, ErrNoDirectory) {
		t.Errorf("writing into a directory that does not exist: %v; want ErrNoDirectory", err)
	}
}

// TestUpdateBackupWindow: in the instant between the file's name moving on
// to the new content and the old file becoming 0600 (what a kill there
// leaves), the old file, still 0644, is reachable only through a directory
// of mode 0700.
func TestUpdateBackupWindow(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("linkOpen is Linux's")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "vm.kp")
	if err := os.WriteFile(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	saw := false
	makePrivate = func(f *os.File) error {
		saw = true
		des, _ := os.ReadDir(dir)
		for _, d := range des {
			fi, _ := os.Lstat(filepath.Join(dir, d.Name()))
			switch {
			case d.Name() == "vm.kp":
			case fi.IsDir() && fi.Mode().Perm() == 0o700 && strings.HasPrefix(d.Name(), TempPrefix):
			default:
				t.Errorf("in the window, %s (mode %v) is in the directory", d.Name(), fi.Mode())
			}
		}
		return f.Chmod(0o600)
	}
	defer func() { makePrivate = func(f *os.File) error { return f.Chmod(0o600) } }()
	if _, _, err := Update(p, UpdateOptions{Backup: true}, func([]byte) ([]byte, error) { return []byte("two"), nil }); err != nil {
		t.Fatal(err)
	}
	if !saw {
		t.Error("the backup was not the old file itself")
	}
}

// TestUpdateBackupStaging: with a staging directory (a batch's), backups
// under way are linked in it, and it is empty once they are in place.
func TestUpdateBackupStaging(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("linkOpen is Linux's")
	}
	dir := t.TempDir()
	staging, err := MakeStagingDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(staging); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("staging directory: %v, %v", fi.Mode(), err)
	}
	for _, name := range []string{"a.kp", "b.kp"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("one"), 0o644); err != nil {
			t.Fatal(err)
		}
		before, _ := os.Stat(p)
		linkedIn := ""
		makePrivate = func(f *os.File) error {
			des, _ := os.ReadDir(staging)
			if len(des) == 1 {
				linkedIn = staging
			}
			return f.Chmod(0o600)
		}
		backup, _, err := Update(p, UpdateOptions{Backup: true, StagingDir: staging}, func([]byte) ([]byte, error) { return []byte("two"), nil })
		makePrivate = func(f *os.File) error { return f.Chmod(0o600) }
		if err != nil {
			t.Fatal(err)
		}
		bi, _ := os.Stat(backup)
		if linkedIn != staging || !os.SameFile(before, bi) || bi.Mode().Perm() != 0o600 {
			t.Errorf("%s: linked in the staging directory: %v; the backup is the old file: %v, mode %04o", name, linkedIn == staging, os.SameFile(before, bi), bi.Mode().Perm())
		}
	}
	if des, _ := os.ReadDir(staging); len(des) != 0 {
		t.Errorf("the staging directory still holds %d entries", len(des))
	}
}
