//go:build unix

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/testenv"
	"github.com/guardctl/guardctl/vtpm"
)

// Crash and concurrency tests: kill_test.go kills every writing command
// with SIGKILL at random moments (GUARDCTL_CRASH_ITERATIONS sets how many
// times; CI runs the default) and checks that nothing was lost and nothing
// is half-written; these helpers serve it and the tests below.

// mustGuardctl runs guardctl and fails the test unless it succeeds.
func mustGuardctl(t *testing.T, store string, args ...string) string {
	t.Helper()
	out, errOut, code := runGuardctl(t, store, args...)
	if code != 0 {
		t.Fatalf("guardctl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// timeOf measures one uninterrupted run, to spread the kills over it.
func timeOf(t *testing.T, cmd *exec.Cmd) time.Duration {
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
	return max(time.Since(start)*6/5, 5*time.Millisecond)
}

// requireCleanStore runs store check, which may find leftovers of killed
// writes but never a broken guardian (and exits 6 exactly when it finds
// something), repairs them into lost+found (deleting nothing), and requires
// a clean store afterwards.
func requireCleanStore(t *testing.T, store string) {
	t.Helper()
	out, _, code := runGuardctl(t, store, "store", "check", "-o", "json")
	var res checkResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("store check -o json: %v\n%s", err, out)
	}
	for _, f := range res.Findings {
		if f.Kind != "leftover" {
			t.Errorf("store check found %s %s: %s", f.Kind, f.Path, f.Detail)
		}
	}
	if (len(res.Findings) > 0) != (code == exitStoreProblem) {
		t.Errorf("store check exited %d with %d findings", code, len(res.Findings))
	}
	var repaired checkResult
	if err := json.Unmarshal([]byte(mustGuardctl(t, store, "store", "check", "--repair", "-o", "json")), &repaired); err != nil {
		t.Fatal(err)
	}
	mustGuardctl(t, store, "store", "check")
	// Empty leftovers are removed (they hold nothing); the others are
	// moved, never deleted.
	toMove := 0
	for _, f := range repaired.Findings {
		if strings.HasPrefix(f.Action, "moved to ") {
			toMove++
		} else if !strings.HasPrefix(f.Action, "removed (") {
			t.Errorf("store check --repair: %s %s: %s", f.Kind, f.Path, f.Action)
		}
	}
	moved, _ := os.ReadDir(filepath.Join(store, "lost+found"))
	if len(moved) != toMove {
		t.Errorf("lost+found holds %d entries; --repair had %d leftovers to move", len(moved), toMove)
	}
}

func loadIdentities(t *testing.T, store string) []*guardian.Guardian {
	t.Helper()
	// the store's whole guardians with private keys, as guardctl unwraps
	// with them
	entries, err := certstore.OpenDir(store).List()
	var ids []*guardian.Guardian
	for _, e := range entries {
		if !e.Broken() && e.Meta.HasPrivateKeys && e.KeyErr == nil {
			ids = append(ids, e.Guardian)
		}
	}
	if err != nil || len(ids) == 0 {
		t.Fatalf("identities: %v", err)
	}
	return ids
}

// stateOf returns the decrypted permall of the state at path (key may be nil).
func stateOf(path string, key vtpm.Key) ([]byte, error) {
	st, err := vtpm.ReadState(path)
	if err != nil {
		return nil, err
	}
	return vtpm.Decrypt(st.Blobs["permall"], key)
}

// TestConcurrentMixed runs many processes doing mixed operations on one
// store at once: the only errors are the documented "already exists" and
// "not found", nothing is lost (every guardian ever created is live or in
// the trash) and nothing is duplicated.
func TestConcurrentMixed(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	names := []string{"a", "b", "c"}
	const workers, ops = 8, 12
	type result struct {
		args   []string
		code   int
		stderr string
	}
	results := make(chan result, workers*ops)
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range ops {
				n := names[(w+i)%len(names)]
				var args []string
				switch (w*7 + i*3) % 5 {
				case 0, 1:
					args = []string{"guardian", "create", n, "--host", "h"}
				case 2:
					args = []string{"guardian", "remove", n, "--yes"}
				case 3:
					args = []string{"guardian", "restore", n}
				default:
					args = []string{"guardian", "list", "-o", "json"}
				}
				_, e, code := runGuardctl(t, store, args...)
				results <- result{args, code, e}
			}
		}()
	}
	for range workers {
		<-done
	}
	close(results)
	created := map[string]bool{}
	for r := range results {
		switch r.code {
		case 0:
			if r.args[1] == "create" {
				created[r.args[2]] = true
			}
		case exitExists, exitNotFound:
		default:
			t.Errorf("guardctl %s: exit %d: %s", strings.Join(r.args, " "), r.code, r.stderr)
		}
	}
	mustGuardctl(t, store, "store", "check")
	present := map[string]int{}
	for _, v := range listed(t, store) {
		present[v.Name]++
		if v.Status != "ok" {
			t.Errorf("%s: %s", v.Name, v.statusText())
		}
	}
	out := mustGuardctl(t, store, "guardian", "list", "--removed", "-o", "json")
	var removed []removedView
	json.Unmarshal([]byte(out), &removed)
	inTrash := map[string]bool{}
	for _, r := range removed {
		inTrash[r.Name] = true
	}
	for n := range created {
		if present[n] == 0 && !inTrash[n] {
			t.Errorf("guardian %s was created and is now neither live nor in the trash", n)
		}
		if present[n] > 1 {
			t.Errorf("guardian %s is listed %d times", n, present[n])
		}
	}
}

