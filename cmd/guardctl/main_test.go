package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/guardctl/guardctl/internal/testenv"
	"github.com/rogpeppe/go-internal/testscript"
	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// asMainEnv makes the test binary act as guardctl, for the [nobody]
// scripts, which run a copy of it as another user. (The tests that start
// guardctl processes themselves, kills, concurrency, terminals, are in
// ../../e2e and run the real binary.)
const asMainEnv = "GUARDCTL_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	testscript.Main(m, map[string]func(){
		"guardctl": func() { os.Exit(run(os.Args[1:])) },
	})
}

// TestScripts runs testdata/*.txtar. A script (or line) that needs a tool
// says so with a condition: [exec:keytool] for one tool, or [swtpm],
// [loop], [qemu], [nobody] for the groups below; without the tool it
// skips, naming it. Under CI (CI=true) every tool a script names in an
// [exec:...] condition, and every group's, is required: its absence fails.
func TestScripts(t *testing.T) {
	requireScriptTools(t, "testdata")
	schema, err := filepath.Abs("../../docs/keyprotector.xsd")
	if err != nil {
		t.Fatal(err)
	}
	tpmsh, err := filepath.Abs("testdata/tpm.sh")
	if err != nil {
		t.Fatal(err)
	}
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(env *testscript.Env) error {
			env.Setenv("GUARDCTL_STORE", filepath.Join(env.WorkDir, "store"))
			env.Setenv("HOME", env.WorkDir)
			env.Setenv("SCHEMA", schema)
			env.Setenv("TPMSH", tpmsh)
			env.Setenv("STANDIN", filepath.Join(filepath.Dir(tpmsh), "standin.sh"))
			env.Setenv("QSDSH", filepath.Join(filepath.Dir(tpmsh), "qsd.sh"))
			env.Setenv("EXAMPLES", examples)
			env.Setenv(fakeWindowsEnv, filepath.Join(env.WorkDir, "windows.json"))
			return nil
		},
		Condition: func(cond string) (bool, error) {
			if cond == "swtpm" {
				return swtpmCondition()
			}
			if cond == "loop" {
				return loopCondition()
			}
			if cond == "nobody" {
				return nobodyCondition()
			}
			if cond == "qemu" {
				return qemuCondition()
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"capture":   cmdCapture,
			"berify":    cmdBerify,
			"mkcert":    cmdMkcert,
			"snapshot":  cmdSnapshot,
			"perm":      cmdPerm,
			"mkpfx":     cmdMkpfx,
			"exits":     cmdExits,
			"fakewin":   cmdFakewin,
			"predict":   cmdPredict,
			"loopdev":   cmdLoopdev,
			"holdexcl":  cmdHoldExcl,
			"nobodydir": cmdNobodyDir,
			"nobody":    cmdNobody,
			"hosttpm":   cmdHostTPM,
			"tss2split": cmdTSS2Split,
		},
	})
}

// capture VAR REGEXP sets VAR to the first submatch of REGEXP in the last
// command's standard output.
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: capture VAR REGEXP")
	}
	m := regexp.MustCompile(args[1]).FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("capture: %q does not match stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
}

// berify IN OUT rewrites the DER file IN in BER, as Windows and Java write
// PFX files: every constructed element with an indefinite length and every
// OCTET STRING split into constructed chunks. The bytes a PFX MAC covers are
// unchanged, so a valid PFX stays valid (openssl checks that in the scripts).
func cmdBerify(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: berify IN OUT")
	}
	der, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	ber, rest := toBER(ts, der)
	if len(rest) != 0 {
		ts.Fatalf("berify: trailing data")
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), ber, 0o600))
}

func toBER(ts *testscript.TestScript, der []byte) (out, rest []byte) {
	if len(der) < 2 || der[0]&0x1f == 0x1f {
		ts.Fatalf("berify: unsupported encoding")
	}
	tag := der[0]
	l, n := int(der[1]), 2
	if der[1] >= 0x80 {
		k := int(der[1] & 0x7f)
		l, n = 0, 2+k
		for _, b := range der[2 : 2+k] {
			l = l<<8 | int(b)
		}
	}
	content, rest := der[n:n+l], der[n+l:]
	switch {
	case tag&0x20 != 0: // constructed
		out = []byte{tag, 0x80}
		for len(content) > 0 {
			var child []byte
			child, content = toBER(ts, content)
			out = append(out, child...)
		}
		return append(out, 0, 0), rest
	case tag == 0x04 && len(content) > 16: // OCTET STRING in chunks of 16
		out = []byte{0x24, 0x80}
		for len(content) > 0 {
			c := content[:min(16, len(content))]
			out = append(append(out, 0x04, byte(len(c))), c...)
			content = content[len(c):]
		}
		return append(out, 0, 0), rest
	}
	return der[:n+l], rest
}

