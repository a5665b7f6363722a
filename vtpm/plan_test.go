package vtpm

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Backups lists only what atomicfile.BackupName names for the state's own
// files: never a state file itself, nor another file's backup.
func TestBackupsListsOnlyTheStatesBackups(t *testing.T) {
	dir := t.TempDir()
	names := []string{
		"tpm2-00.permall",
		"tpm2-00.permall.20261204T221551Z-aedb7f.bak",
		"tpm2-00.volatilestate.20261204T221551Z-0a1b2c.bak",
		"tpm2-00.permall.notes.bak",
		"tpm2-00.permallX.20261204T221551Z-aedb7f.bak",
		"ek-rsa2048.crt.20261204T221551Z-aedb7f.bak",
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st := &State{Path: dir, Layout: LayoutDir, Blobs: map[string][]byte{"permall": []byte("x")}}
	got := Backups(st, "")
	want := []string{filepath.Join(dir, "tpm2-00.permall.20261204T221551Z-aedb7f.bak")}
	if !slices.Equal(got, want) {
		t.Fatalf("Backups = %v, want %v", got, want)
	}
	lin := &State{Path: filepath.Join(dir, "tpm2-00.permall"), Layout: LayoutLinear}
	if got := Backups(lin, ""); !slices.Equal(got, want) {
		t.Fatalf("Backups of a state file = %v, want %v", got, want)
	}
}

// StateFileMode never gives others access, nor anyone execute.
func TestStateFileMode(t *testing.T) {
	for in, want := range map[os.FileMode]os.FileMode{0o666: 0o640, 0o777: 0o640, 0o600: 0o600, 0o604: 0o600, 0o640: 0o640, 0: 0o600, 0o400: 0o600} {
		if got := StateFileMode(in); got != want {
			t.Errorf("StateFileMode(%04o) = %04o, want %04o", in, got, want)
		}
	}
}
