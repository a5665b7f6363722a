//go:build linux

package certstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/guardctl/guardctl/internal/winetest"
)

// TestWindowsSystemStoresUnderWine runs the Windows build of this
// package's tests under Wine: the SystemStores contract over the real
// crypt32 calls (Wine's), with export expected to fail clearly, and the
// HgsClient registry, which Wine has not (and then against a fake
// PowerShell).
func TestWindowsSystemStoresUnderWine(t *testing.T) {
	winetest.Require(t)
	exe := winetest.Build(t, ".", true)
	fake := winetest.Build(t, "./testdata/fakepowershell", false)
	p := winetest.New(t)
	start := time.Now()
	res, err := p.Run(exe, []string{"-test.run", "^(TestWindowsSystemStores|TestHgsRegistry|TestHgsRegistryProtocol)$", "-test.v", "-test.count=1"},
		[]string{"GUARDCTL_FAKE_POWERSHELL=Z:" + strings.ReplaceAll(fake, "/", `\`)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("under Wine in %v:\n%s%s", time.Since(start).Round(time.Millisecond), res.Stdout, res.Stderr)
	for _, want := range []string{"running under Wine", "ExportKey, as expected here", "--- PASS: TestWindowsSystemStores", "no HgsClient here", "--- PASS: TestHgsRegistry", "--- PASS: TestHgsRegistryProtocol"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("the output does not say %q", want)
		}
	}
	if res.ExitCode != 0 {
		t.Fatalf("exit code %d", res.ExitCode)
	}
}