// mkcert [-expired] [-bits N] [-ca PREFIX] PREFIX writes PREFIX.key and
// PREFIX.crt: a certificate openssl cannot make (an expired one) or a CA
// chain for the untrusted-root cases.
func cmdMkcert(ts *testscript.TestScript, neg bool, args []string) {
	expired, bits, ca := false, 2048, ""
	for len(args) > 1 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-expired":
			expired, args = true, args[1:]
		case "-bits":
			b, err := strconv.Atoi(args[1])
			ts.Check(err)
			bits, args = b, args[2:]
		case "-ca":
			ca, args = args[1], args[2:]
		default:
			ts.Fatalf("mkcert: unknown flag %s", args[0])
		}
	}
	if len(args) != 1 || neg {
		ts.Fatalf("usage: mkcert [-expired] [-bits N] [-ca PREFIX] PREFIX")
	}
	key, err := rsa.GenerateKey(rand.Reader, bits)
	ts.Check(err)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "guardctl test " + filepath.Base(args[0])},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  strings.Contains(args[0], "ca"),
	}
	if expired {
		tmpl.NotBefore, tmpl.NotAfter = now.AddDate(-11, 0, 0), now.AddDate(-1, 0, 0)
	}
	parent, signer := tmpl, any(key)
	if ca != "" {
		cb, _ := pem.Decode([]byte(ts.ReadFile(ca + ".crt")))
		kb, _ := pem.Decode([]byte(ts.ReadFile(ca + ".key")))
		parent, err = x509.ParseCertificate(cb.Bytes)
		ts.Check(err)
		signer, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
		ts.Check(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	ts.Check(err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	ts.Check(os.WriteFile(ts.MkAbs(args[0]+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
}

// snapshot DIR FILE writes every path under DIR with its mode and content
// hash to FILE, so that 'cmp' proves a failed command changed nothing.
func cmdSnapshot(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: snapshot DIR FILE")
	}
	root := ts.MkAbs(args[0])
	var lines []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		fi, _ := d.Info()
		line := fmt.Sprintf("%s %v", filepath.ToSlash(rel), fi.Mode())
		if d.Type().IsRegular() && d.Name() != ".lock" {
			data, _ := os.ReadFile(p)
			sum := sha256.Sum256(data)
			line += " " + hex.EncodeToString(sum[:8])
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(strings.Join(lines, "\n")+"\n"), 0o644))
}

// predict CHANGED guardctl ARGS... runs 'guardctl ARGS --dry-run -o json', checks
// that it wrote nothing under $WORK, then runs 'guardctl ARGS -o json' on
// the same inputs and checks that both reported the same "changed", and that
// it is CHANGED (true or false; for a batch, one per file, comma-separated).
// Both must exit 0.
func cmdPredict(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 || args[1] != "guardctl" || neg {
		ts.Fatalf("usage: predict CHANGED guardctl ARGS...")
	}
	tree := func() string {
		var lines []string
		root := ts.Getenv("WORK")
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Name() == ".lock" {
				return nil
			}
			fi, _ := d.Info()
			line := fmt.Sprintf("%s %v", p, fi.Mode())
			if d.Type().IsRegular() {
				data, _ := os.ReadFile(p)
				sum := sha256.Sum256(data)
				line += " " + hex.EncodeToString(sum[:])
			}
			lines = append(lines, line)
			return nil
		})
		return strings.Join(lines, "\n")
	}
	changed := func(out string) string {
		var one struct{ Changed *bool }
		if err := json.Unmarshal([]byte(out), &one); err == nil {
			if one.Changed == nil {
				ts.Fatalf("no \"changed\" in %s", out)
			}
			return strconv.FormatBool(*one.Changed)
		}
		var many []struct{ Changed *bool }
		ts.Check(json.Unmarshal([]byte(out), &many))
		var s []string
		for _, r := range many {
			if r.Changed == nil {
				ts.Fatalf("no \"changed\" in %s", out)
			}
			s = append(s, strconv.FormatBool(*r.Changed))
		}
		return strings.Join(s, ",")
	}
	before := tree()
	ts.Check(ts.Exec("guardctl", append(append([]string{}, args[2:]...), "--dry-run", "-o", "json")...))
	predicted := changed(ts.ReadFile("stdout"))
	if tree() != before {
		ts.Fatalf("guardctl %s --dry-run changed files", strings.Join(args[2:], " "))
	}
	ts.Check(ts.Exec("guardctl", append(append([]string{}, args[2:]...), "-o", "json")...))
	actual := changed(ts.ReadFile("stdout"))
	if predicted != actual {
		ts.Fatalf("--dry-run predicted changed=%s, the run reported changed=%s", predicted, actual)
	}
	if actual != args[0] {
		ts.Fatalf("changed=%s, want %s", actual, args[0])
	}
}

// perm FILE MODE checks a file's permission bits exactly.
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm FILE MODE")
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	if got := fi.Mode().Perm(); (got == fs.FileMode(want)) == neg {
		ts.Fatalf("%s has mode %04o; want %s%04o", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// mkpfx OUT PASSFILE KEY CERT... writes a PFX with exactly the key and
// certificates given, in that order, whether or not they belong together:
// files openssl refuses to make (a key that matches no certificate, a chain
// with the CA certificate first, as Windows may order it).
func cmdMkpfx(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 4 || neg {
		ts.Fatalf("usage: mkpfx OUT PASSFILE KEY CERT...")
	}
	pw := strings.TrimSpace(ts.ReadFile(args[1]))
	kb, _ := pem.Decode([]byte(ts.ReadFile(args[2])))
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	ts.Check(err)
	var certs []*x509.Certificate
	for _, f := range args[3:] {
		cb, _ := pem.Decode([]byte(ts.ReadFile(f)))
		c, err := x509.ParseCertificate(cb.Bytes)
		ts.Check(err)
		certs = append(certs, c)
	}
	out, err := pkcs12.Modern2023.Encode(key, certs[0], certs[1:], pw)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), out, 0o600))
}

