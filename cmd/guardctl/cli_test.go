package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runIn runs one guardctl command line in this process, with files for its
// standard output and error, and returns what it wrote and its exit code.
func runIn(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runInStore(t, filepath.Join(t.TempDir(), "store"), args...)
}

// runInStore is runIn on the store in dir store.
func runInStore(t *testing.T, store string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	dir := t.TempDir()
	o, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	e, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	in, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	a := &app{stdin: in, stdout: o, stderr: e}
	code = a.execute(append([]string{"--store", store}, args...))
	ob, _ := os.ReadFile(o.Name())
	eb, _ := os.ReadFile(e.Name())
	return string(ob), string(eb), code
}

// commandGroups returns every command that has subcommands, root included.
func commandGroups(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	if c.HasSubCommands() {
		out = append(out, c)
	}
	for _, sub := range c.Commands() {
		out = append(out, commandGroups(sub)...)
	}
	return out
}

// TestUnknownCommands walks every command group: a misspelled command
// exits 2 with "did you mean" on a line of its own, an unknown one exits 2,
// and the group alone shows its help and exits 0.
func TestUnknownCommands(t *testing.T) {
	root := newRootCmd(&app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	groups := commandGroups(root)
	if len(groups) < 6 { // guardctl, guardian, keyprotector, vtpm, store, completion
		t.Fatalf("only %d command groups", len(groups))
	}
	for _, g := range groups {
		path := strings.Fields(g.CommandPath())[1:]
		var sub string
		for _, c := range g.Commands() {
			if c.IsAvailableCommand() && len(c.Name()) >= 4 {
				sub = c.Name()
				break
			}
		}
		if sub == "" {
			t.Errorf("%s: no command to misspell", g.CommandPath())
			continue
		}
		typo := sub + "x" // one letter too many
		_, errOut, code := runIn(t, append(path, typo, "ARG")...)
		if code != exitUsage {
			t.Errorf("%s %s: exit %d, want %d\n%s", g.CommandPath(), typo, code, exitUsage, errOut)
		}
		want := "guardctl: hint: did you mean '" + strings.Join(append([]string{"guardctl"}, path...), " ")
		if !strings.Contains(errOut, "\n"+want) || !strings.Contains(errOut, " "+sub+"'") {
			t.Errorf("%s %s: no line %q…%s:\n%s", g.CommandPath(), typo, want, sub, errOut)
		}
		_, errOut, code = runIn(t, append(path, "zzqqxx", "--no-such-flag")...)
		if code != exitUsage || !strings.Contains(errOut, `unknown command "zzqqxx"`) {
			t.Errorf("%s zzqqxx: exit %d, want %d\n%s", g.CommandPath(), code, exitUsage, errOut)
		}
		_, errOut, code = runIn(t, append([]string{"help"}, append(path, "zzqqxx")...)...)
		if code != exitUsage {
			t.Errorf("help %s zzqqxx: exit %d, want %d\n%s", g.CommandPath(), code, exitUsage, errOut)
		}
		out, errOut, code := runIn(t, path...)
		if code != exitOK || !strings.Contains(out, "Available Commands:") {
			t.Errorf("%s alone: exit %d, want its help and 0\n%s%s", g.CommandPath(), code, out, errOut)
		}
	}
	// An alias is answered as it was typed.
	if _, errOut, _ := runIn(t, "kp", "grnat", "x.kp", "--guardian", "new", "--yes"); !strings.Contains(errOut, "\nguardctl: hint: did you mean 'guardctl kp grant'?\n") {
		t.Errorf("kp grnat:\n%s", errOut)
	}
}

// TestVersion: version and version -o json, the release flags first, then
// what Go recorded in the build.
func TestVersion(t *testing.T) {
	out, errOut, code := runIn(t, "version", "-o", "json")
	if code != 0 {
		t.Fatalf("version -o json: exit %d\n%s", code, errOut)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("version -o json: %v\n%s", err, out)
	}
	if v.Version == "" || v.GoVersion != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("version -o json: %+v", v)
	}
	out, _, code = runIn(t, "version")
	if code != 0 || !regexp.MustCompile(`(?m)^guardctl: +\S+\nCommit: +\S+.*\nDate: +\S+\nGo: +go`).MatchString(out) {
		t.Errorf("version: exit %d\n%s", code, out)
	}
	if out, _, _ := runIn(t, "--version"); !strings.HasPrefix(out, "guardctl version "+v.Version+"\n") {
		t.Errorf("--version: %q", out)
	}

	bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	got := versionFrom(bi)
	if got.Version != "v1.2.3" || got.Commit != "0123abcd" || got.Date != "2026-01-02T03:04:05Z" || !got.Modified || got.GoVersion != "go1.99.1" {
		t.Errorf("from the build info: %+v", got)
	}
	bi.Main.Version = "(devel)"
	if got := versionFrom(bi); got.Version != "dev" {
		t.Errorf("a source build: version %q, want dev", got.Version)
	}
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "1.4.0", "feedface", "2026-03-04T00:00:00Z"
	if got := versionFrom(bi); got.Version != "1.4.0" || got.Commit != "feedface" || got.Date != "2026-03-04T00:00:00Z" {
		t.Errorf("release flags do not come first: %+v", got)
	}
}

