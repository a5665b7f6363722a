package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/guardctl/guardctl/internal/testenv"
)

// ansibleNode is one local "node" of the cluster the collection manages:
// its own store, key protector directory, staging directory and binary.
type ansibleNode struct {
	name, dir string
}

func (n ansibleNode) store() string { return filepath.Join(n.dir, "store") }
func (n ansibleNode) kpDir() string { return filepath.Join(n.dir, "kp") }
func (n ansibleNode) bin() string   { return filepath.Join(n.dir, "bin", "guardctl") }

// ansibleRun is what one ansible-playbook run reported (its JSON callback).
type ansibleRun struct {
	// changes are "host | task | item" for every task result (or loop
	// item, or key protector file) that changed or would change.
	changes []string
	stats   map[string]struct{ Changed, Failures, Unreachable int }
}

// TestAnsibleCluster runs examples/ansible-cluster.yml with the real
// ansible-core on local nodes, each its own store: the first run makes
// every node hold every other node's guardian and every key protector name
// every node; a second run changes nothing; on a changed inventory a run
// in check mode changes nothing and predicts exactly what a real run then
// changes.
func TestAnsibleCluster(t *testing.T) {
	testenv.Tools(t, "the Ansible collection's cluster playbook", "ansible-playbook")
	root, w, src := ansibleWorkspace(t)
	var nodes []ansibleNode
	for i := 1; i <= 4; i++ {
		nodes = append(nodes, ansibleNode{name: fmt.Sprintf("node%d", i), dir: filepath.Join(w, fmt.Sprintf("node%d", i))})
	}
	gc := func(n ansibleNode, args ...string) string {
		t.Helper()
		out, err := exec.Command(src, append([]string{"--store", n.store(), "--yes"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: guardctl %s: %v\n%s", n.name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	newKP := func(n ansibleNode, vm string) {
		t.Helper()
		if err := os.MkdirAll(n.kpDir(), 0o755); err != nil {
			t.Fatal(err)
		}
		gc(n, "kp", "new", "--owner", n.name, "--out", filepath.Join(n.kpDir(), vm+".kp"))
	}
	inventory := func(ns []ansibleNode) string {
		var b strings.Builder
		b.WriteString("[guardctl_nodes]\n")
		for _, n := range ns {
			fmt.Fprintf(&b, "%s guardctl_store=%s guardctl_kp_dir=%s guardctl_stage_dir=%s guardctl_src=%s guardctl_install_dir=%s guardctl_binary=%s\n",
				n.name, n.store(), n.kpDir(), filepath.Join(n.dir, "stage"), src, filepath.Dir(n.bin()), n.bin())
		}
		b.WriteString("[guardctl_nodes:vars]\nansible_connection=local\nansible_python_interpreter={{ ansible_playbook_python }}\n")
		p := filepath.Join(w, fmt.Sprintf("inventory-%d.ini", len(ns)))
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	playbook := func(inv string, extra ...string) ansibleRun {
		t.Helper()
		args := append([]string{"-i", inv, filepath.Join(root, "examples", "ansible-cluster.yml"),
			"-e", "guardctl_exchange_dir=" + filepath.Join(w, "exchange")}, extra...)
		cmd := exec.Command("ansible-playbook", args...)
		cmd.Env = append(playbookEnv(w),
			"ANSIBLE_RETRY_FILES_ENABLED=0",
			"ANSIBLE_HOST_KEY_CHECKING=0",
			"ANSIBLE_FORKS=4")
		out, err := cmd.Output()
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		if err != nil {
			t.Fatalf("ansible-playbook %s: %v\n%s\n%s", strings.Join(extra, " "), err, out, stderr)
		}
		return parseAnsibleJSON(t, out)
	}

	// node1 and node2 have their guardians and two VMs each; node3 is new.
	for _, n := range nodes[:2] {
		gc(n, "guardian", "create", n.name, "--host", n.name)
		newKP(n, n.name+"-vm1")
		newKP(n, n.name+"-vm2")
	}
	inv3 := inventory(nodes[:3])
	first := playbook(inv3)
	if len(first.changes) == 0 {
		t.Fatal("the first run changed nothing")
	}
	if again := playbook(inv3); again.changed() != 0 {
		t.Fatalf("a second run changed something: %v", again.changes)
	}
	checkCluster(t, nodes[:3], gc)

	// The inventory changes: node4 joins (its guardian and guardctl were
	// provisioned with the host), node3 gets two VMs, node2 lost node1's
	// public guardian, and one of node1's VMs no longer names node2.
	n4 := nodes[3]
	if err := os.MkdirAll(filepath.Dir(n4.bin()), 0o755); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(src); err != nil || os.WriteFile(n4.bin(), data, 0o755) != nil {
		t.Fatal("copying guardctl to node4")
	}
	gc(n4, "guardian", "create", n4.name, "--host", n4.name)
	newKP(n4, "node4-vm1")
	newKP(nodes[2], "node3-vm1")
	newKP(nodes[2], "node3-vm2")
	gc(nodes[1], "guardian", "remove", "node1", "--purge")
	gc(nodes[0], "kp", "revoke", filepath.Join(nodes[0].kpDir(), "node1-vm1.kp"), "--guardian", "node2", "--no-backup")
	inv4 := inventory(nodes)

	before := treeDigest(t, nodes)
	predicted := playbook(inv4, "--check")
	if after := treeDigest(t, nodes); !maps.Equal(before, after) {
		t.Fatalf("check mode changed files: %v", diffDigest(before, after))
	}
	if predicted.changed() == 0 {
		t.Fatal("check mode predicts no change on a changed inventory")
	}
	actual := playbook(inv4)
	if !slices.Equal(predicted.changes, actual.changes) {
		t.Fatalf("check mode predicted\n  %s\nthe real run changed\n  %s", strings.Join(predicted.changes, "\n  "), strings.Join(actual.changes, "\n  "))
	}
	for _, want := range []string{
		"node2 | The node holds every other node's public guardian | node1",
		"node1 | Every key protector names every other node | " + filepath.Join(nodes[0].kpDir(), "node1-vm1.kp"),
		"node4 | The node holds every other node's public guardian | node3",
		"node3 | Every key protector names every other node | " + filepath.Join(nodes[2].kpDir(), "node3-vm2.kp"),
	} {
		if !slices.Contains(actual.changes, want) {
			t.Errorf("the real run did not change %q; it changed\n  %s", want, strings.Join(actual.changes, "\n  "))
		}
	}
	checkCluster(t, nodes, gc)
}

// checkCluster asks guardctl itself whether every node holds every other
// node's guardian and every key protector names every node.
func checkCluster(t *testing.T, nodes []ansibleNode, gc func(ansibleNode, ...string) string) {
	t.Helper()
	var want []string
	for _, n := range nodes {
		want = append(want, n.name)
	}
	for _, n := range nodes {
		var list []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal([]byte(gc(n, "guardian", "list", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, g := range list {
			names = append(names, g.Name)
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s holds guardians %v, want %v", n.name, names, want)
		}
		kps, _ := filepath.Glob(filepath.Join(n.kpDir(), "*.kp"))
		for _, kp := range kps {
			var v struct {
				Signatures string `json:"signatures"`
				Guardians  []struct {
					LocalGuardian string `json:"localGuardian"`
				} `json:"guardians"`
			}
			if err := json.Unmarshal([]byte(gc(n, "kp", "show", kp, "-o", "json")), &v); err != nil {
				t.Fatal(err)
			}
			var local []string
			for _, g := range v.Guardians {
				local = append(local, g.LocalGuardian)
			}
			sort.Strings(local)
			if v.Signatures != "valid" || !slices.Equal(local, want) {
				t.Errorf("%s: signatures %s, guardians %v, want %v", kp, v.Signatures, local, want)
			}
		}
	}
}

func (r ansibleRun) changed() int {
	n := 0
	for _, s := range r.stats {
		n += s.Changed
	}
	return n
}

// parseAnsibleJSON reads the json stdout callback: every changed task
// result, loop item and key protector file, and the recap.
func parseAnsibleJSON(t *testing.T, out []byte) ansibleRun {
	t.Helper()
	var doc struct {
		Plays []struct {
			Tasks []struct {
				Task struct {
					Name string `json:"name"`
				} `json:"task"`
				Hosts map[string]json.RawMessage `json:"hosts"`
			} `json:"tasks"`
		} `json:"plays"`
		Stats map[string]struct{ Changed, Failures, Unreachable int } `json:"stats"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("ansible's JSON: %v\n%s", err, out)
	}
	type result struct {
		Changed      bool     `json:"changed"`
		Item         any      `json:"item"`
		ChangedFiles []string `json:"changed_files"`
	}
	var run ansibleRun
	run.stats = doc.Stats
	if len(doc.Stats) == 0 {
		t.Fatalf("ansible ran on no host:\n%s", out)
	}
	for host, s := range doc.Stats {
		if s.Failures+s.Unreachable > 0 {
			t.Fatalf("%s: %d failed, %d unreachable\n%s", host, s.Failures, s.Unreachable, out)
		}
	}
	for _, p := range doc.Plays {
		for _, task := range p.Tasks {
			for host, raw := range task.Hosts {
				var r struct {
					result
					Results []result `json:"results"`
				}
				if err := json.Unmarshal(raw, &r); err != nil {
					t.Fatal(err)
				}
				add := func(x result, item string) {
					if !x.Changed {
						return
					}
					if len(x.ChangedFiles) > 0 {
						for _, f := range x.ChangedFiles {
							run.changes = append(run.changes, host+" | "+task.Task.Name+" | "+f)
						}
						return
					}
					run.changes = append(run.changes, host+" | "+task.Task.Name+" | "+item)
				}
				if len(r.Results) == 0 {
					add(r.result, "")
				}
				for _, x := range r.Results {
					add(x, fmt.Sprint(x.Item))
				}
			}
		}
	}
	sort.Strings(run.changes)
	return run
}

// treeDigest is the SHA-256 of every file under each node's store and key
// protector directory.
func treeDigest(t *testing.T, nodes []ansibleNode) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range nodes {
		for _, d := range []string{n.store(), n.kpDir()} {
			filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
				if err != nil || e.IsDir() || e.Name() == ".lock" {
					return nil
				}
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(data)
				out[p] = hex.EncodeToString(sum[:])
				return nil
			})
		}
	}
	return out
}

func diffDigest(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// TestAnsibleModules runs the guardian module with a PFX password (which
// must appear nowhere in ansible's output) and the vtpm_state module on a
// state the real swtpm made: changed, then unchanged; check mode predicts an
// unwrap and writes nothing; the real unwrap does it; then nothing changes.
func TestAnsibleModules(t *testing.T) {
	testenv.Tools(t, "the Ansible collection's modules", "ansible-playbook", "swtpm_setup")
	_, w, bin := ansibleWorkspace(t)
	const password = "correct-horse-battery-staple-42"
	src := filepath.Join(w, "src")
	pwFile := filepath.Join(w, "pw")
	os.WriteFile(pwFile, []byte(password), 0o600)
	for _, args := range [][]string{
		{"--store", src, "guardian", "create", "owner", "--host", "h"},
		{"--store", src, "guardian", "export", "owner", "--dir", filepath.Join(w, "pfx"), "--password-file", pwFile},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("guardctl %v: %v\n%s", args, err, out)
		}
	}
	os.Remove(pwFile)
	if err := os.WriteFile(filepath.Join(w, "vm.pass"), []byte("state passphrase"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(w, "vm"), 0o700)
	if out, err := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", filepath.Join(w, "vm"), "--createek", "--pcr-banks", "sha256",
		"--pwdfile", filepath.Join(w, "vm.pass"), "--cipher", "aes-256-cbc").CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	inv := filepath.Join(w, "inventory.ini")
	os.WriteFile(inv, []byte("node ansible_connection=local\n[all:vars]\nansible_python_interpreter={{ ansible_playbook_python }}\n"), 0o644)
	playbook := func(extra ...string) (ansibleRun, string) {
		t.Helper()
		args := append([]string{"-i", inv, "testdata/ansible-modules.yml", "-e", "work=" + w, "-e", "guardctl_binary=" + bin,
			"-e", "pfx_password=" + password}, extra...)
		cmd := exec.Command("ansible-playbook", args...)
		cmd.Env = playbookEnv(w)
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("ansible-playbook %v: %v\n%s\n%s", extra, err, out, stderr)
		}
		return parseAnsibleJSON(t, out), string(out)
	}
	first, out := playbook()
	want := []string{
		"node | The owner guardian is imported from its PFX pair | ",
		"node | The state is wrapped for the owner | ",
	}
	if !slices.Equal(first.changes, want) {
		t.Fatalf("the first run changed %q, want %q\n%s", first.changes, want, out)
	}
	// The password was a module argument on the command line of
	// ansible-playbook only; the module marks it no_log.
	if strings.Contains(out, password) {
		t.Fatal("ansible's output shows the PFX password")
	}
	if again, _ := playbook(); again.changed() != 0 {
		t.Fatalf("a second run changed %v", again.changes)
	}
	vm2 := filepath.Join(w, "vm2")
	predicted, _ := playbook("-e", "unwrap=true", "--check")
	if _, err := os.Stat(vm2); err == nil {
		t.Fatal("check mode unwrapped the state")
	}
	actual, _ := playbook("-e", "unwrap=true")
	unwrap := []string{"node | The state is unwrapped elsewhere | "}
	if !slices.Equal(predicted.changes, unwrap) || !slices.Equal(actual.changes, unwrap) {
		t.Fatalf("check mode predicted %q, the run changed %q; want %q", predicted.changes, actual.changes, unwrap)
	}
	for _, f := range []string{"tpm2-00.permall"} {
		a, _ := os.ReadFile(filepath.Join(w, "vm", f))
		b, err := os.ReadFile(filepath.Join(vm2, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s differs after the unwrap (%v)", f, err)
		}
	}
	if p, err := os.ReadFile(filepath.Join(w, "vm2.pass")); err != nil || string(p) != "state passphrase" {
		t.Fatalf("the passphrase unwrapped is %q (%v)", p, err)
	}
	if again, _ := playbook("-e", "unwrap=true"); again.changed() != 0 {
		t.Fatalf("a run after the unwrap changed %v", again.changes)
	}
}

// ansibleWorkspace copies guardctl (built by TestMain) into a new
// workspace w, with the collection linked there (see linkCollection); root
// is the repository.
func ansibleWorkspace(t *testing.T) (root, w, bin string) {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	w = linkCollection(t, root)
	bin = filepath.Join(w, "guardctl")
	if data, err := os.ReadFile(guardctlBin); err != nil || os.WriteFile(bin, data, 0o755) != nil {
		t.Fatalf("copying guardctl into the workspace: %v", err)
	}
	return root, w, bin
}

// playbookEnv is the environment ansible-playbook runs in within the
// workspace w: the linked collection, JSON results, temporary files and
// HOME inside w, and no guardctl store or password from the caller.
func playbookEnv(w string) []string {
	return append(os.Environ(),
		"ANSIBLE_COLLECTIONS_PATH="+filepath.Join(w, "collections"),
		"ANSIBLE_STDOUT_CALLBACK=json",
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(w, "ansible-tmp"),
		"ANSIBLE_REMOTE_TMP="+filepath.Join(w, "ansible-tmp"),
		"ANSIBLE_NOCOLOR=1",
		"HOME="+w,
		"GUARDCTL_STORE=", "GUARDCTL_PASSWORD=")
}

// linkCollection makes a workspace w in which the repository's ansible/ is
// the collection guardctl.guardctl under w/collections, the
// ANSIBLE_COLLECTIONS_PATH the tests give ansible.
func linkCollection(t *testing.T, root string) (w string) {
	t.Helper()
	w = t.TempDir()
	coll := filepath.Join(w, "collections", "ansible_collections", "guardctl")
	if err := os.MkdirAll(coll, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "ansible"), filepath.Join(coll, "guardctl")); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestAnsibleDocs has ansible-doc read every module's documentation, as
// ansible-galaxy and a user's `ansible-doc guardctl.guardctl.guardian` do:
// it must parse, and the shared options (the doc fragment) must be there.
func TestAnsibleDocs(t *testing.T) {
	testenv.Tools(t, "the Ansible collection's documentation", "ansible-doc")
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	w := linkCollection(t, root)
	for _, m := range []string{"guardian", "key_protector", "vtpm_state"} {
		cmd := exec.Command("ansible-doc", "--json", "guardctl.guardctl."+m)
		cmd.Env = append(os.Environ(), "ANSIBLE_COLLECTIONS_PATH="+filepath.Join(w, "collections"))
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("ansible-doc %s: %v\n%s", m, err, out)
			continue
		}
		var doc map[string]struct {
			Doc struct {
				Options map[string]any `json:"options"`
			} `json:"doc"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("ansible-doc %s: %v", m, err)
		}
		opts := doc["guardctl.guardctl."+m].Doc.Options
		for _, o := range []string{"binary", "store"} {
			if _, ok := opts[o]; !ok {
				t.Errorf("ansible-doc %s: no option %q in %v", m, o, opts)
			}
		}
	}
}
