//go:build unix

package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/internal/testenv"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/guardctl/guardctl/vtpm"
)

// killCase is one writing command killed over and over.
type killCase struct {
	name string
	// setup prepares the store and files (with the real binary) and
	// returns the arguments of run i (i is -1, -2, -3 for the runs that
	// are timed).
	setup func(t *testing.T, store, dir string) func(i int) []string
	// after checks what run i left, killed or finished; it runs after every
	// run, so it reads the files in this process, cheaply.
	after func(t *testing.T, store, dir string, i int)
	// end checks the whole result once the kills are done.
	end func(t *testing.T, store, dir string, finished map[int]bool)
}

// TestKillEveryWritingCommand kills every command that writes with SIGKILL
// at a random moment spread over that command's own run time (measured
// first, uncontested), until it was killed crashIterations times (100 in CI:
// kills are counted, finished runs are not). After every run what the
// command writes must be the old version or the new one, whole; at the end
// store check may find leftovers of killed writes but nothing broken, and
// --repair moves them aside. The commands run side by side, one subtest
// each, on small inputs so that each run (and kill) is cheap.
func TestKillEveryWritingCommand(t *testing.T) {
	for _, c := range killCases() {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			store := filepath.Join(t.TempDir(), "store")
			dir := t.TempDir()
			args := c.setup(t, store, dir)
			// The shortest of three uncontested runs, so that nearly every
			// run is killed somewhere in it.
			d := timeOf(t, guardctlCmd(t, store, args(-1)...))
			for k := range 2 {
				d = min(d, timeOf(t, guardctlCmd(t, store, args(-2-k)...)))
			}
			if c.after != nil {
				c.after(t, store, dir, -1)
			}
			want := crashIterations(t)
			kills := 0
			finished := map[int]bool{}
			i := 0
			for ; kills < want; i++ {
				if i > 10*want {
					t.Fatalf("%d runs, only %d killed: the runs take less than the measured %v", i, kills, d)
				}
				start := time.Now()
				if runOrKill(t, guardctlCmd(t, store, args(i)...), d) {
					finished[i] = true
					// The timed runs may have been slowed by the other
					// subtests; a run that finished first shows the real
					// time, so later kills are spread over that.
					d = min(d, max(time.Since(start), 5*time.Millisecond))
				} else {
					kills++
				}
				if c.after != nil {
					c.after(t, store, dir, i)
				}
				if t.Failed() {
					return
				}
			}
			t.Logf("%d runs, kills spread over %v: %d killed, %d finished", i, d, kills, len(finished))
			if c.end != nil {
				c.end(t, store, dir, finished)
			}
			requireCleanStore(t, store)
		})
	}
}