// exits CODE PROG ARGS... runs PROG and checks its exit code exactly.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: exits CODE PROG ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if ee, ok := err.(*exec.ExitError); ok {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited %d; want %d", args[1], got, want)
	}
}

// requireScriptTools fails t under CI when a tool that a script in dir
// names in an [exec:TOOL] condition is missing: testscript's own exec:
// condition skips quietly, and CI must not. (The group conditions fail
// the scripts that use them under CI themselves.) Elsewhere the scripts'
// conditions skip what cannot run here.
func requireScriptTools(t *testing.T, dir string) {
	t.Helper()
	scripts, err := filepath.Glob(filepath.Join(dir, "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	execCond := regexp.MustCompile(`\[!?exec:([^\]\s]+)\]`)
	seen := map[string]bool{}
	for _, s := range scripts {
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range execCond.FindAllStringSubmatch(string(data), -1) {
			if seen[m[1]] {
				continue
			}
			seen[m[1]] = true
			ok, err := testenv.Condition(false, filepath.Base(s), m[1])
			if err != nil {
				t.Error(err)
			} else if !ok {
				t.Logf("%s is not installed: the script lines conditioned on [exec:%s] (first in %s) are skipped", m[1], m[1], filepath.Base(s))
			}
		}
	}
}

// swtpmTools are the [swtpm] condition's tools: the real swtpm, and the
// tpm2-tools and ss that testdata/tpm.sh drives it with.
var swtpmTools = []string{"swtpm", "swtpm_setup", "swtpm_ioctl", "tpm2_createprimary", "tpm2_evictcontrol",
	"tpm2_getcap", "tpm2_nvdefine", "tpm2_nvread", "tpm2_nvwrite", "tpm2_readpublic", "tpm2_load", "tpm2_createek",
	"tpm2_pcrextend", "tpm2_pcrreset", "tpm2_clear", "tpm2_flushcontext", "ss"}

// swtpmCondition is the [swtpm] condition: swtpm, swtpm-tools, tpm2-tools
// and ss (iproute2) are here, to make TPM state and read it back.
func swtpmCondition() (bool, error) {
	return testenv.Condition(false, "a real swtpm and tpm2-tools", swtpmTools...)
}

// loopCondition is the [loop] condition: root and losetup are here.
func loopCondition() (bool, error) {
	return testenv.Condition(true, "loop devices", "losetup")
}

// qemuCondition is the [qemu] condition: root, qemu-img (qemu-utils),
// qemu-storage-daemon (qemu-system-common) and fusermount3 (fuse3) are
// here, to read and write qcow2 images and serve them to swtpm through a
// FUSE export as Proxmox VE 9 does. Under CI their absence is an error.
func qemuCondition() (bool, error) {
	return testenv.Condition(true, "qcow2 TPM volumes", "qemu-img", "qemu-storage-daemon", "fusermount3")
}

// loopdev VAR FILE attaches FILE to a free loop device (losetup -f --show),
// sets VAR to the device and detaches it when the script ends.
func cmdLoopdev(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: loopdev VAR FILE")
	}
	if ok, err := loopCondition(); !ok {
		ts.Fatalf("loop devices need root and losetup (%v); scripts check [loop] first", err)
	}
	out, err := exec.Command("losetup", "-f", "--show", ts.MkAbs(args[1])).CombinedOutput()
	if err != nil {
		ts.Fatalf("losetup: %v\n%s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	ts.Defer(func() { exec.Command("losetup", "-d", dev).Run() })
	ts.Setenv(args[0], dev)
}

// holdexcl DEV opens the block device DEV with O_EXCL, as a mount or
// device-mapper holds a device, until the script ends.
func cmdHoldExcl(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: holdexcl DEV")
	}
	f, err := os.OpenFile(args[0], os.O_RDONLY|os.O_EXCL, 0)
	ts.Check(err)
	ts.Defer(func() { f.Close() })
}

// nobodyUID is the user the [nobody] scripts run guardctl as: the
// permission checks a store's owner meets are only real without root.
const nobodyUID = "65534"

// nobodyCondition is the [nobody] condition: root (to give a directory to
// user 65534) and setpriv are here.
func nobodyCondition() (bool, error) {
	return testenv.Condition(true, "running guardctl as another user", "setpriv")
}

// nobodydir VAR makes a directory owned by user 65534, in a directory
// everyone can reach (the script's own is private to root), with a copy of
// guardctl that user can run, and sets VAR to it. Both go when the script
// ends.
func cmdNobodyDir(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: nobodydir VAR")
	}
	if ok, err := nobodyCondition(); !ok {
		ts.Fatalf("running as another user needs root and setpriv (%v); scripts check [nobody] first", err)
	}
	top, err := os.MkdirTemp("", "guardctl-nobody-")
	ts.Check(err)
	ts.Defer(func() { os.RemoveAll(top) })
	ts.Check(os.Chmod(top, 0o755))
	exe, err := os.Executable()
	ts.Check(err)
	data, err := os.ReadFile(exe)
	ts.Check(err)
	ts.Check(os.WriteFile(filepath.Join(top, "guardctl"), data, 0o755))
	home := filepath.Join(top, "home")
	ts.Check(os.Mkdir(home, 0o700))
	uid, _ := strconv.Atoi(nobodyUID)
	ts.Check(os.Chown(home, uid, uid))
	ts.Setenv(args[0], home)
	ts.Setenv("NOBODY_GUARDCTL", filepath.Join(top, "guardctl"))
}

// nobody CODE guardctl ARGS... runs guardctl as user 65534, with no
// groups, and checks its exit code exactly (nobodydir comes first).
func cmdNobody(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || args[1] != "guardctl" || neg {
		ts.Fatalf("usage: nobody CODE guardctl ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	bin := ts.Getenv("NOBODY_GUARDCTL")
	if bin == "" {
		ts.Fatalf("nobody: run nobodydir first")
	}
	ts.Setenv(asMainEnv, "1")
	defer ts.Setenv(asMainEnv, "")
	err = ts.Exec("setpriv", append([]string{"--reuid=" + nobodyUID, "--regid=" + nobodyUID, "--clear-groups", "--", bin}, args[2:]...)...)
	got := 0
	if ee, ok := err.(*exec.ExitError); ok {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("nobody: %v", err)
	}
	if got != want {
		ts.Fatalf("guardctl as user %s exited %d; want %d", nobodyUID, got, want)
	}
}
