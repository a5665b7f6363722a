//go:build unix

package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/guardctl/guardctl/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// TestNextRunRemovesLeftovers (issue 20, item 8): what killed runs left
// beside a key protector (an empty staging directory of backups under way,
// a temporary file linked but never renamed) is removed by the next grant
// there, and by the next write of a file there; what a running guardctl
// holds (marked live by its flock) is not.
func TestNextRunRemovesLeftovers(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	dir := t.TempDir()
	mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
	mustGuardctl(t, store, "guardian", "create", "other", "--host", "h")
	kp := filepath.Join(dir, "vm.kp")
	mustGuardctl(t, store, "kp", "new", "--owner", "owner", "--out", kp)

	deadDir := filepath.Join(dir, atomicfile.TempPrefix+"backups-0123456789ab")
	deadFile := filepath.Join(dir, atomicfile.TempPrefix+"vm.kp-0123456789ab")
	liveDir := filepath.Join(dir, atomicfile.TempPrefix+"backups-ba9876543210")
	liveFile := filepath.Join(dir, atomicfile.TempPrefix+"vm.kp-ba9876543210")
	fullDir := filepath.Join(dir, atomicfile.TempPrefix+"backups-aaaaaaaaaaaa")
	for _, d := range []string{deadDir, liveDir, fullDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(fullDir, "kept"), []byte("a backup under way"), 0o600)
	for _, f := range []string{deadFile, liveFile} {
		os.WriteFile(f, []byte("half"), 0o600)
	}
	// This process stands for a guardctl still running with liveDir and
	// liveFile.
	for _, p := range []string{liveDir, liveFile} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Fatal(err)
		}
	}

	mustGuardctl(t, store, "kp", "grant", kp, "--guardian", "other", "--yes")
	for _, p := range []string{deadDir, deadFile} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("the next grant left %s, a leftover of a killed run", filepath.Base(p))
		}
	}
	for _, p := range []string{liveDir, liveFile, filepath.Join(fullDir, "kept")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("the next grant removed %s, which a running guardctl holds or which holds a backup: %v", filepath.Base(p), err)
		}
	}

	// The same for a grant that keeps no backup (no staging directory).
	os.WriteFile(deadFile, []byte("half"), 0o600)
	mustGuardctl(t, store, "guardian", "create", "third", "--host", "h")
	mustGuardctl(t, store, "kp", "grant", kp, "--guardian", "third", "--yes", "--no-backup")
	if _, err := os.Lstat(deadFile); err == nil {
		t.Error("the next grant --no-backup left a leftover temporary file beside the key protector")
	}

	// The same for a plain write of a file there (kp new --out).
	os.WriteFile(deadFile, []byte("half"), 0o600)
	mustGuardctl(t, store, "kp", "new", "--owner", "owner", "--out", filepath.Join(dir, "b.kp"))
	if _, err := os.Lstat(deadFile); err == nil {
		t.Error("the next kp new left a leftover temporary file in its directory")
	}
	if _, err := os.Lstat(liveFile); err != nil {
		t.Errorf("kp new removed a temporary file a running guardctl holds: %v", err)
	}
}