// purgesUnderWay lists what purges left under the store's .tmp.
func purgesUnderWay(t *testing.T, store string) []string {
	names, err := os.ReadDir(filepath.Join(store, ".tmp"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range names {
		if strings.Contains(e.Name(), "-purge-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// seedPFX exports a guardian "seed", made in a store of its own, into dir.
func seedPFX(t *testing.T, dir string) (sig, enc, pw string) {
	src := filepath.Join(dir, "seed-store")
	mustGuardctl(t, src, "guardian", "create", "seed", "--host", "h")
	pw = filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("a long enough password"), 0o600)
	mustGuardctl(t, src, "guardian", "export", "seed", "--dir", dir, "--password-file", pw)
	return filepath.Join(dir, "seed-signing.pfx"), filepath.Join(dir, "seed-encryption.pfx"), pw
}

// everyGuardianWhole requires every listed guardian whole and with private
// keys, and every one whose command finished listed.
func everyGuardianWhole(t *testing.T, store string, finished map[int]bool, name func(int) string) {
	present := map[string]bool{}
	for _, v := range listed(t, store) {
		present[v.Name] = true
		if v.Status != "ok" || !v.HasPrivateKeys {
			t.Errorf("guardian %s: status %s, private keys %v", v.Name, v.statusText(), v.HasPrivateKeys)
		}
	}
	for i := range finished {
		if !present[name(i)] {
			t.Errorf("guardian %s finished but is not in the store", name(i))
		}
	}
}

// kpWhole requires the key protector data to verify and give key (any key
// when key is nil).
func kpWhole(t *testing.T, data []byte, ids []*guardian.Guardian, key []byte, i int) []byte {
	t.Helper()
	p, err := keyprotector.Parse(data)
	if err == nil {
		err = p.Verify(keyprotector.Policy{})
	}
	if err != nil {
		t.Fatalf("run %d left a key protector that does not verify: %v", i, err)
	}
	got, _, err := p.Unwrap(ids)
	if err != nil || (key != nil && !bytes.Equal(got, key)) {
		t.Fatalf("run %d: the key protector does not give the key: %v", i, err)
	}
	return got
}

// bundleWhole requires the bundle at path to read strictly, verify and
// open to a state file equal to state.
func bundleWhole(t *testing.T, path string, ids []*guardian.Guardian, state []byte, i int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("run %d: %v", i, err)
	}
	b, err := vtpm.ReadBundle(data)
	if err != nil {
		t.Fatalf("run %d left a bundle that does not read: %v", i, err)
	}
	tk := kpWhole(t, b.KeyProtector, ids, nil, i)
	files, err := b.Open(tk)
	if err != nil || !bytes.Equal(files["state.blob"], state) {
		t.Fatalf("run %d left a bundle that does not open to the state: %v", i, err)
	}
}

// smallState writes a small plain swtpm state blob to dir/state.blob.
func smallState(t *testing.T, dir string) (path string, blob []byte) {
	blob, err := vtpm.Encrypt([]byte("a small TPM state for the kill tests"), nil)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "state.blob")
	if err := os.WriteFile(path, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, blob
}

func killCases() []killCase {
	name := func(i int) string { return fmt.Sprintf("g%03d", i+1) }
	identities := loadIdentities
	return []killCase{
		{
			name: "guardian create",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				return func(i int) []string { return []string{"guardian", "create", name(i), "--host", "h"} }
			},
			end: func(t *testing.T, store, dir string, finished map[int]bool) {
				everyGuardianWhole(t, store, finished, name)
			},
		},
		{
			name: "guardian import",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				sig, enc, pw := seedPFX(t, dir)
				return func(i int) []string {
					return []string{"guardian", "import", name(i), "--signing", sig, "--encryption", enc, "--password-file", pw}
				}
			},
			end: func(t *testing.T, store, dir string, finished map[int]bool) {
				everyGuardianWhole(t, store, finished, name)
			},
		},
		{
			// Issue 11, item 4: killed between its two renames, the next
			// run (here a read) finishes the replacement.
			name: "guardian import --force",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				sig, enc, pw := seedPFX(t, dir)
				return func(i int) []string {
					return []string{"guardian", "import", "shared", "--force", "--signing", sig, "--encryption", enc, "--password-file", pw}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				e, err := certstore.OpenDir(store).Get("shared")
				if err != nil || e.Broken() {
					t.Fatalf("run %d left the guardian replaced by import --force missing or broken: %v", i, err)
				}
			},
		},
		{
			name: "guardian remove and restore",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				for _, n := range []string{"r0", "r1", "r2", "r3"} {
					mustGuardctl(t, store, "guardian", "create", n, "--host", "h")
				}
				return func(i int) []string {
					n := fmt.Sprintf("r%d", (i+4)%4)
					if _, err := os.Lstat(filepath.Join(store, "guardians", n)); err != nil {
						return []string{"guardian", "restore", n}
					}
					return []string{"guardian", "remove", n, "--yes"}
				}
			},
			end: func(t *testing.T, store, dir string, finished map[int]bool) {
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
				for _, n := range []string{"r0", "r1", "r2", "r3"} {
					if !live[n] {
						t.Errorf("guardian %s is neither in the store nor in its trash", n)
					}
				}
			},
		},
		{
			// Issue 20, item 4: a purge killed while deleting is finished
			// by the next run (here a read), never left with its keys.
			name: "guardian remove --purge",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				sig, enc, pw := seedPFX(t, dir)
				return func(i int) []string {
					// Every run is a purge: the guardian is imported
					// again (cheaply) when an earlier run purged it.
					if _, err := os.Lstat(filepath.Join(store, "guardians", "p")); err != nil {
						mustGuardctl(t, store, "guardian", "import", "p", "--signing", sig, "--encryption", enc, "--password-file", pw)
					}
					return []string{"guardian", "remove", "p", "--purge", "--yes"}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				mustGuardctl(t, store, "guardian", "list")
				if left := purgesUnderWay(t, store); len(left) > 0 {
					t.Fatalf("after run %d and a guardian list, a purge is still under way: %v", i, left)
				}
			},
			end: func(t *testing.T, store, dir string, finished map[int]bool) {
				requireCleanStore(t, store)
				lost, _ := os.ReadDir(filepath.Join(store, "lost+found"))
				for _, e := range lost {
					if strings.Contains(e.Name(), "purge") {
						t.Errorf("store check --repair kept a purged guardian in lost+found: %s", e.Name())
					}
				}
			},
		},
		{
			// Issue 20, item 5: the pair is renamed into place one file
			// after the other; a kill between the two leaves a half that
			// the next export (without --force) finishes.
			name: "guardian export",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				mustGuardctl(t, store, "guardian", "create", "g", "--host", "h")
				pw := filepath.Join(dir, "pw")
				os.WriteFile(pw, []byte("a long enough password"), 0o600)
				out := filepath.Join(dir, "out")
				return func(i int) []string {
					// A whole pair is taken away, as a user would carry it off.
					sig, enc := filepath.Join(out, "g-signing.pfx"), filepath.Join(out, "g-encryption.pfx")
					if _, err := os.Lstat(enc); err == nil {
						if _, err := os.Lstat(sig); err == nil {
							os.Remove(sig)
							os.Remove(enc)
						}
					}
					return []string{"guardian", "export", "g", "--dir", out, "--password-file", pw}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				g := identities(t, store)[0]
				for _, f := range []struct {
					file string
					cert []byte
				}{{"g-signing.pfx", g.Signing.Raw}, {"g-encryption.pfx", g.Encryption.Raw}} {
					data, err := os.ReadFile(filepath.Join(dir, "out", f.file))
					if os.IsNotExist(err) {
						continue // a killed run: the next one writes it
					} else if err != nil {
						t.Fatalf("run %d: %v", i, err)
					}
					pfx, err := guardian.DecodePFX(data, "a long enough password")
					if err != nil || !bytes.Equal(pfx.Cert.Raw, f.cert) {
						t.Fatalf("run %d left %s that does not open to the guardian's certificate: %v", i, f.file, err)
					}
				}
			},
			end: func(t *testing.T, store, dir string, finished map[int]bool) {
				// One more run finishes whatever the last kill left.
				mustGuardctl(t, store, "guardian", "export", "g", "--dir", filepath.Join(dir, "out"), "--password-file", filepath.Join(dir, "pw"))
				left, _ := os.ReadDir(filepath.Join(dir, "out"))
				var names []string
				for _, e := range left {
					names = append(names, e.Name())
				}
				if len(names) != 2 {
					t.Errorf("the export directory holds %v, not the pair alone", names)
				}
			},
		},
		{
			name: "guardian export --force",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				mustGuardctl(t, store, "guardian", "create", "g", "--host", "h")
				pw := filepath.Join(dir, "pw")
				os.WriteFile(pw, []byte("a long enough password"), 0o600)
				return func(i int) []string {
					return []string{"guardian", "export", "g", "--dir", filepath.Join(dir, "out"), "--force", "--password-file", pw}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				g := identities(t, store)[0]
				for _, f := range []struct {
					file string
					cert []byte
				}{{"g-signing.pfx", g.Signing.Raw}, {"g-encryption.pfx", g.Encryption.Raw}} {
					data, err := os.ReadFile(filepath.Join(dir, "out", f.file))
					if err != nil {
						t.Fatalf("run %d: %v", i, err)
					}
					pfx, err := guardian.DecodePFX(data, "a long enough password")
					if err != nil || !bytes.Equal(pfx.Cert.Raw, f.cert) {
						t.Fatalf("run %d left %s that does not open to the guardian's certificate: %v", i, f.file, err)
					}
				}
			},
		},
		{
			name: "kp new --force",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
				return func(i int) []string {
					return []string{"kp", "new", "--owner", "owner", "--out", filepath.Join(dir, "vm.kp"), "--force"}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				data, err := os.ReadFile(filepath.Join(dir, "vm.kp"))
				if err != nil {
					t.Fatalf("run %d: %v", i, err)
				}
				kpWhole(t, data, identities(t, store), nil, i)
			},
		},
		{
			name: "kp wrap --force",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
				os.WriteFile(filepath.Join(dir, "k"), []byte("0123456789abcdef0123456789abcdef"), 0o600)
				return func(i int) []string {
					return []string{"kp", "wrap", "--owner", "owner", "--key-file", filepath.Join(dir, "k"), "--out", filepath.Join(dir, "vm.kp"), "--force"}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				data, err := os.ReadFile(filepath.Join(dir, "vm.kp"))
				if err != nil {
					t.Fatalf("run %d: %v", i, err)
				}
				kpWhole(t, data, identities(t, store), []byte("0123456789abcdef0123456789abcdef"), i)
			},
		},
		kpGrantRevokeCase("kp grant and revoke", "--no-backup", ""),
		kpGrantRevokeCase("kp grant and revoke keeping backups", "", "--keep-backup"),
		{
			name: "kp unwrap --force",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
				os.WriteFile(filepath.Join(dir, "k"), []byte("0123456789abcdef0123456789abcdef"), 0o600)
				mustGuardctl(t, store, "kp", "wrap", "--owner", "owner", "--key-file", filepath.Join(dir, "k"), "--out", filepath.Join(dir, "vm.kp"))
				return func(i int) []string {
					return []string{"kp", "unwrap", filepath.Join(dir, "vm.kp"), "--key-out", filepath.Join(dir, "out.key"), "--force"}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				if got, err := os.ReadFile(filepath.Join(dir, "out.key")); err != nil || string(got) != "0123456789abcdef0123456789abcdef" {
					t.Fatalf("run %d left the key file %q: %v", i, got, err)
				}
			},
		},
		{
			name: "vtpm wrap --force",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
				state, _ := smallState(t, dir)
				return func(i int) []string {
					return []string{"vtpm", "wrap", state, "--owner", "owner", "--out", filepath.Join(dir, "vm.vtpm"), "--force"}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				data, _ := os.ReadFile(filepath.Join(dir, "state.blob"))
				bundleWhole(t, filepath.Join(dir, "vm.vtpm"), identities(t, store), data, i)
			},
		},
		{
			name: "vtpm unwrap --force",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
				state, _ := smallState(t, dir)
				mustGuardctl(t, store, "vtpm", "wrap", state, "--owner", "owner", "--out", filepath.Join(dir, "vm.vtpm"))
				return func(i int) []string {
					return []string{"vtpm", "unwrap", filepath.Join(dir, "vm.vtpm"), "--to", filepath.Join(dir, "dst", "state.blob"), "--force"}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				want, _ := os.ReadFile(filepath.Join(dir, "state.blob"))
				if got, err := os.ReadFile(filepath.Join(dir, "dst", "state.blob")); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("run %d left the unwrapped state not whole: %v", i, err)
				}
			},
		},
		{
			name: "vtpm unwrap --force of a state directory",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
				_, blob := smallState(t, dir)
				os.Mkdir(filepath.Join(dir, "src"), 0o700)
				os.WriteFile(filepath.Join(dir, "src", vtpm.PermallName), blob, 0o600)
				mustGuardctl(t, store, "vtpm", "wrap", filepath.Join(dir, "src"), "--owner", "owner", "--out", filepath.Join(dir, "vm.vtpm"))
				return func(i int) []string {
					return []string{"vtpm", "unwrap", filepath.Join(dir, "vm.vtpm"), "--to", filepath.Join(dir, "dst", "tpm2"), "--force"}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				want, _ := os.ReadFile(filepath.Join(dir, "state.blob"))
				if got, err := os.ReadFile(filepath.Join(dir, "dst", "tpm2", vtpm.PermallName)); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("run %d left the state directory without a whole state: %v", i, err)
				}
			},
			end: func(t *testing.T, store, dir string, finished map[int]bool) {
				// the next complete run clears what killed runs left beside the target
				mustGuardctl(t, store, "vtpm", "unwrap", filepath.Join(dir, "vm.vtpm"), "--to", filepath.Join(dir, "dst", "tpm2"), "--force")
				if left, _ := filepath.Glob(filepath.Join(dir, "dst", ".guardctl-tmp-*")); len(left) > 0 {
					t.Errorf("temporary state directories left: %v", left)
				}
			},
		},
		{
			name: "vtpm unwrap --force into a qcow2 image",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				testenv.Root(t, "qcow2 TPM volumes", "qemu-img", "qemu-storage-daemon", "fusermount3")
				mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
				// two states, unwrapped in turn, so that every run writes
				for k, text := range qcow2KillStates {
					blob, err := vtpm.Encrypt([]byte(text), nil)
					if err != nil {
						t.Fatal(err)
					}
					raw := filepath.Join(dir, fmt.Sprintf("lin%d.raw", k))
					os.WriteFile(raw, linearImage(blob, 64<<10), 0o600)
					img := filepath.Join(dir, fmt.Sprintf("src%d.qcow2", k))
					runTool(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, img)
					mustGuardctl(t, store, "vtpm", "wrap", img, "--owner", "owner", "--out", filepath.Join(dir, fmt.Sprintf("vm%d.vtpm", k)))
				}
				runTool(t, "qemu-img", "create", "-f", "qcow2", filepath.Join(dir, "dst.qcow2"), "64K")
				return func(i int) []string {
					return []string{"vtpm", "unwrap", filepath.Join(dir, fmt.Sprintf("vm%d.vtpm", (i+4)%2)), "--to", filepath.Join(dir, "dst.qcow2"), "--force", "--backup-dir", filepath.Join(dir, "bak")}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				// the image holds one state or the other, whole, and is
				// still the qcow2 image of 64 KiB it was
				st, err := vtpm.ReadState(filepath.Join(dir, "dst.qcow2"))
				if err != nil {
					t.Fatalf("run %d left the qcow2 image without a whole state: %v", i, err)
				}
				if st.Image == nil || st.Image.VirtualSize != 64<<10 || st.Image.BackingFile != "" {
					t.Fatalf("run %d changed the image: %+v", i, st.Image)
				}
				got, err := vtpm.Decrypt(st.Blobs["permall"], nil)
				if err != nil || (string(got) != qcow2KillStates[0] && string(got) != qcow2KillStates[1]) {
					t.Fatalf("run %d left a state that is neither: %q %v", i, got, err)
				}
			},
			end: func(t *testing.T, store, dir string, finished map[int]bool) {
				// the next complete run clears what killed runs left beside
				// the image, and every backup kept is a whole qcow2 image
				mustGuardctl(t, store, "vtpm", "unwrap", filepath.Join(dir, "vm0.vtpm"), "--to", filepath.Join(dir, "dst.qcow2"), "--force", "--backup-dir", filepath.Join(dir, "bak"))
				mustGuardctl(t, store, "vtpm", "unwrap", filepath.Join(dir, "vm1.vtpm"), "--to", filepath.Join(dir, "dst.qcow2"), "--force", "--backup-dir", filepath.Join(dir, "bak"))
				if left, _ := filepath.Glob(filepath.Join(dir, ".guardctl-tmp-*")); len(left) > 0 {
					t.Errorf("temporary files left beside the image: %v", left)
				}
				baks, _ := filepath.Glob(filepath.Join(dir, "bak", "*.bak"))
				for _, b := range baks {
					if _, err := vtpm.ReadState(b); err != nil {
						t.Errorf("backup %s is not a whole qcow2 image holding a state: %v", b, err)
					}
				}
			},
		},
		{
			name: "vtpm grant and revoke --rotate",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
				mustGuardctl(t, store, "guardian", "create", "other", "--host", "h")
				state, _ := smallState(t, dir)
				b := filepath.Join(dir, "vm.vtpm")
				mustGuardctl(t, store, "vtpm", "wrap", state, "--owner", "owner", "--out", b)
				return func(i int) []string {
					if (i+2)%2 == 0 {
						return []string{"vtpm", "grant", b, "--guardian", "other", "--yes"}
					}
					return []string{"vtpm", "revoke", b, "--guardian", "other", "--rotate", "--yes"}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				data, _ := os.ReadFile(filepath.Join(dir, "state.blob"))
				bundleWhole(t, filepath.Join(dir, "vm.vtpm"), identities(t, store), data, i)
			},
		},
		{
			name: "vtpm rekey",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				state, _ := smallState(t, dir)
				keys := [2]string{filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")}
				os.WriteFile(keys[0], []byte(strings.Repeat("ab", 32)), 0o600)
				os.WriteFile(keys[1], []byte(strings.Repeat("cd", 32)), 0o600)
				mustGuardctl(t, store, "vtpm", "rekey", state, "--new-key-file", keys[0])
				return func(i int) []string {
					// the key the state is under now: whichever opens it
					cur, _ := keyOpening(dir)
					return []string{"vtpm", "rekey", state, "--key-file", keys[cur], "--new-key-file", keys[1-cur]}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				if _, err := keyOpening(dir); err != nil {
					t.Fatalf("run %d: %v", i, err)
				}
			},
		},
		{
			name: "store check --repair",
			setup: func(t *testing.T, store, dir string) func(int) []string {
				mustGuardctl(t, store, "guardian", "create", "g", "--host", "h")
				return func(i int) []string {
					// something for --repair to move: a leftover of a write
					left := filepath.Join(store, ".tmp", fmt.Sprintf("20260101T000000.000000000Z-%08d-x", i+1))
					os.MkdirAll(left, 0o700)
					os.WriteFile(filepath.Join(left, "guardian.json"), []byte("{}"), 0o600)
					return []string{"store", "check", "--repair"}
				}
			},
			after: func(t *testing.T, store, dir string, i int) {
				e, err := certstore.OpenDir(store).Get("g")
				if err != nil || e.Broken() {
					t.Fatalf("run %d: the store's guardian is missing or broken: %v", i, err)
				}
			},
			end: func(t *testing.T, store, dir string, finished map[int]bool) {
				// Every leftover given to --repair is still under .tmp or
				// moved whole to lost+found; then lost+found is set aside
				// for requireCleanStore's own count.
				n := 0
				for _, sub := range []string{".tmp", "lost+found"} {
					des, _ := os.ReadDir(filepath.Join(store, sub))
					for _, d := range des {
						if !strings.HasSuffix(d.Name(), "-x") {
							continue
						}
						n++
						if _, err := os.Stat(filepath.Join(store, sub, d.Name(), "guardian.json")); err != nil {
							t.Errorf("%s/%s is not whole: %v", sub, d.Name(), err)
						}
					}
				}
				if n < crashIterations(t) {
					t.Errorf("%d leftovers found; at least %d were made", n, crashIterations(t))
				}
				os.Rename(filepath.Join(store, "lost+found"), filepath.Join(dir, "lost+found"))
			},
		},
	}
}

