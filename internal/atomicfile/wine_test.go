//go:build linux

package atomicfile

import (
	"strings"
	"testing"

	"github.com/guardctl/guardctl/internal/winetest"
)

// TestWindowsUnderWine runs this package's Windows test of private files in
// the Windows build, under Wine: they are written and read back through
// CreateExcl's CreateFile with a security descriptor. (Wine does not keep
// the DACL, so the test checks it only on real Windows.)
func TestWindowsUnderWine(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: Wine is slow to start")
	}
	winetest.Require(t)
	exe := winetest.Build(t, ".", true)
	res, err := winetest.New(t).Run(exe, []string{"-test.run", "^TestRestrict$", "-test.v"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "--- SKIP: TestRestrict") && !strings.Contains(res.Stdout, "--- PASS: TestRestrict") {
		t.Fatalf("under Wine: exit %d\n%s\n%s", res.ExitCode, res.Stdout, res.Stderr)
	}
}
