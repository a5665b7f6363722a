//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/guardctl/guardctl/vtpm"
)

// These tests kill every other writing command with SIGKILL at random
// moments (GUARDCTL_CRASH_ITERATIONS sets how many times; CI runs the
// default) and then check that nothing was lost and nothing is half-written.

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
	mustGuardctl(t, store, "store", "check", "--repair")
	mustGuardctl(t, store, "store", "check")
	moved, _ := os.ReadDir(filepath.Join(store, "lost+found"))
	if len(moved) != len(res.Findings) {
		t.Errorf("lost+found holds %d entries; --repair had %d leftovers to move", len(moved), len(res.Findings))
	}
}

// TestKillDuringRemoveRestore: a guardian killed in the middle of being
// removed or restored is live or in the trash, whole, never gone.
func TestKillDuringRemoveRestore(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	names := []string{"g0", "g1", "g2", "g3"}
	for _, n := range names {
		mustGuardctl(t, store, "guardian", "create", n, "--host", "h")
	}
	d := timeOf(t, guardctlCmd(t, store, "guardian", "list"))
	for i := range crashIterations(t) {
		n := names[i%len(names)]
		args := []string{"guardian", "remove", n, "--yes"}
		if _, _, code := runGuardctl(t, store, "guardian", "show", n); code != 0 {
			args = []string{"guardian", "restore", n}
		}
		runOrKill(t, guardctlCmd(t, store, args...), 2*d)
	}
	requireCleanStore(t, store)
	live := map[string]bool{}
	for _, v := range listed(t, store) {
		live[v.Name] = true
		if v.Status != "ok" {
			t.Errorf("%s: %s", v.Name, v.statusText())
		}
	}
	out := mustGuardctl(t, store, "guardian", "list", "--removed", "-o", "json")
	var removed []removedView
	json.Unmarshal([]byte(out), &removed)
	for _, r := range removed {
		live[r.Name] = true
	}
	for _, n := range names {
		if !live[n] {
			t.Errorf("guardian %s is neither in the store nor in its trash", n)
		}
	}
}

// TestKillDuringGrantRevoke: a key protector being granted or revoked when
// killed is the old version or the new one, whole and verifiable.
func TestKillDuringGrantRevoke(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	dir := t.TempDir()
	mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
	mustGuardctl(t, store, "guardian", "create", "other", "--host", "h")
	kp := filepath.Join(dir, "vm.kp")
	mustGuardctl(t, store, "kp", "new", "--owner", "owner", "--out", kp)
	key := mustGuardctl(t, store, "kp", "unwrap", kp, "--key-out", "-")
	d := timeOf(t, guardctlCmd(t, store, "kp", "grant", kp, "--guardian", "other", "--yes", "--no-backup"))
	mustGuardctl(t, store, "kp", "revoke", kp, "--guardian", "other", "--yes", "--no-backup")
	ids := loadIdentities(t, store)
	for i := range crashIterations(t) {
		verb := []string{"grant", "revoke"}[i%2]
		runOrKill(t, guardctlCmd(t, store, "kp", verb, kp, "--guardian", "other", "--yes", "--no-backup"), d)
		data, err := os.ReadFile(kp)
		if err != nil {
			t.Fatal(err)
		}
		p, err := keyprotector.Parse(data)
		if err == nil {
			err = p.Verify(keyprotector.Policy{})
		}
		if err != nil {
			t.Fatalf("run %d left a key protector that does not verify: %v", i, err)
		}
		got, _, err := p.Unwrap(ids)
		if err != nil || string(got) != key {
			t.Fatalf("run %d: the key protector no longer gives the same key: %v", i, err)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".guardctl-tmp-*"))
	t.Logf("%d named temporary files left by kills in the instant of a replace", len(leftovers))
}

func loadIdentities(t *testing.T, store string) []*guardian.Guardian {
	t.Helper()
	a := &app{storeSpec: store}
	ids, err := a.identities()
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

// TestKillDuringUnwrapAndRekey: a state being unwrapped into place, or
// re-keyed, when killed is the old state or the new one, whole.
func TestKillDuringUnwrapAndRekey(t *testing.T) {
	requireTool(t, "swtpm_setup")
	store := filepath.Join(t.TempDir(), "store")
	dir := t.TempDir()
	mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o700)
	if out, err := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", src, "--pcr-banks", "sha256").CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	want, err := stateOf(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "vm.vtpm")
	mustGuardctl(t, store, "vtpm", "wrap", src, "--owner", "owner", "--out", bundle)
	to := filepath.Join(dir, "dst", "tpm2")
	mustGuardctl(t, store, "vtpm", "unwrap", bundle, "--to", to)
	d := timeOf(t, guardctlCmd(t, store, "vtpm", "unwrap", bundle, "--to", to, "--force"))
	n := crashIterations(t)
	for i := range n {
		runOrKill(t, guardctlCmd(t, store, "vtpm", "unwrap", bundle, "--to", to, "--force"), d)
		got, err := stateOf(to, nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("unwrap run %d left %s without a whole state: %v", i, to, err)
		}
	}
	// The next complete run clears what killed runs left beside the target.
	mustGuardctl(t, store, "vtpm", "unwrap", bundle, "--to", to, "--force")
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(to), ".guardctl-tmp-*")); len(left) > 0 {
		t.Errorf("temporary state directories left: %v", left)
	}

	keys := [2]string{filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")}
	os.WriteFile(keys[0], []byte(strings.Repeat("ab", 32)), 0o600)
	os.WriteFile(keys[1], []byte(strings.Repeat("cd", 32)), 0o600)
	mustGuardctl(t, store, "vtpm", "rekey", to, "--new-key-file", keys[0])
	d = timeOf(t, guardctlCmd(t, store, "vtpm", "rekey", to, "--key-file", keys[0], "--new-key-file", keys[1]))
	mustGuardctl(t, store, "vtpm", "rekey", to, "--key-file", keys[1], "--new-key-file", keys[0])
	cur := 0
	for i := range n {
		runOrKill(t, guardctlCmd(t, store, "vtpm", "rekey", to, "--key-file", keys[cur], "--new-key-file", keys[1-cur]), d)
		opened := -1
		for k := range 2 {
			raw, _ := os.ReadFile(keys[k])
			key, _ := vtpm.ParseKeyFile(raw, "hex")
			if got, err := stateOf(to, key); err == nil && bytes.Equal(got, want) {
				opened = k
			}
		}
		if opened < 0 {
			t.Fatalf("rekey run %d left a state neither key opens", i)
		}
		cur = opened
	}
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
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the full-disk test mounts a tmpfs and needs root, which CI runs as")
		}
		t.Skip("mounting a small tmpfs needs root")
	}
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
