//go:build linux

package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/guardctl/guardctl/internal/testenv"
)

// TestMigrationGuide runs docs/migrate.md: every ```sh block, in order, on
// the "host" its marker names (<!-- guide host=old|new|both run=SCENARIOS -->),
// for each scenario it lists, with the real guardctl binary, the real swtpm
// and tpm2-tools, and stand-ins for virsh, qm, pvesm, scp and QEMU
// (testdata/guide). Each host is a directory: its own store (for the default
// store), HOME (the shell's directory), TMPDIR, and a root under which the
// stand-ins keep libvirt's and Proxmox's files, and under which the system
// paths the blocks name are put (hostPaths; any other one fails the test). Blocks of one host run in one shell session, as an
// administrator pastes them: the variables one block sets are there in the
// next. The stand-ins for 'virsh start' and 'qm start' start swtpm on the
// state as libvirt and Proxmox do (with the secret's value as its key), and
// QEMU's initialises the TPM through the swtpm the guide starts; each reads
// back the NV canary, persistent key and EK the old host's TPM was given. The Hyper-V section's PowerShell blocks cannot run here: each
// guardctl line in them runs against a directory store per host instead.
func TestMigrationGuide(t *testing.T) {
	guide, err := filepath.Abs("../../docs/migrate.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := parseGuide(t, guide)
	known := map[string]bool{"*": true}
	for _, sc := range guideScenarios {
		known[sc.name] = true
	}
	for _, b := range blocks {
		for _, r := range b.run {
			if !known[r] {
				t.Errorf("docs/migrate.md:%d: unknown scenario %q in the block's marker", b.line, r)
			}
		}
	}
	if t.Failed() {
		return
	}
	bin := filepath.Join(t.TempDir(), "guardctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, sc := range guideScenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.name == "hyperv" {
				runHyperVGuide(t, bin, blocks)
				return
			}
			runShellGuide(t, bin, blocks, sc)
		})
	}
}

// TestMigrationGuideLinked: the README's first screen links the guide.
func TestMigrationGuideLinked(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if strings.Contains(l, "(docs/migrate.md)") {
			if i >= 25 {
				t.Errorf("README.md links docs/migrate.md on line %d, below its first screen", i+1)
			}
			return
		}
	}
	t.Error("README.md does not link docs/migrate.md")
}

// guideBlock is one fenced code block of the guide with its marker.
type guideBlock struct {
	line int    // of the opening fence
	lang string // sh or powershell
	host string // old, new or both
	run  []string
	text string
	// same: the block prints the same on both hosts (what the
	// administrator compares)
	same bool
}

func (b guideBlock) runsIn(scenario string) bool {
	return slices.Contains(b.run, scenario) || (slices.Contains(b.run, "*") && b.lang == "sh")
}

var guideMarker = regexp.MustCompile(`^<!-- guide host=(old|new|both) run=([a-z0-9*,-]+)( same-output)? -->$`)

// parseGuide reads the guide's sh and powershell blocks. Every one of them
// must have its marker on the line before its fence, and every marker a
// block: a block nobody runs would rot.
func parseGuide(t *testing.T, path string) []guideBlock {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var blocks []guideBlock
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "<!-- guide") {
			m := guideMarker.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("docs/migrate.md:%d: a marker reads <!-- guide host=old|new|both run=SCENARIO,...[ same-output] -->", i+1)
			}
			if i+1 >= len(lines) || (lines[i+1] != "```sh" && lines[i+1] != "```powershell") {
				t.Fatalf("docs/migrate.md:%d: a marker must be followed by a ```sh or ```powershell block", i+1)
			}
			continue
		}
		if !strings.HasPrefix(l, "```") || l == "```" {
			continue
		}
		lang := strings.TrimPrefix(l, "```")
		start := i
		var body []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			body = append(body, lines[i])
		}
		if lang != "sh" && lang != "powershell" {
			continue
		}
		m := []string(nil)
		if start > 0 {
			m = guideMarker.FindStringSubmatch(lines[start-1])
		}
		if m == nil {
			t.Fatalf("docs/migrate.md:%d: a ```%s block without a <!-- guide host=… run=… --> marker", start+1, lang)
		}
		blocks = append(blocks, guideBlock{line: start + 1, lang: lang, host: m[1], run: strings.Split(m[2], ","), text: strings.Join(body, "\n"), same: m[3] != ""})
		if m[3] != "" && m[1] != "both" {
			t.Fatalf("docs/migrate.md:%d: same-output compares what both hosts print", start+1)
		}
	}
	if len(blocks) < 10 {
		t.Fatalf("only %d marked blocks in docs/migrate.md", len(blocks))
	}
	return blocks
}

