package atomicfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
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
