package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
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

// TestCLIErrorUnwraps: a cliError keeps the error it was made from, so
// errors.Is and errors.As see the cause through a hint, while its own exit
// code and hint still decide how guardctl exits.
func TestCLIErrorUnwraps(t *testing.T) {
	cause := &guardian.Error{Kind: guardian.KindPassword, Msg: "wrong password"}
	err := fmt.Errorf("a.pfx: %w", withHint(cause, exitUsage, "the hint"))
	var ge *guardian.Error
	if !errors.As(err, &ge) || ge != cause {
		t.Errorf("errors.As through withHint: %v", ge)
	}
	if code, hint := classify(err); code != exitUsage || hint != "the hint" {
		t.Errorf("classify = %d %q, want the cliError's %d %q", code, hint, exitUsage, "the hint")
	}
	if !errors.Is(withHint(certstore.ErrExists, exitExists, "h"), certstore.ErrExists) {
		t.Error("errors.Is does not see certstore.ErrExists through withHint")
	}

	_, statErr := os.Stat(filepath.Join(t.TempDir(), "missing.pfx"))
	oe := openError("missing.pfx", statErr)
	if !errors.Is(oe, fs.ErrNotExist) {
		t.Errorf("openError(%v) does not wrap fs.ErrNotExist", statErr)
	}
	if code, _ := classify(oe); code != exitNotFound || oe.Error() != "missing.pfx: no such file" {
		t.Errorf("openError: exit %d, %q", code, oe)
	}
	if errors.Unwrap(usageError("x")) != nil {
		t.Error("usageError has a cause")
	}

	// A "no access" error that already has its hint is left as it is
	// (execute calls noAccessError on every error), and inFile and
	// fileError keep the cliError rather than the cause they can see.
	a := &app{}
	noAccess := &keyprotector.Error{Kind: keyprotector.KindNoAccess, Msg: noAccessMsg + " can unwrap the key protector"}
	hinted := withHint(noAccess, exitNoAccess, "own hint")
	if got := a.noAccessError(hinted, false); got != hinted {
		t.Errorf("noAccessError rewrote a cliError: %v", got)
	}
	named := a.noAccessError(fmt.Errorf("vm.kp: %w", noAccess), false)
	if again := a.noAccessError(named, false); again != named {
		t.Errorf("noAccessError twice: %q, then %q", named, again)
	}
	if !errors.As(named, new(*keyprotector.Error)) {
		t.Error("noAccessError's error does not wrap the keyprotector.Error")
	}
	if _, hint := classify(inFile("f", hinted)); hint != "own hint" {
		t.Errorf("inFile lost the hint: %q", hint)
	}
	if _, hint := classify(fileError("f", hinted)); hint != "own hint" {
		t.Errorf("fileError lost the hint: %q", hint)
	}
}
