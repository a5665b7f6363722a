package winetest

import (
	"strings"
	"testing"
	"time"
)

// TestRun runs a Go program built for Windows under Wine: it starts (the
// ProcessPrng stub works, crypto/rand included), and its arguments,
// environment, standard input, output and exit code all pass through.
func TestRun(t *testing.T) {
	Require(t)
	exe := Build(t, "./testdata/echo", false)
	start := time.Now()
	p := New(t)
	t.Logf("prefix ready in %v (template %v)", time.Since(start), TemplateTime)
	start = time.Now()
	res, err := p.Run(exe, []string{"a b", `c"d`, ""}, []string{"WINETEST_ECHO=value", "WINETEST_EXIT=7"}, []byte("from stdin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first run %v", time.Since(start))
	want := "args=[\"a b\" \"c\\\"d\" \"\"]\nenv=value\nstdin=from stdin\n"
	if res.Stdout != want || res.ExitCode != 7 || !strings.Contains(res.Stderr, "to stderr") {
		t.Fatalf("got stdout %q, stderr %q, exit code %d; want stdout %q, exit code 7", res.Stdout, res.Stderr, res.ExitCode, want)
	}
	start = time.Now()
	res, err = p.Run(exe, nil, nil, nil)
	if err != nil || res.ExitCode != 0 || res.Stdout != "args=[]\nenv=\nstdin=\n" {
		t.Fatalf("without args, env or stdin: %+v, %v", res, err)
	}
	t.Logf("second run %v", time.Since(start))
}
