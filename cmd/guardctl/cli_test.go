package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runIn runs one guardctl command line in this process, with files for its
// standard output and error, and returns what it wrote and its exit code.
func runIn(t *testing.T, args ...string) (stdout, stderr string, code int) {
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
	code = a.execute(append([]string{"--store", filepath.Join(dir, "store")}, args...))
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
