package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// printFile is the one file that may write guardctl's "guardctl: " prefix.
const printFile = "print.go"

// TestOnePlacePrints fails on any string literal beginning "guardctl: " in
// a non-test Go file of guardctl other than print.go: a note, warning or
// error goes through a.note, a.tell, a.warn, a.notice or printError, which
// add the prefix, so that every message is written one way.
func TestOnePlacePrints(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	scanned := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || name == printFile {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		scanned++
		for _, lit := range prefixLiterals(f) {
			t.Errorf("%s: %s types the \"guardctl: \" prefix; print it with a.note, a.tell, a.warn or message (%s)", fset.Position(lit.Pos()), lit.Value, printFile)
		}
	}
	// The scan must have seen the command files, or it proves nothing.
	if scanned < 10 {
		t.Fatalf("scanned %d files; run the test in cmd/guardctl", scanned)
	}
	if _, err := os.Stat(printFile); err != nil {
		t.Fatal(err)
	}
}

// prefixLiterals returns the string literals in f that begin "guardctl: ".
func prefixLiterals(f *ast.File) []*ast.BasicLit {
	var found []*ast.BasicLit
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "guardctl: ") {
			found = append(found, lit)
		}
		return true
	})
	return found
}

// TestOnePlacePrintsFinds: the scan finds a prefix typed in a file, raw or
// interpreted, with its line (the rule above cannot pass by finding
// nothing), and not a command named in a hint.
func TestOnePlacePrintsFinds(t *testing.T) {
	src := "package main\n\nfunc f() {\n\tprintln(`guardctl: x`)\n\tprintln(\"guardctl: warning: y\", \"'guardctl kp show'\")\n}\n"
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "bad.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, lit := range prefixLiterals(f) {
		found = append(found, fset.Position(lit.Pos()).String())
	}
	if strings.Join(found, " ") != "bad.go:4:10 bad.go:5:10" {
		t.Errorf("found %q", found)
	}
}

type textAndJSON struct {
	Name string `json:"name"`
	outcome
}

func (r textAndJSON) writeText(w io.Writer) error {
	_, err := io.WriteString(w, "Name: "+r.Name+"\n")
	return err
}

type jsonOnly struct {
	Name string `json:"name"`
	noText
}

// TestPrint: a result is its JSON with -o json, and its writeText with -o
// table; notes go to standard error with the prefix, and not with -o json;
// warnings in every mode.
func TestPrint(t *testing.T) {
	for _, tc := range []struct {
		output     string
		r          result
		out, notes string
	}{
		{"table", textAndJSON{Name: "a"}, "Name: a\n", "guardctl: did a\nguardctl: told\nguardctl: warning: careful\n"},
		{"json", textAndJSON{Name: "a"}, "{\n  \"name\": \"a\"\n}\n", "guardctl: told\nguardctl: warning: careful\n"},
		{"table", jsonOnly{Name: "b"}, "", "guardctl: did a\nguardctl: told\nguardctl: warning: careful\n"},
		{"json", jsonOnly{Name: "b"}, "{\n  \"name\": \"b\"\n}\n", "guardctl: told\nguardctl: warning: careful\n"},
	} {
		stderr, err := os.CreateTemp(t.TempDir(), "stderr")
		if err != nil {
			t.Fatal(err)
		}
		var stdout bytes.Buffer
		a := &app{output: tc.output, stdout: &stdout, stderr: stderr}
		a.note("did %s", "a")
		a.tell("told")
		a.warn("careful")
		if err := a.print(tc.r); err != nil {
			t.Fatal(err)
		}
		notes, _ := os.ReadFile(stderr.Name())
		stderr.Close()
		if stdout.String() != tc.out || string(notes) != tc.notes {
			t.Errorf("-o %s %T: stdout %q, stderr %q; want %q, %q", tc.output, tc.r, stdout.String(), notes, tc.out, tc.notes)
		}
	}
}

// TestPrintError: an error, its hint, and an interrupted prompt.
func TestPrintError(t *testing.T) {
	var w bytes.Buffer
	code := printError(&w, withHint(io.ErrUnexpectedEOF, exitExists, "do this"))
	if want := "guardctl: error: unexpected EOF\nguardctl: hint: do this\n"; code != exitExists || w.String() != want {
		t.Errorf("printError: %d %q, want %d %q", code, w.String(), exitExists, want)
	}
	w.Reset()
	message(&w, kindNotice, "a\nb")
	if w.String() != "guardctl: notice: a\nb\n" {
		t.Errorf("message: %q", w.String())
	}
}
