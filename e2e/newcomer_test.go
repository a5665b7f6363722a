//go:build unix

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// withoutTools returns a PATH of one directory holding a link to every
// program on PATH except those named: a machine without them.
func withoutTools(t *testing.T, missing ...string) string {
	t.Helper()
	dir := t.TempDir()
	skip := map[string]bool{}
	for _, m := range missing {
		skip[m] = true
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			link := filepath.Join(dir, e.Name())
			if skip[e.Name()] || e.IsDir() {
				continue
			}
			if _, err := os.Lstat(link); err == nil {
				continue // an earlier directory on PATH has it
			}
			if err := os.Symlink(filepath.Join(d, e.Name()), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, m := range missing {
		if _, err := os.Lstat(filepath.Join(dir, m)); err == nil {
			t.Fatalf("%s is still on the reduced PATH", m)
		}
	}
	return dir
}

// TestNewcomerWithoutTools (issue 21, item 6) runs tests that need
// keytool, certtool and ansible-doc on a PATH without them, as on a
// newcomer's machine: they pass, skipping what needs the missing tools and
// naming each; with CI=true the same run fails, naming them, as CI has
// every tool. The tests run are the script that drives keytool and
// certtool (TestScripts/pfx_producers, whose other producers still run),
// the script whose swtpm_setup needs certtool throughout
// (TestScripts/vtpm_libvirt_ekcert, skipped whole) and TestAnsibleDocs.
func TestNewcomerWithoutTools(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	goroot, err := exec.Command(goTool, "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	path := withoutTools(t, "keytool", "certtool", "ansible-doc")
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	run := func(ci string, pkg, pattern string) (string, error) {
		t.Helper()
		cmd := exec.Command(goTool, "test", "-count=1", "-v", "-run", pattern, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "PATH="+path, "GOROOT="+strings.TrimSpace(string(goroot)), "CI="+ci)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, c := range []struct {
		pkg, pattern string
		skipped      []string // what a newcomer's run says it skipped
		failed       []string // what the same run under CI says
	}{
		{
			"./cmd/guardctl", "^TestScripts$/^(pfx_producers|vtpm_libvirt_ekcert)$",
			[]string{"keytool is not installed: the script lines conditioned on [exec:keytool]",
				"certtool is not installed: the script lines conditioned on [exec:certtool]",
				"> [exec:keytool] exec keytool", "--- PASS: TestScripts/pfx_producers",
				"--- SKIP: TestScripts/vtpm_libvirt_ekcert", "certtool is not installed (swtpm_localca makes the EK certificate with it)"},
			[]string{"pfx_producers.txtar: keytool is not installed, and CI (CI=true) has it",
				"pfx_producers.txtar: certtool is not installed, and CI (CI=true) has it", "--- FAIL: TestScripts"},
		},
		{
			"./e2e", "^TestAnsibleDocs$",
			[]string{"--- SKIP: TestAnsibleDocs", "the Ansible collection's documentation: ansible-doc is not installed"},
			[]string{"--- FAIL: TestAnsibleDocs", "the Ansible collection's documentation: ansible-doc is not installed, and CI (CI=true) has it"},
		},
	} {
		out, err := run("", c.pkg, c.pattern)
		if err != nil {
			t.Errorf("go test %s -run %s without keytool, certtool and ansible-doc: %v\n%s", c.pkg, c.pattern, err, out)
		}
		for _, want := range c.skipped {
			if !strings.Contains(out, want) {
				t.Errorf("go test %s -run %s without the tools: no %q in\n%s", c.pkg, c.pattern, want, out)
			}
		}
		out, err = run("true", c.pkg, c.pattern)
		if err == nil {
			t.Errorf("go test %s -run %s without the tools passed under CI=true:\n%s", c.pkg, c.pattern, out)
		}
		for _, want := range c.failed {
			if !strings.Contains(out, want) {
				t.Errorf("go test %s -run %s under CI=true without the tools: no %q in\n%s", c.pkg, c.pattern, want, out)
			}
		}
	}
}