// qcow2KillStates are the two states the qcow2 kill case unwraps in turn.
var qcow2KillStates = [2]string{"the first small TPM state in a qcow2 image", "the second small TPM state in a qcow2 image"}

// runTool runs a tool the test needs, failing t on an error.
func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// linearImage lays blob out as swtpm's linear file backend does (the
// header of docs/vtpm.md: magic, version, header size, 15 slots; blob in
// slot 0, its section rounded up to a power of two), padded to size.
func linearImage(blob []byte, size int) []byte {
	const hdr = 8 + 1 + 1 + 2 + 15*12
	out := make([]byte, hdr, size)
	binary.LittleEndian.PutUint64(out, 0x737774706d6c696e)
	out[8] = 1
	binary.LittleEndian.PutUint16(out[10:], hdr)
	section := 1
	for section < len(blob) {
		section <<= 1
	}
	binary.LittleEndian.PutUint32(out[12:], hdr)
	binary.LittleEndian.PutUint32(out[16:], uint32(len(blob)))
	binary.LittleEndian.PutUint32(out[20:], uint32(section))
	out = append(out, blob...)
	return append(out, make([]byte, size-len(out))...)
}

// keyOpening returns which of dir/a.key (0) and dir/b.key (1) opens the
// state dir/state.blob, whole.
func keyOpening(dir string) (int, error) {
	want := []byte("a small TPM state for the kill tests")
	for k, f := range []string{"a.key", "b.key"} {
		raw, _ := os.ReadFile(filepath.Join(dir, f))
		key, _ := vtpm.ParseKeyFile(raw, "hex")
		if got, err := stateOf(filepath.Join(dir, "state.blob"), key); err == nil && bytes.Equal(got, want) {
			return k, nil
		}
	}
	return 0, fmt.Errorf("neither key opens the state whole")
}

