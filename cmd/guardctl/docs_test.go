package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manDate is the date the man pages carry. It is fixed so that the
// generated pages depend on the command tree alone; change it with a
// release that changes them.
var manDate = time.Date(2026, time.November, 1, 0, 0, 0, 0, time.UTC)

// genReference writes the man pages (dir/man) and the Markdown command
// reference (dir/reference) of the command tree.
func genReference(t *testing.T, dir string) {
	t.Helper()
	// Flag defaults that come from the environment are left out.
	t.Setenv("GUARDCTL_STORE", "")
	root := newRootCmd(&app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	var noTag func(c *cobra.Command)
	noTag = func(c *cobra.Command) {
		c.DisableAutoGenTag = true // no "generated on DATE" line
		for _, s := range c.Commands() {
			noTag(s)
		}
	}
	noTag(root)
	for _, d := range []string{"man", "reference"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	header := &doc.GenManHeader{Title: "GUARDCTL", Section: "1", Source: "guardctl", Manual: "guardctl manual", Date: &manDate}
	if err := doc.GenManTree(root, header, filepath.Join(dir, "man")); err != nil {
		t.Fatal(err)
	}
	if err := doc.GenMarkdownTree(root, filepath.Join(dir, "reference")); err != nil {
		t.Fatal(err)
	}
}

// TestReferenceDocs fails when the committed man pages (docs/man) or
// Markdown reference (docs/reference) differ from what the command tree
// generates. 'make docs' (GUARDCTL_UPDATE_DOCS=1) writes them anew.
func TestReferenceDocs(t *testing.T) {
	docs, err := filepath.Abs("../../docs")
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("GUARDCTL_UPDATE_DOCS") == "1" {
		for _, d := range []string{"man", "reference"} {
			if err := os.RemoveAll(filepath.Join(docs, d)); err != nil {
				t.Fatal(err)
			}
		}
		genReference(t, docs)
		return
	}
	fresh := t.TempDir()
	genReference(t, fresh)
	for _, d := range []string{"man", "reference"} {
		want := readTree(t, filepath.Join(fresh, d))
		got := readTree(t, filepath.Join(docs, d))
		if len(want) < 20 {
			t.Fatalf("only %d files generated in %s", len(want), d)
		}
		var names []string
		for n := range want {
			names = append(names, n)
		}
		for n := range got {
			if _, ok := want[n]; !ok {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		for _, n := range names {
			switch w, g := want[n], got[n]; {
			case g == nil:
				t.Errorf("docs/%s/%s is missing", d, n)
			case w == nil:
				t.Errorf("docs/%s/%s is for a command that no longer exists", d, n)
			case !bytes.Equal(w, g):
				t.Errorf("docs/%s/%s is out of date", d, n)
			}
		}
	}
	if t.Failed() {
		t.Log("the command tree changed: run 'make docs' and commit docs/man and docs/reference")
	}
}

// readTree reads every file of dir by name.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	des, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[de.Name()] = b
	}
	return out
}

// TestConfirmingCommands: the README's two lists of the commands that need
// --yes without a terminal name exactly the commands marked asksToConfirm
// (and confirm refuses to ask in any other).
func TestConfirmingCommands(t *testing.T) {
	var marked []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Annotations[confirmsAnnotation] != "" {
			name := strings.TrimPrefix(c.CommandPath(), "guardctl ")
			marked = append(marked, strings.Replace(name, "keyprotector ", "kp ", 1))
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRootCmd(&app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
	slices.Sort(marked)
	if len(marked) == 0 {
		t.Fatal("no command is marked asksToConfirm")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(readme)), " ")
	lists := regexp.MustCompile(`(?:these commands ask for confirmation and so need `+"`--yes`"+`: ([^;]*);|Without a terminal \(or with `+"`--no-input`"+`\), ([^.]*) need `+"`--yes`"+`\.)`).FindAllStringSubmatch(text, -1)
	if len(lists) != 2 {
		t.Fatalf("found %d of the README's 2 lists of commands that need --yes", len(lists))
	}
	for _, l := range lists {
		var named []string
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(l[1]+l[2], -1) {
			named = append(named, m[1])
		}
		slices.Sort(named)
		if !slices.Equal(named, marked) {
			t.Errorf("the README lists %q as needing --yes; the commands that ask are %q", named, marked)
		}
	}
}
