//go:build windows

package certstore_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/guardctl/guardctl/certstore"
)

// TestWindowsSystemStores runs the SystemStores contract over crypt32 and
// CNG, in two LocalMachine stores of its own (deleted at the end), never
// in Hyper-V's. It needs an elevated prompt on Windows; under Wine (run by
// TestWindowsSystemStoresUnderWine from Linux) private keys cannot be
// exported, and ExportKey must say so.
func TestWindowsSystemStores(t *testing.T) {
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	c := systemStoresCase{
		stores: certstore.NewWindowsSystemStores(),
		storeA: "guardctl test A " + id,
		storeB: "guardctl test B " + id,
		keyGone: func(store, tp string) func() bool {
			opens, err := certstore.KeyOpens(store, tp)
			if err != nil {
				t.Fatalf("finding the key of %s: %v", tp, err)
			}
			if !opens() {
				t.Fatalf("the key of %s does not open before Delete", tp)
			}
			return func() bool { return !opens() }
		},
	}
	t.Cleanup(func() {
		certstore.DeleteSystemStore(c.storeA)
		certstore.DeleteSystemStore(c.storeB)
	})
	if certstore.UnderWine() {
		t.Log("running under Wine")
		c.exportErr = func(err error) bool {
			return errors.Is(err, certstore.ErrKeyNotExportable) && strings.Contains(err.Error(), "Wine does not implement")
		}
	}
	testSystemStores(t, c)
}