// TestKillBetweenReplaceRenames (issue 11, item 4): guardian import --force
// killed exactly between its two renames (the old guardian already in the
// trash, the new one not yet in place: an instant too short for random
// kills to hit reliably) loses nothing: the next run finds the new guardian
// in place, and store check finds the store clean.
func TestKillBetweenReplaceRenames(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	dir := t.TempDir()
	sig, enc, pw := seedPFX(t, dir)
	mustGuardctl(t, store, "guardian", "create", "shared", "--host", "old")
	for _, next := range [][]string{
		{"guardian", "show", "shared"},
		{"guardian", "list"},
		{"store", "check"},
	} {
		cmd := guardctlCmd(t, store, "guardian", "import", "shared", "--force", "--signing", sig, "--encryption", enc, "--password-file", pw)
		cmd.Path = hookedGuardctl(t) // the kill hook is in the build with the test hooks only
		cmd.Env = append(cmd.Env, killAtEnv+"=replace")
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("import --force was not killed between its renames: %v\n%s", err, out)
		}
		if _, err := os.Lstat(filepath.Join(store, "guardians", "shared")); err == nil {
			t.Fatal("the kill came too late: the new guardian is already in place")
		}
		// the next run, whatever it is, finds the new guardian in place
		if _, e, code := runGuardctl(t, store, next...); code != 0 {
			t.Fatalf("%v after the kill: exit %d: %s", next, code, e)
		}
		out := mustGuardctl(t, store, "guardian", "show", "shared", "-o", "json")
		if !strings.Contains(out, "(seed)") {
			t.Fatalf("after the kill, guardian shared is not the imported one:\n%s", out)
		}
		requireCleanStore(t, store)
		os.RemoveAll(filepath.Join(store, "lost+found"))
		mustGuardctl(t, store, "guardian", "remove", "shared", "--purge", "--yes")
		mustGuardctl(t, store, "guardian", "create", "shared", "--host", "old")
	}
}