// TestCompletion asks for completions as the shells do (cobra's hidden
// __complete command): guardian names after positional arguments, the
// kinds of file each argument is, nothing where nothing fits.
func TestCompletion(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	for _, n := range []string{"alpha", "beta"} {
		if _, e, code := runInStore(t, store, "guardian", "create", n, "--host", "h"); code != 0 {
			t.Fatal(e)
		}
	}
	const (
		noFile = ":4"
		ext    = ":8"
	)
	for _, tc := range []struct {
		args []string
		want []string // the completions, then the directive
	}{
		{[]string{"kp", "grant", "vm1.kp", "--guardian", ""}, []string{"alpha", "beta", noFile}},
		{[]string{"kp", "revoke", "a.kp", "b.kp", "--guardian", "b"}, []string{"alpha", "beta", noFile}},
		{[]string{"vtpm", "wrap", "/var/lib/libvirt/swtpm/x/tpm2", "--owner", ""}, []string{"alpha", "beta", noFile}},
		{[]string{"vtpm", "wrap", "state", "--owner", "alpha", "--guardian", ""}, []string{"alpha", "beta", noFile}},
		{[]string{"kp", "new", "--owner", ""}, []string{"alpha", "beta", noFile}},
		{[]string{"guardian", "show", ""}, []string{"alpha", "beta", noFile}},
		{[]string{"guardian", "show", "alpha", ""}, []string{noFile}},
		{[]string{"kp", "show", ""}, []string{"kp", ext}},
		{[]string{"kp", "show", "a.kp", ""}, []string{noFile}},
		{[]string{"kp", "grant", "a.kp", ""}, []string{"kp", ext}},
		{[]string{"kp", "unwrap", ""}, []string{"kp", ext}},
		{[]string{"kp", "new", "--owner", "alpha", "--out", ""}, []string{"kp", ext}},
		{[]string{"vtpm", "inspect", ""}, []string{"vtpm", ext}},
		{[]string{"vtpm", "revoke", ""}, []string{"vtpm", ext}},
		{[]string{"vtpm", "wrap", "state", "--out", ""}, []string{"vtpm", ext}},
		{[]string{"guardian", "import", "x", "--signing", ""}, []string{"pfx", "p12", ext}},
	} {
		out, errOut, code := runInStore(t, store, append([]string{"__complete"}, tc.args...)...)
		if code != 0 {
			t.Errorf("%v: exit %d\n%s", tc.args, code, errOut)
			continue
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if c := strings.SplitN(l, "\t", 2)[0]; !strings.HasPrefix(c, "--") { // cobra offers required flags too
				got = append(got, c)
			}
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%v: completes %q, want %q", tc.args, got, tc.want)
		}
	}
}
