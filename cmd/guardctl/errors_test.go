package main

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/keyprotector"
)

// TestStoreDescription: with neither --store nor GUARDCTL_STORE, a "no
// guardian can unwrap" error says the store is the default, and names it.
func TestStoreDescription(t *testing.T) {
	t.Setenv("GUARDCTL_STORE", "")
	a := &app{}
	want := "the store " + certstore.DefaultSpec() + " (the default; --store or GUARDCTL_STORE names another)"
	if runtime.GOOS == "windows" {
		want = "Hyper-V's store (hyperv) (the default; --store or GUARDCTL_STORE names another)"
	}
	if got := a.storeDescription(); got != want {
		t.Errorf("storeDescription() = %q, want %q", got, want)
	}
	err := a.noAccessError(fmt.Errorf("vm.vtpm: %w", &keyprotector.Error{Kind: keyprotector.KindNoAccess, Msg: noAccessMsg + " can unwrap the key protector"}), true)
	code, hint := classify(err)
	if code != exitNoAccess || !strings.Contains(err.Error(), want) || !strings.Contains(hint, "'guardctl vtpm inspect vm.vtpm'") {
		t.Errorf("noAccessError: exit %d, %q, hint %q", code, err, hint)
	}
}
