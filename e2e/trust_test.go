//go:build unix

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/testenv"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/guardctl/guardctl/vtpm"
)

// runAtOnce starts every command, then waits for all of them; it returns
// their exit codes and standard errors.
func runAtOnce(t *testing.T, cmds ...*exec.Cmd) ([]int, []string) {
	t.Helper()
	codes, errs := make([]int, len(cmds)), make([]string, len(cmds))
	bufs := make([]bytes.Buffer, len(cmds))
	for i, c := range cmds {
		c.Stderr = &bufs[i]
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Wait(); err != nil {
				codes[i] = -1
				if ee, ok := err.(*exec.ExitError); ok {
					codes[i] = ee.ExitCode()
				}
			}
		}()
	}
	wg.Wait()
	for i := range cmds {
		errs[i] = bufs[i].String()
	}
	return codes, errs
}

// TestConcurrentGrants (issue 11, item 3): two kp grant (or revoke) runs on
// one file at the same time both land; neither silently loses the other's
// change. 50 pairs of simultaneous grants, and as many of revokes.
func TestConcurrentGrants(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	dir := t.TempDir()
	for _, n := range []string{"owner", "a", "b"} {
		mustGuardctl(t, store, "guardian", "create", n, "--host", "h")
	}
	kp := filepath.Join(dir, "vm.kp")
	mustGuardctl(t, store, "kp", "new", "--owner", "owner", "--out", kp)
	byName := map[string]*guardian.Guardian{}
	for _, g := range loadIdentities(t, store) {
		byName[g.Name] = g
	}
	has := func(name string) bool {
		data, err := os.ReadFile(kp)
		if err != nil {
			t.Fatal(err)
		}
		p, err := keyprotector.Parse(data)
		if err == nil {
			err = p.Verify(keyprotector.Policy{})
		}
		if err != nil {
			t.Fatalf("the key protector does not verify: %v", err)
		}
		return p.Find(byName[name]) != nil
	}
	const pairs = 50
	lost := 0
	for i := range pairs {
		for _, verb := range []string{"grant", "revoke"} {
			codes, errs := runAtOnce(t,
				guardctlCmd(t, store, "kp", verb, kp, "--guardian", "a", "--yes", "--no-backup"),
				guardctlCmd(t, store, "kp", verb, kp, "--guardian", "b", "--yes", "--no-backup"))
			for j, c := range codes {
				if c != 0 {
					t.Fatalf("pair %d: kp %s: exit %d: %s", i, verb, c, errs[j])
				}
			}
			for _, n := range []string{"a", "b"} {
				if has(n) != (verb == "grant") {
					lost++
					t.Errorf("pair %d: both runs of kp %s exited 0 but guardian %s's change is lost", i, verb, n)
				}
			}
			if lost > 0 {
				return
			}
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 1 || !strings.HasSuffix(left[0], "vm.kp") {
		t.Errorf("files left beside the key protector: %v", left)
	}
}

// TestStoreOwner (issue 11, item 9): a store owned by another user is
// refused, and store check reports it. Giving a directory away needs root,
// which CI runs as.
func TestStoreOwner(t *testing.T) {
	testenv.Root(t, "the store owner test gives a store to another user")
	store := filepath.Join(t.TempDir(), "store")
	mustGuardctl(t, store, "guardian", "create", "g", "--host", "h")
	if err := os.Chown(store, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runGuardctl(t, store, "guardian", "list")
	if code != exitFailure || !strings.Contains(errOut, "is owned by user 65534, not by the user running guardctl (0); refusing to use it") {
		t.Errorf("guardian list on another user's store: exit %d: %s", code, errOut)
	}
	out, _, code := runGuardctl(t, store, "store", "check")
	if code != exitStoreProblem || !strings.Contains(out, "owned by user 65534") {
		t.Errorf("store check on another user's store: exit %d: %s", code, out)
	}
	os.Chown(store, 0, 0)
	mustGuardctl(t, store, "guardian", "show", "g")
}

// TestConcurrentBundleChanges (issue 11, item 3): vtpm grant, and vtpm
// revoke --rotate, run two at a time on one bundle: both changes land, and
// the bundle still opens to the same state.
func TestConcurrentBundleChanges(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	dir := t.TempDir()
	for _, n := range []string{"owner", "a", "b"} {
		mustGuardctl(t, store, "guardian", "create", n, "--host", "h")
	}
	state, blob := smallState(t, dir)
	bundle := filepath.Join(dir, "vm.vtpm")
	mustGuardctl(t, store, "vtpm", "wrap", state, "--owner", "owner", "--out", bundle)
	ids := loadIdentities(t, store)
	byName := map[string]*guardian.Guardian{}
	for _, g := range ids {
		byName[g.Name] = g
	}
	for i := range 10 {
		for _, args := range [][]string{{"grant"}, {"revoke", "--rotate"}} {
			codes, errs := runAtOnce(t,
				guardctlCmd(t, store, append([]string{"vtpm", args[0], bundle, "--guardian", "a", "--yes"}, args[1:]...)...),
				guardctlCmd(t, store, append([]string{"vtpm", args[0], bundle, "--guardian", "b", "--yes"}, args[1:]...)...))
			for j, c := range codes {
				if c != 0 {
					t.Fatalf("pair %d: vtpm %s: exit %d: %s", i, args[0], c, errs[j])
				}
			}
			bundleWhole(t, bundle, ids, blob, i)
			data, _ := os.ReadFile(bundle)
			b, _ := vtpm.ReadBundle(data)
			p, _ := keyprotector.Parse(b.KeyProtector)
			for _, n := range []string{"a", "b"} {
				if (p.Find(byName[n]) != nil) != (args[0] == "grant") {
					t.Fatalf("pair %d: both runs of vtpm %s exited 0 but guardian %s's change is lost", i, args[0], n)
				}
			}
		}
	}
}