// TestFullDisk writes to a file system of the test's own that is too small
// (a 4 KiB tmpfs): each command fails with a clear error and changes
// nothing. Mounting needs root, which CI has.
func TestFullDisk(t *testing.T) {
	testenv.Root(t, "the full-disk test mounts a tmpfs", "mount")
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	store := filepath.Join(t.TempDir(), "store")
	mustGuardctl(t, store, "guardian", "create", "g", "--host", "h")
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("pw"), 0o600)

	// two PFX files do not fit in one page: neither is left
	_, errOut, code := runGuardctl(t, store, "guardian", "export", "g", "--dir", filepath.Join(mnt, "out"), "--password-file", pw)
	if code != exitFailure || !strings.Contains(errOut, "no space left on device") || !strings.Contains(errOut, "hint: the disk is full") {
		t.Errorf("export to a full disk: exit %d: %s", code, errOut)
	}
	if left, _ := os.ReadDir(filepath.Join(mnt, "out")); len(left) != 0 {
		t.Errorf("export to a full disk left %d files", len(left))
	}
	// nor the --dir it made (issue 20, item 8)
	if _, err := os.Lstat(filepath.Join(mnt, "out")); err == nil {
		t.Error("export to a full disk left the directory it made")
	}

	// a store on the full disk: create fails, the store stays clean
	mstore := filepath.Join(mnt, "store")
	if _, errOut, code := runGuardctl(t, mstore, "guardian", "create", "x", "--host", "h"); code != exitFailure || !strings.Contains(errOut, "no space left") {
		t.Errorf("create on a full disk: exit %d: %s", code, errOut)
	}
	mustGuardctl(t, mstore, "store", "check")
	if v := listed(t, mstore); len(v) != 0 {
		t.Errorf("a failed create left %d guardians", len(v))
	}

	// fill the disk, then a key and a state cannot be written: nothing is
	dir := t.TempDir()
	kp := filepath.Join(dir, "vm.kp")
	mustGuardctl(t, store, "kp", "new", "--owner", "g", "--out", kp)
	filler := bytes.Repeat([]byte{0}, 64<<10)
	os.WriteFile(filepath.Join(mnt, "filler"), filler, 0o600)
	if _, errOut, code := runGuardctl(t, store, "kp", "unwrap", kp, "--key-out", filepath.Join(mnt, "vm.key")); code != exitFailure || !strings.Contains(errOut, "no space left") {
		t.Errorf("unwrap to a full disk: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(mnt, "vm.key")); !os.IsNotExist(err) {
		t.Error("a key file was left on the full disk")
	}
	entries, _ := os.ReadDir(mnt)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".guardctl-tmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}
