package atomicfile

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBackups finds the backups BackupName names, for a short and a
// shortened file name, and nothing else.
func TestBackups(t *testing.T) {
	dir := t.TempDir()
	for _, base := range []string{"vm.kp", strings.Repeat("x", 250) + ".kp"} {
		path := filepath.Join(dir, base)
		var want []string
		for i := range 3 {
			b := BackupName(path, time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC))
			os.WriteFile(b, nil, 0o600)
			want = append(want, b)
		}
		// Not backups of path: another file's, a temporary file, a
		// directory with a backup's name.
		os.WriteFile(filepath.Join(dir, "vm.kp2.20260101T000000Z-abcdef.bak"), nil, 0o600)
		os.WriteFile(path+".20260101T000000Z-abcdef.bak.tmp", nil, 0o600)
		os.Mkdir(path+".20260109T000000Z-abcdef.bak", 0o700)
		got, err := Backups(path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Backups(%.20s...) = %q, want %q", base, got, want)
		}
	}
}