// guideScenario is one way through the guide.
type guideScenario struct {
	name string
	// prepare checks for the tools the scenario needs (skipping, or failing
	// under CI=true, when one is missing) and makes the VM on the old host.
	prepare func(t *testing.T, g *guideRun)
	// vars are the assignments an administrator edits (NAME=value at the
	// start of a line), set to what this scenario's hosts have.
	vars map[string]string
	// env is added to every host's environment (stand-in settings).
	env []string
	// check runs after the last block.
	check func(t *testing.T, g *guideRun)
	// jobs: each block that names this scenario (not "*") runs in a
	// shell of its own, as a CI job does, with only env's variables.
	jobs bool
}

var guideScenarios = []guideScenario{
	{name: "libvirt-plain", prepare: prepareLibvirt(false), check: checkLibvirt},
	{name: "libvirt-encrypted", prepare: prepareLibvirt(true), check: checkLibvirt},
	{name: "pve-raw", prepare: preparePVE("raw"), vars: map[string]string{"STORAGE": "local"}},
	{name: "pve-lvm", prepare: preparePVE("lvm")},
	{name: "pve-qcow2", prepare: preparePVE("qcow2"), vars: map[string]string{"STORAGE": "local"}, env: []string{"PVE_DIR_FORMAT=qcow2"}},
	{name: "qemu-key", prepare: prepareQEMUKey, check: checkQEMUKey},
	{name: "ci", prepare: prepareCI, check: checkCI, jobs: true, env: []string{"OLD=host-a", "NEW=host-b"}},
	{name: "hyperv"},
}

const (
	guideVM       = "win11"
	guideUUID     = "6f3c1a0e-8f5e-4c1b-9d3a-2b7e4f6a8c01"
	guideSecretID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
)

// guideHost is one host: its directories and its shell session.
type guideHost struct {
	name, dir, home, store, tmp, root, session string
}

// guideRun is one scenario's hosts and files.
type guideRun struct {
	work     string
	bin      string // the real guardctl
	old, new *guideHost
	env      []string
	secrets  []string // no argument of any command may hold one of these
	password string   // what the administrator types at guardctl's prompts
	output   strings.Builder
}

func newGuideRun(t *testing.T, bin string) *guideRun {
	work := t.TempDir()
	g := &guideRun{work: work, bin: bin, password: randomHex(t, 12)}
	mk := func(name string) *guideHost {
		d := filepath.Join(work, name)
		h := &guideHost{name: name, dir: d, home: filepath.Join(d, "home"), store: filepath.Join(d, "store"),
			tmp: filepath.Join(d, "tmp"), root: filepath.Join(d, "root"), session: filepath.Join(d, "session.sh")}
		for _, p := range []string{h.home, h.tmp, h.root} {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		writeFile(t, h.session, fmt.Sprintf("GUIDE_PWD=%s\n", shellQuote(h.home)), 0o600)
		return h
	}
	g.old, g.new = mk("host-a"), mk("host-b")
	g.secrets = []string{g.password}
	return g
}

func (g *guideRun) host(role string) *guideHost {
	if role == "old" {
		return g.old
	}
	return g.new
}

// hostEnv is the environment of host h's shell: the stand-ins and guardctl
// first on PATH, h's store as the default store, nothing of the caller's
// guardctl settings.
func (g *guideRun) hostEnv(t *testing.T, h *guideHost) []string {
	tpmsh, err := filepath.Abs("testdata/tpm.sh")
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GUARDCTL_") || slices.Contains([]string{"HOME", "TMPDIR", "PATH", "CDPATH", "BASH_ENV", "ENV", "TPMREC"}, k) {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env,
		"PATH="+filepath.Join(g.work, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+h.home,
		"TMPDIR="+h.tmp,
		"GUARDCTL_STORE="+h.store,
		// The administrator's answer to guardctl's password prompts: with no
		// terminal, guardctl takes it from here.
		"GUARDCTL_PASSWORD="+g.password,
		"GUIDE_HOST="+h.name,
		"GUIDE_ROOT="+h.root,
		"GUIDE_HOSTS="+g.old.name+"="+g.old.home+" "+g.new.name+"="+g.new.home,
		"WORK="+g.work,
		"STANDIN="+filepath.Join(filepath.Dir(tpmsh), "standin.sh"),
		"TPMSH="+tpmsh,
		"TPMREC="+filepath.Join(g.work, "rec"),
	), g.env...)
}