// kpGrantRevokeCase alternates kp grant (with grantFlag) and kp revoke
// (with revokeFlag) of one key protector of mode 0644. After every run,
// killed or not, the key protector is whole and keeps its mode, and every
// backup is a whole key protector readable by its owner only.
func kpGrantRevokeCase(name, grantFlag, revokeFlag string) killCase {
	key := []byte("0123456789abcdef0123456789abcdef")
	withFlag := func(args []string, flag string) []string {
		if flag != "" {
			args = append(args, flag)
		}
		return args
	}
	return killCase{
		name: name,
		setup: func(t *testing.T, store, dir string) func(int) []string {
			mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
			mustGuardctl(t, store, "guardian", "create", "other", "--host", "h")
			kp := filepath.Join(dir, "vm.kp")
			os.WriteFile(filepath.Join(dir, "k"), key, 0o600)
			mustGuardctl(t, store, "kp", "wrap", "--owner", "owner", "--key-file", filepath.Join(dir, "k"), "--out", kp)
			os.Chmod(kp, 0o644)
			return func(i int) []string {
				if (i+2)%2 == 0 {
					return withFlag([]string{"kp", "grant", kp, "--guardian", "other", "--yes"}, grantFlag)
				}
				return withFlag([]string{"kp", "revoke", kp, "--guardian", "other", "--yes"}, revokeFlag)
			}
		},
		after: func(t *testing.T, store, dir string, i int) {
			kp := filepath.Join(dir, "vm.kp")
			data, err := os.ReadFile(kp)
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
			ids := loadIdentities(t, store)
			kpWhole(t, data, ids, key, i)
			if fi, err := os.Stat(kp); err != nil || fi.Mode().Perm() != 0o644 {
				t.Fatalf("run %d: the key protector's mode changed: %v %v", i, fi.Mode(), err)
			}
			// What a kill leaves of a backup under way is in a private
			// directory.
			left, _ := filepath.Glob(filepath.Join(dir, atomicfile.TempPrefix+"*"))
			for _, l := range left {
				if fi, err := os.Lstat(l); err == nil && fi.IsDir() && fi.Mode().Perm() != 0o700 {
					t.Fatalf("run %d left %s, mode %v", i, l, fi.Mode())
				}
			}
			backups, _ := filepath.Glob(kp + ".*.bak")
			for _, b := range backups {
				fi, err := os.Stat(b)
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("run %d: backup %s: mode %v, %v; want 0600", i, b, fi.Mode(), err)
				}
				data, _ := os.ReadFile(b)
				kpWhole(t, data, ids, key, i)
			}
		},
	}
}
