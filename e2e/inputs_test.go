//go:build unix

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/guardctl/guardctl/vtpm"
)

// measured is one run of the real binary: its exit code, standard error,
// CPU time and peak memory.
type measured struct {
	code   int
	stderr string
	cpu    time.Duration
	rss    int64
}

// runMeasured runs guardctl with args, killing it after timeout (a run that
// blocks fails the test).
func runMeasured(t *testing.T, store string, timeout time.Duration, args ...string) measured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	base := guardctlCmd(t, store, args...)
	cmd := exec.CommandContext(ctx, base.Path, base.Args[1:]...)
	cmd.Env = base.Env
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("guardctl %s was still running after %v (blocked)", strings.Join(args, " "), timeout)
	}
	m := measured{stderr: errOut.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		m.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	m.rss = ru.Maxrss << 10
	return m
}

// TestInputsBoundedAndNotBlocking (issue 20, item 10): a FIFO or a
// character device where a key protector, bundle, PFX or guardian file is
// expected is refused at once (it used to block, or read /dev/zero to the
// limit); an oversized input is refused by its size, or by its first
// structure, with memory bounded by a small multiple of the limit; a FIFO
// still works as --password-file.
func TestInputsBoundedAndNotBlocking(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	dir := t.TempDir()
	mustGuardctl(t, store, "guardian", "create", "g", "--host", "h")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("a long enough password"), 0o600)

	for _, args := range [][]string{
		{"kp", "show", fifo},
		{"vtpm", "inspect", fifo},
		{"guardian", "import", "x", "--public", fifo},
		{"guardian", "import", "x", "--signing", fifo, "--encryption", fifo, "--password-file", pw},
		{"kp", "show", "/dev/zero"},
		{"vtpm", "inspect", "/dev/zero"},
	} {
		m := runMeasured(t, store, 5*time.Second, args...)
		if m.code != exitUsage || !strings.Contains(m.stderr, "not a file") {
			t.Errorf("guardctl %s: exit %d: %s", strings.Join(args, " "), m.code, m.stderr)
		}
		if m.rss > 64<<20 {
			t.Errorf("guardctl %s needed %d MiB to refuse it", strings.Join(args, " "), m.rss>>20)
		}
	}

	// A 100 MB file where a bundle is expected: refused by its size.
	big := filepath.Join(dir, "big.bundle")
	f, _ := os.Create(big)
	f.Truncate(100 << 20)
	f.Close()
	m := runMeasured(t, store, 10*time.Second, "vtpm", "inspect", big)
	t.Logf("100 MB bundle: exit %d, %v CPU, %d MiB", m.code, m.cpu.Round(time.Millisecond), m.rss>>20)
	if m.code != exitVerification || !strings.Contains(m.stderr, "is larger than") {
		t.Errorf("a 100 MB bundle: exit %d: %s", m.code, m.stderr)
	}
	if m.rss > 64<<20 || m.cpu > time.Second {
		t.Errorf("a 100 MB bundle was refused with %d MiB and %v of CPU; its size alone says no", m.rss>>20, m.cpu)
	}

	// A bundle within the size limit whose manifest member declares 60 MB:
	// refused by that header, the file read once into a buffer of its size.
	manifest := filepath.Join(dir, "manifest.bundle")
	f, _ = os.Create(manifest)
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: 60 << 20, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
	f.Truncate(512 + 60<<20 + 1024)
	f.Close()
	m = runMeasured(t, store, 10*time.Second, "vtpm", "inspect", manifest)
	t.Logf("60 MB manifest: exit %d, %v CPU, %d MiB", m.code, m.cpu.Round(time.Millisecond), m.rss>>20)
	if m.code == 0 {
		t.Error("a bundle with a 60 MB manifest was read")
	}
	if limit := int64(vtpm.MaxBundleSize); m.rss > 2*limit {
		t.Errorf("a bundle with a 60 MB manifest needed %d MiB, more than twice the %d MiB limit", m.rss>>20, limit>>20)
	}

	// A secret still comes through a FIFO (--password-file <(pass show x)).
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			w.Write([]byte("a long enough password\n"))
			w.Close()
		}
	}()
	m = runMeasured(t, store, 20*time.Second, "guardian", "export", "g", "--dir", filepath.Join(dir, "out"), "--password-file", fifo)
	if m.code != 0 {
		t.Fatalf("export with the password from a FIFO: exit %d: %s", m.code, m.stderr)
	}
}