// installStandins puts guardctl (through a stand-in that logs each call and
// fails on a secret in an argument, as the example tests do) and the
// stand-ins of testdata/guide in work/bin.
func (g *guideRun) installStandins(t *testing.T) {
	bin := filepath.Join(g.work, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(bin, "guardctl"), "#!/bin/sh\nNAME=guardctl . \"$STANDIN\"\nexec "+shellQuote(g.bin)+" \"$@\"\n", 0o755)
	for _, name := range []string{"virsh", "qm", "pvesm", "scp", "qemu-system-x86_64"} {
		src, err := filepath.Abs(filepath.Join("testdata", "guide", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(src, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(g.work, "secrets"), strings.Join(g.secrets, "\n")+"\n", 0o600)
}

// session runs one block in host h's shell session: the variables, exports
// and directory the last block left are restored first and saved after.
func (g *guideRun) session(t *testing.T, h *guideHost, b guideBlock, text string) string {
	t.Helper()
	script := fmt.Sprintf(`set -a
. %[1]s
cd "$GUIDE_PWD" || exit 1
set -euo pipefail
%[2]s
set +euo pipefail
GUIDE_PWD=$PWD
export -p | grep -Ev '^declare -x (SHLVL|_|OLDPWD|PWD)=' > %[1]s.new && mv %[1]s.new %[1]s
`, shellQuote(h.session), text)
	cmd := exec.Command("bash", "--noprofile", "--norc", "-c", script)
	cmd.Dir = h.home
	cmd.Env = g.hostEnv(t, h)
	out, err := cmd.CombinedOutput()
	fmt.Fprintf(&g.output, "== docs/migrate.md:%d on %s\n%s", b.line, h.name, out)
	if err != nil {
		t.Fatalf("docs/migrate.md:%d, run on %s (%s host): %v\n%s\n-- the block --\n%s", b.line, h.name, map[*guideHost]string{g.old: "old", g.new: "new"}[h], err, out, text)
	}
	return string(out)
}

// hostPaths are the system paths the guide's blocks name, which the test
// puts under each host's root.
var hostPaths = regexp.MustCompile(`(^|[\s="':])(/var/lib/libvirt|/var/lib/swtpm|/etc/swtpm|/run/swtpm|/var/lib/images)\b`)

// systemPath is any other path of the system: a block naming one would
// change the machine the test runs on (as root).
var systemPath = regexp.MustCompile(`(^|[\s="':])/(etc|var|run|dev|srv|opt|root|media|mnt|home|boot|usr|lib|tmp)\b\S*`)

func runShellGuide(t *testing.T, bin string, blocks []guideBlock, sc guideScenario) {
	testenv.Tools(t, "the migration guide's test", "bash", "sed", "base64", "swtpm", "swtpm_setup", "swtpm_ioctl", "tpm2_nvread", "ss", "od", "pgrep")
	g := newGuideRun(t, bin)
	g.env = sc.env
	sc.prepare(t, g)
	g.installStandins(t)
	t.Cleanup(func() {
		detachGuideLoops(g.work)
		stopGuideSwtpms(g)
	})
	applied := map[string]bool{}
	ran := 0
	for _, b := range blocks {
		if b.lang != "sh" || !b.runsIn(sc.name) {
			continue
		}
		text := hostPaths.ReplaceAllString(b.text, "${1}$${GUIDE_ROOT}${2}")
		if p := systemPath.FindString(text); p != "" {
			t.Fatalf("docs/migrate.md:%d names %s, which the test would change on this machine: add it to hostPaths", b.line, strings.TrimSpace(p))
		}
		for name, value := range sc.vars {
			re := regexp.MustCompile(`(?m)^` + name + `=\S*`)
			if re.MatchString(text) {
				applied[name] = true
				text = re.ReplaceAllLiteralString(text, name+"="+value)
			}
		}
		hosts := []*guideHost{g.host(b.host)}
		if b.host == "both" {
			hosts = []*guideHost{g.old, g.new}
		}
		var outs []string
		for _, h := range hosts {
			if sc.jobs && slices.Contains(b.run, sc.name) {
				writeFile(t, h.session, fmt.Sprintf("GUIDE_PWD=%s\n", shellQuote(h.home)), 0o600)
			}
			outs = append(outs, g.session(t, h, b, text))
		}
		if b.same && (len(outs) != 2 || outs[0] != outs[1] || strings.Count(outs[0], "\n") < 4) {
			t.Fatalf("docs/migrate.md:%d prints different things on the two hosts:\n%s\n--\n%s", b.line, outs[0], outs[len(outs)-1])
		}
		ran++
	}
	for name := range sc.vars {
		if !applied[name] {
			t.Errorf("no block of scenario %s sets %s=…", sc.name, name)
		}
	}
	if ran < 5 {
		t.Fatalf("only %d blocks ran for %s", ran, sc.name)
	}
	out := g.output.String()
	if strings.Count(out, "canary-read-ok") != 1 || !strings.Contains(out, "ek-same") {
		t.Fatalf("the new host's swtpm did not read the old host's NV canary and EK back once:\n%s", out)
	}
	if sc.check != nil {
		sc.check(t, g)
	}
	noSecretsLeft(t, g)
}

// noSecretsLeft: after the guide, no host's temporary directory holds
// anything, and no file in a host's home holds a private key in the clear or
// a secret (libvirt's secret store and guardctl's own store aside).
func noSecretsLeft(t *testing.T, g *guideRun) {
	t.Helper()
	for _, h := range []*guideHost{g.old, g.new} {
		if left, _ := os.ReadDir(h.tmp); len(left) > 0 {
			t.Errorf("%s: the guide left %s in its temporary directory", h.name, left[0].Name())
		}
		filepath.WalkDir(h.home, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			data, _ := os.ReadFile(p)
			if strings.Contains(string(data), "PRIVATE KEY") {
				t.Errorf("%s holds a private key in the clear", p)
			}
			for _, s := range g.secrets {
				if strings.Contains(string(data), s) {
					t.Errorf("%s holds a secret in the clear", p)
				}
			}
			return nil
		})
	}
}

// libvirtDomainXML is what 'virsh dumpxml' shows of the guide's VM.
func libvirtDomainXML(encrypted bool) string {
	enc := ""
	if encrypted {
		enc = "\n        <encryption secret='" + guideSecretID + "'/>"
	}
	return `<domain type='kvm'>
  <name>` + guideVM + `</name>
  <uuid>` + guideUUID + `</uuid>
  <memory unit='KiB'>4194304</memory>
  <os firmware='efi'>
    <type arch='x86_64' machine='q35'>hvm</type>
  </os>
  <devices>
    <tpm model='tpm-crb'>
      <backend type='emulator' version='2.0'>` + enc + `
      </backend>
    </tpm>
  </devices>
</domain>
`
}

// prepareLibvirt makes the guide's VM on the old host as libvirt keeps it:
// running, its TPM state in /var/lib/libvirt/swtpm/UUID/tpm2 owned by tss,
// made by swtpm_setup (encrypted with the secret's value when encrypted) and
// given a canary.
func prepareLibvirt(encrypted bool) func(t *testing.T, g *guideRun) {
	return func(t *testing.T, g *guideRun) {
		testenv.Root(t, "--chown tss:tss, as the guide gives libvirt's state to tss")
		if err := exec.Command("id", "tss").Run(); err != nil {
			if testenv.CI() {
				t.Fatal("there is no user tss (Debian's tpm-udev, a dependency of tpm2-tools, makes it)")
			}
			t.Skip("there is no user tss")
		}
		root := g.old.root
		writeFile(t, filepath.Join(root, "etc/libvirt/qemu", guideVM+".xml"), libvirtDomainXML(encrypted), 0o600)
		writeFile(t, filepath.Join(root, "run/libvirt", guideVM+".state"), "running\n", 0o600)
		state := filepath.Join(root, "var/lib/libvirt/swtpm", guideUUID, "tpm2")
		if err := os.MkdirAll(state, 0o700); err != nil {
			t.Fatal(err)
		}
		setup := []string{"--tpm2", "--tpmstate", state, "--createek", "--pcr-banks", "sha256"}
		keyspec := "none"
		if encrypted {
			value := "vtpm-secret-" + randomHex(t, 16)
			g.secrets = append(g.secrets, value, base64.StdEncoding.EncodeToString([]byte(value)))
			secrets := filepath.Join(root, "etc/libvirt/secrets")
			writeFile(t, filepath.Join(secrets, guideSecretID+".xml"),
				"<secret ephemeral='no' private='yes'>\n  <uuid>"+guideSecretID+"</uuid>\n  <usage type='vtpm'>\n    <name>VTPM_SECRET</name>\n  </usage>\n</secret>\n", 0o600)
			writeFile(t, filepath.Join(secrets, guideSecretID+".value"), value, 0o600)
			setup = append(setup, "--pwdfile", filepath.Join(secrets, guideSecretID+".value"), "--cipher", "aes-256-cbc")
			keyspec = "pwdfile=" + filepath.Join(secrets, guideSecretID+".value") + ",mode=aes-256-cbc"
		}
		guideExec(t, g, "swtpm_setup", setup...)
		guideExec(t, g, "sh", "testdata/tpm.sh", "write", state, keyspec)
		guideExec(t, g, "chown", "-R", "tss:tss", filepath.Join(root, "var/lib/libvirt/swtpm", guideUUID))
	}
}

// checkLibvirt: the state is the new host's, given to tss; the old host's
// is gone with its domain.
func checkLibvirt(t *testing.T, g *guideRun) {
	if _, err := os.Stat(filepath.Join(g.old.root, "var/lib/libvirt/swtpm", guideUUID)); !os.IsNotExist(err) {
		t.Errorf("the old host still holds the VM's TPM state (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(g.old.root, "etc/libvirt/secrets", guideSecretID+".value")); !os.IsNotExist(err) {
		t.Errorf("the old host still holds the VM's secret (%v)", err)
	}
	state := filepath.Join(g.new.root, "var/lib/libvirt/swtpm", guideUUID, "tpm2")
	out, err := exec.Command("stat", "-c", "%U %a", state).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "tss 700" {
		t.Errorf("the new host's state directory is %q (%v), want tss 700", out, err)
	}
}

// prepareCI is the libvirt VM with encrypted state, and the pipeline's
// password file for the guardian backup.
func prepareCI(t *testing.T, g *guideRun) {
	testenv.Tools(t, "the migration guide's CI pipeline", "jq", "openssl")
	prepareLibvirt(true)(t, g)
	pw := "ci-secret-" + randomHex(t, 12)
	g.secrets = append(g.secrets, pw)
	file := filepath.Join(g.work, "ci-password")
	writeFile(t, file, pw+"\n", 0o600)
	g.env = append(g.env, "GUARDIAN_PASSWORD_FILE="+file)
}

// checkCI: the backup the pipeline wrote opens with the password from its
// file, read by openssl, and the new host has forgotten the old one.
func checkCI(t *testing.T, g *guideRun) {
	checkLibvirt(t, g)
	for _, f := range []string{"host-b-signing.pfx", "host-b-encryption.pfx"} {
		out, err := exec.Command("openssl", "pkcs12", "-in", filepath.Join(g.new.home, "backup", f),
			"-passin", "file:"+filepath.Join(g.work, "ci-password"), "-noout").CombinedOutput()
		if err != nil {
			t.Errorf("openssl cannot open %s with the pipeline's password: %v\n%s", f, err, out)
		}
	}
	if out, err := exec.Command(g.bin, "--store", g.new.store, "guardian", "show", "host-a").CombinedOutput(); err == nil {
		t.Errorf("the new host's store still holds host-a:\n%s", out)
	}
}

// preparePVE makes VM 100 on the old node (running, its tpmstate0 volume
// holding a linear state made by swtpm_setup, with a canary) and on the new
// node (its disks, no tpmstate0 yet): on directory storage as a raw file
// ("raw") or a qcow2 image ("qcow2"), on local-lvm as a block device ("lvm").
func preparePVE(kind string) func(t *testing.T, g *guideRun) {
	return func(t *testing.T, g *guideRun) {
		var vol, path string
		switch kind {
		case "raw":
			vol = "local:100/vm-100-disk-0.raw"
			path = filepath.Join(g.old.root, "var/lib/vz/images/100/vm-100-disk-0.raw")
		case "lvm":
			testenv.Root(t, "Proxmox's local-lvm volumes (loop devices stand for them)", "losetup")
			vol = "local-lvm:vm-100-disk-0"
			path = filepath.Join(g.old.root, "dev/pve/vm-100-disk-0")
		case "qcow2":
			testenv.Root(t, "serving a qcow2 tpmstate0 to swtpm through FUSE", "qemu-img", "qemu-storage-daemon", "fusermount3")
			vol = "local:100/vm-100-disk-0.qcow2"
			path = filepath.Join(g.old.root, "var/lib/vz/images/100/vm-100-disk-0.qcow2")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		linear := path
		switch kind {
		case "qcow2":
			linear = filepath.Join(g.work, "linear.raw")
		case "lvm":
			img := filepath.Join(g.old.root, "lvm", "vm-100-disk-0")
			writeFile(t, img, "", 0o600)
			guideExec(t, g, "truncate", "-s", "4M", img)
			out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
			if err != nil {
				t.Fatalf("losetup: %v\n%s", err, out)
			}
			dev := strings.TrimSpace(string(out))
			appendFile(t, filepath.Join(g.work, "loops"), dev+"\n")
			t.Cleanup(func() { detachGuideLoops(g.work) })
			if err := os.Symlink(dev, path); err != nil {
				t.Fatal(err)
			}
		}
		if kind != "lvm" {
			writeFile(t, linear, "", 0o600)
			guideExec(t, g, "truncate", "-s", "4M", linear)
		}
		guideExec(t, g, "swtpm_setup", "--tpm2", "--tpmstate", "file://"+linear, "--createek", "--pcr-banks", "sha256")
		guideExec(t, g, "sh", "testdata/tpm.sh", "write", linear, "none")
		if kind == "qcow2" {
			guideExec(t, g, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", linear, path)
			os.Remove(linear)
		}
		conf := "boot: order=scsi0\nmemory: 4096\nname: " + guideVM + "\nscsi0: local-lvm:vm-100-disk-1,size=64G\n"
		writeFile(t, filepath.Join(g.old.root, "etc/pve/qemu-server/100.conf"), conf+"tpmstate0: "+vol+",size=4M,version=v2.0\n", 0o600)
		writeFile(t, filepath.Join(g.old.root, "run/qemu-server/100.status"), "running\n", 0o600)
		writeFile(t, filepath.Join(g.new.root, "etc/pve/qemu-server/100.conf"), conf, 0o600)
	}
}

// prepareQEMUKey makes the guide's VM on the old host as an administrator
// runs one by hand: its state in /var/lib/swtpm/win11, encrypted with the
// key in /etc/swtpm/win11.key (swtpm_setup --keyfile), given a canary.
func prepareQEMUKey(t *testing.T, g *guideRun) {
	key := randomHex(t, 32)
	g.secrets = append(g.secrets, key)
	keyFile := filepath.Join(g.old.root, "etc/swtpm", guideVM+".key")
	writeFile(t, keyFile, key, 0o600)
	writeFile(t, filepath.Join(g.work, "old.key"), key, 0o600)
	state := filepath.Join(g.old.root, "var/lib/swtpm", guideVM)
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	guideExec(t, g, "swtpm_setup", "--tpm2", "--tpmstate", state, "--createek", "--pcr-banks", "sha256", "--keyfile", keyFile, "--cipher", "aes-256-cbc")
	guideExec(t, g, "sh", "testdata/tpm.sh", "write", state, "file="+keyFile+",mode=aes-256-cbc")
}

// checkQEMUKey: the new host's key is the old one, 0600 in a 0700
// directory; the old host's state and key are gone; QEMU stopped the swtpm.
func checkQEMUKey(t *testing.T, g *guideRun) {
	keyFile := filepath.Join(g.new.root, "etc/swtpm", guideVM+".key")
	got, err := os.ReadFile(keyFile)
	want, _ := os.ReadFile(filepath.Join(g.work, "old.key"))
	if err != nil || strings.TrimSpace(string(got)) != string(want) {
		t.Errorf("the new host's key file holds %q (%v), not the old host's key", got, err)
	}
	for path, mode := range map[string]fs.FileMode{keyFile: 0o600, filepath.Dir(keyFile): 0o700 | fs.ModeDir} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v (%v), want %v", path, fi.Mode(), err, mode)
		}
	}
	for _, p := range []string{"var/lib/swtpm/" + guideVM, "etc/swtpm/" + guideVM + ".key"} {
		if _, err := os.Stat(filepath.Join(g.old.root, p)); !os.IsNotExist(err) {
			t.Errorf("the old host still holds /%s (%v)", p, err)
		}
	}
	if pids, _ := filepath.Glob(filepath.Join(g.new.root, "run/swtpm/*.pid")); len(pids) > 0 {
		t.Errorf("a swtpm still runs: %v", pids)
	}
}

// stopGuideSwtpms kills a swtpm a guide block started and a failure left
// running (by the PID in its pid file).
func stopGuideSwtpms(g *guideRun) {
	for _, h := range []*guideHost{g.old, g.new} {
		pids, _ := filepath.Glob(filepath.Join(h.root, "run/swtpm/*.pid"))
		for _, f := range pids {
			data, _ := os.ReadFile(f)
			var pid int
			if _, err := fmt.Sscan(string(data), &pid); err != nil || pid <= 1 {
				continue
			}
			if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.HasPrefix(string(cmdline), "swtpm\x00") {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
		}
	}
}

// detachGuideLoops detaches the loop devices listed in work/loops.
func detachGuideLoops(work string) {
	data, _ := os.ReadFile(filepath.Join(work, "loops"))
	for _, dev := range strings.Fields(string(data)) {
		exec.Command("losetup", "-d", dev).Run()
	}
	os.Remove(filepath.Join(work, "loops"))
}

// runHyperVGuide runs each guardctl line of the Hyper-V section's
// PowerShell blocks on its host, against a directory store per host in place
// of Hyper-V's (which needs Windows), with E:\ a directory shared by both:
// the old host's UntrustedGuardian is exported and checked there, and the
// new host imports it and finds it can start the VM. The cmdlets the blocks
// use are checked against their published parameters. 'Get-VMKeyProtector'
// is stood in for by a key protector guardctl makes for the old guardian.
func runHyperVGuide(t *testing.T, bin string, blocks []guideBlock) {
	g := newGuideRun(t, bin)
	drive := filepath.Join(g.work, "E")
	if err := os.Mkdir(drive, 0o700); err != nil {
		t.Fatal(err)
	}
	run := func(h *guideHost, args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = h.home
		cmd.Env = g.hostEnv(t, h)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := run(g.old, "guardian", "create", "UntrustedGuardian"); code != 0 {
		t.Fatalf("guardian create: exit %d\n%s", code, out)
	}
	lines, kpSaved := 0, false
	for _, b := range blocks {
		if b.lang != "powershell" || !b.runsIn("hyperv") {
			continue
		}
		h := g.host(b.host)
		if b.host == "both" {
			t.Fatalf("docs/migrate.md:%d: a PowerShell block runs on one host", b.line)
		}
		checkCmdlets(t, b)
		if strings.Contains(b.text, "Get-VMKeyProtector") {
			kp := filepath.Join(drive, "backup", "VM1.kp")
			if out, code := run(h, "kp", "new", "--owner", "UntrustedGuardian", "--out", kp); code != 0 {
				t.Fatalf("kp new (for Get-VMKeyProtector): exit %d\n%s", code, out)
			}
			kpSaved = true
		}
		sc := bufio.NewScanner(strings.NewReader(b.text))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, "guardctl ") {
				if strings.Contains(line, "guardctl ") {
					t.Errorf("docs/migrate.md:%d: guardctl not at the start of its line: %s", b.line+n, line)
				}
				continue
			}
			var args []string
			for _, tok := range strings.Fields(line)[1:] {
				if strings.ContainsAny(tok, "$\"'`;|") {
					t.Fatalf("docs/migrate.md:%d: %q: the test runs guardctl lines with literal arguments only", b.line+n, tok)
				}
				if rest, ok := strings.CutPrefix(tok, `E:\`); ok {
					tok = filepath.Join(drive, filepath.FromSlash(strings.ReplaceAll(rest, `\`, "/")))
				}
				args = append(args, tok)
			}
			out, code := run(h, args...)
			lines++
			switch {
			case args[0] == "kp" && args[1] == "show":
				// 8 for Hyper-V's own key protectors, whose signatures
				// guardctl cannot check; 0 for this one
				if (code != 0 && code != 8) || !strings.Contains(out, "This host can start the VM") {
					t.Errorf("docs/migrate.md:%d on %s: %s: exit %d\n%s", b.line+n, h.name, line, code, out)
				}
			case code != 0:
				t.Errorf("docs/migrate.md:%d on %s: %s: exit %d\n%s", b.line+n, h.name, line, code, out)
			}
		}
		if b.host == "old" && strings.Contains(b.text, "--dry-run") {
			if out, code := run(g.old, "guardian", "show", "UntrustedGuardian"); code != 0 || !strings.Contains(out, "private key yes") {
				t.Errorf("the old store lost its guardian or its keys: exit %d\n%s", code, out)
			}
		}
	}
	if lines < 6 || !kpSaved {
		t.Fatalf("ran %d guardctl lines of the Hyper-V section (key protector saved: %v)", lines, kpSaved)
	}
	// The new host holds the old host's guardian, keys and all.
	want, _ := run(g.old, "guardian", "show", "UntrustedGuardian", "-o", "json")
	got, code := run(g.new, "guardian", "show", "UntrustedGuardian", "-o", "json")
	thumb := regexp.MustCompile(`"thumbprint": "([0-9A-F]+)"`)
	if code != 0 || !slices.Equal(thumb.FindAllString(got, -1), thumb.FindAllString(want, -1)) || !strings.Contains(got, `"hasPrivateKeys": true`) {
		t.Errorf("the new host's UntrustedGuardian is not the old one with its keys:\n%s\nwant the thumbprints of:\n%s", got, want)
	}
	// No key was written in the clear on the way: E:\ holds the PFX pair
	// and the key protector only.
	filepath.WalkDir(drive, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasSuffix(p, ".pfx") && !strings.HasSuffix(p, ".kp") {
			t.Errorf("the Hyper-V steps left %s on the backup drive", p)
		}
		return nil
	})
}

// checkCmdlets checks each cmdlet of a PowerShell block against its
// published parameters (psParameters, as TestHyperVExampleSyntax does for
// the example).
func checkCmdlets(t *testing.T, b guideBlock) {
	t.Helper()
	cmdlet := regexp.MustCompile(`\b([A-Z][a-z]+-[A-Z][A-Za-z]+)\b`)
	param := regexp.MustCompile(`\s-([A-Za-z]+)`)
	for _, seg := range regexp.MustCompile(`[|{};()]`).Split(b.text, -1) {
		m := cmdlet.FindStringSubmatchIndex(seg)
		if m == nil {
			continue
		}
		name := seg[m[2]:m[3]]
		allowed, ok := psParameters[name]
		if !ok {
			t.Errorf("docs/migrate.md:%d: cmdlet %s is not in the table of checked cmdlets", b.line, name)
			continue
		}
		for _, p := range param.FindAllStringSubmatch(seg[m[3]:], -1) {
			if !slices.Contains(allowed, p[1]) {
				t.Errorf("docs/migrate.md:%d: %s has no parameter -%s", b.line, name, p[1])
			}
		}
	}
}

func guideExec(t *testing.T, g *guideRun, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TPMREC="+filepath.Join(g.work, "rec"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
