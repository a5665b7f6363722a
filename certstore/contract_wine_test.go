//go:build linux

package certstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/guardctl/guardctl/internal/winetest"
)

// TestContractUnderWine runs the Store contract over Hyper-V's store on
// the real Windows interfaces (crypt32, and HgsClient, which Wine has not),
// in the Windows build under Wine: every case, with the keys held but not
// exportable and the names not registered, as Wine allows.
func TestContractUnderWine(t *testing.T) {
	winetest.Require(t)
	exe := winetest.Build(t, ".", true)
	start := time.Now()
	res, err := winetest.New(t).Run(exe, []string{"-test.run", "^TestContract$/^hyperv-windows$", "-test.v", "-test.count=1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("under Wine in %v", time.Since(start).Round(time.Millisecond))
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "--- PASS: TestContract/hyperv-windows") {
		t.Fatalf("exit code %d:\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	if n := strings.Count(res.Stdout, "    --- PASS: TestContract/hyperv-windows/"); n < len(contract) {
		t.Errorf("%d of %d cases passed:\n%s", n, len(contract), res.Stdout)
	}
}
