//go:build linux

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/internal/winetest"
)

// TestHyperVStoreUnderWine drives the Windows build of guardctl under Wine
// with --store hyperv: a guardian made and exported by the Linux build is
// imported into Wine's LocalMachine "Shielded VM Local Certificates" (found
// with wine reg query where Windows keeps it), listed, removed and
// restored. Wine has no HgsClient, so import says the name was not
// registered; and it cannot export private keys, so export fails with a
// clear error and exit code 1, never a crash.
func TestHyperVStoreUnderWine(t *testing.T) {
	winetest.Require(t)
	start := time.Now()
	exe := winetest.Build(t, filepath.Join(repoRoot, "cmd", "guardctl"), false)
	built := time.Since(start)
	p := winetest.New(t)
	ready := time.Since(start)

	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	pfxDir := filepath.Join(dir, "pfx")
	pwFile := filepath.Join(dir, "password")
	b := make([]byte, 18)
	rand.Read(b)
	password := hex.EncodeToString(b)
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Made and exported on Linux.
	mustGuardctl(t, store, "guardian", "create", "UntrustedGuardian", "--host", "OLDHOST")
	mustGuardctl(t, store, "guardian", "export", "UntrustedGuardian", "--dir", pfxDir, "--password-file", pwFile)
	var made guardianView
	if err := json.Unmarshal([]byte(mustGuardctl(t, store, "guardian", "show", "UntrustedGuardian", "-o", "json")), &made); err != nil {
		t.Fatal(err)
	}
	tps := []string{made.Signing.Thumbprint, made.Encryption.Thumbprint}

	// winPath is a Linux path as the Windows build sees it (Wine's Z:).
	winPath := func(path string) string { return "Z:" + strings.ReplaceAll(path, "/", `\`) }
	// win runs guardctl.exe under Wine on Hyper-V's store.
	win := func(env []string, args ...string) winetest.Result {
		t.Helper()
		res, err := p.Run(exe, append([]string{"--no-input"}, args...), append([]string{"GUARDCTL_STORE=hyperv"}, env...), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, crash := range []string{"panic:", "goroutine ", "fatal error"} {
			if strings.Contains(res.Stderr, crash) {
				t.Fatalf("guardctl %s crashed under Wine:\n%s", strings.Join(args, " "), res.Stderr)
			}
		}
		return res
	}
	mustWin := func(env []string, args ...string) winetest.Result {
		t.Helper()
		res := win(env, args...)
		if res.ExitCode != 0 {
			t.Fatalf("guardctl %s under Wine: exit %d\n%s%s", strings.Join(args, " "), res.ExitCode, res.Stdout, res.Stderr)
		}
		return res
	}
	// registry lists the thumbprints under the store's registry key, where
	// Windows (and Wine) keep a system store's certificates.
	registry := func(store string) string {
		t.Helper()
		out, err := p.Command(t.Context(), "wine", "reg", "query", `HKLM\Software\Microsoft\SystemCertificates\`+store+`\Certificates`).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "unable to find") {
			t.Fatalf("wine reg query %s: %v\n%s", store, err, out)
		}
		return strings.ToUpper(string(out))
	}
	wantInRegistry := func(store string, want bool) {
		t.Helper()
		reg := registry(store)
		for _, tp := range tps {
			if strings.Contains(reg, `\`+tp) != want {
				t.Fatalf("thumbprint %s in the registry under %s: %v, want %v\n%s", tp, store, !want, want, reg)
			}
		}
	}
	const shielded = "Shielded VM Local Certificates"

	// Import: both certificates in the store, and the notice that the name
	// is not registered (no HgsClient under Wine). The password comes from
	// a file, never from the command line.
	res := mustWin(nil, "guardian", "import", "UntrustedGuardian", "--dir", winPath(pfxDir), "--password-file", winPath(pwFile))
	if !strings.Contains(res.Stderr, "not registered") || strings.Count(res.Stderr, "not registered") != 1 {
		t.Fatalf("import under Wine: want one notice that the name was not registered, got:\n%s", res.Stderr)
	}
	wantInRegistry(shielded, true)

	res = mustWin(nil, "guardian", "list", "-o", "json")
	var views []guardianView
	if err := json.Unmarshal([]byte(res.Stdout), &views); err != nil {
		t.Fatalf("guardian list -o json under Wine: %v\n%s", err, res.Stdout)
	}
	if len(views) != 1 || views[0].Name != "UntrustedGuardian" || views[0].Signing == nil || views[0].Encryption == nil ||
		views[0].Signing.Thumbprint != tps[0] || views[0].Encryption.Thumbprint != tps[1] {
		t.Fatalf("guardian list under Wine: %s; want UntrustedGuardian with %v", res.Stdout, tps)
	}
	t.Logf("under Wine, the imported guardian lists as: status %q, problem %q, warning %q", views[0].Status, views[0].Problem, views[0].Warning)

	// Export: Wine cannot export private keys; a clear error, exit 1, and
	// no file left behind. The password comes from the environment.
	outDir := filepath.Join(dir, "out")
	res = win([]string{"GUARDCTL_PASSWORD=" + password}, "guardian", "export", "UntrustedGuardian", "--dir", winPath(outDir))
	if res.ExitCode != 1 || !strings.Contains(res.Stderr, "guardctl: error:") || !strings.Contains(res.Stderr, "cannot be exported") {
		t.Fatalf("export under Wine: exit %d, want 1 with a clear error:\n%s", res.ExitCode, res.Stderr)
	}
	if strings.Contains(res.Stderr, password) || strings.Contains(res.Stdout, password) {
		t.Fatal("the password appears in guardctl's output")
	}
	if files, _ := filepath.Glob(filepath.Join(outDir, "*")); len(files) != 0 {
		t.Fatalf("a failed export left %v", files)
	}
	t.Logf("export under Wine, as expected: exit %d: %s", res.ExitCode, strings.TrimSpace(res.Stderr))

	// Remove moves both certificates, with their keys, to guardctl's
	// trash store; restore brings them back.
	mustWin(nil, "--yes", "guardian", "remove", "UntrustedGuardian")
	wantInRegistry(shielded, false)
	wantInRegistry(certstore.TrashStore, true)
	mustWin(nil, "guardian", "restore", "UntrustedGuardian")
	wantInRegistry(shielded, true)
	wantInRegistry(certstore.TrashStore, false)
	// Hyper-V's store is the default on Windows.
	res = mustWin([]string{"GUARDCTL_STORE="}, "guardian", "list", "-o", "json")
	if !strings.Contains(res.Stdout, tps[0]) || !strings.Contains(res.Stdout, tps[1]) {
		t.Fatalf("guardian list (default store) after restore: %s", res.Stdout)
	}
	t.Logf("Wine: guardctl.exe built in %v, prefix ready at %v (template %v), whole test %v",
		built.Round(time.Millisecond), ready.Round(time.Millisecond), winetest.TemplateTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
