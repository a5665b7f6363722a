//go:build unix

package e2e

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/hypervfake"
)

// TestKillHyperVRemoveRestore kills guardian remove and restore on Hyper-V's
// store (over the fake of Windows, whose every change is one atomic write,
// as each Windows call is) at random moments. Whatever the moment, no
// certificate or key is lost (each certificate is in exactly one of the two
// stores, both keys exist), and 'guardian restore' brings the guardian back
// whole and registered (or, once an interrupted restore has dropped its
// trash record, 'store check --repair' does).
func TestKillHyperVRemoveRestore(t *testing.T) {
	dir := t.TempDir()
	machine := filepath.Join(dir, "windows.json")
	t.Setenv(fakeWindowsEnv, machine)
	w, err := hypervfake.Open(machine)
	if err != nil {
		t.Fatal(err)
	}
	g, err := guardian.Generate(guardian.GenerateOptions{Name: "UntrustedGuardian", Host: "H"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Install("UntrustedGuardian", g); err != nil {
		t.Fatal(err)
	}
	tps := []string{guardian.Thumbprint(g.Signing), guardian.Thumbprint(g.Encryption)}
	slices.Sort(tps)
	const store = certstore.HyperVSpec
	whole := func(w *hypervfake.Windows) bool {
		regs := w.Registrations()
		return slices.Equal(w.Certificates(certstore.ShieldedVMStore), tps) && len(regs) == 1 &&
			regs[0].Name == "UntrustedGuardian" && regs[0].SigningThumbprint == guardian.Thumbprint(g.Signing)
	}
	check := func(i int, what string) {
		t.Helper()
		w, err := hypervfake.Open(machine)
		if err != nil {
			t.Fatal(err)
		}
		live, trash := w.Certificates(certstore.ShieldedVMStore), w.Certificates(certstore.TrashStore)
		for _, tp := range tps {
			if slices.Contains(live, tp) == slices.Contains(trash, tp) {
				t.Fatalf("run %d (%s): certificate %s is in %v and %v", i, what, tp, live, trash)
			}
		}
		if w.Keys() != 2 {
			t.Fatalf("run %d (%s): %d keys left of 2", i, what, w.Keys())
		}
		if whole(w) {
			return
		}
		// An interrupted remove is finished by restore, which takes the
		// trash record; once an interrupted restore has dropped it, store
		// check --repair registers the name.
		if _, _, c := runGuardctl(t, store, "guardian", "restore", "UntrustedGuardian"); c != 0 {
			if _, e, c := runGuardctl(t, store, "store", "check", "--repair"); c != 0 {
				t.Fatalf("run %d (%s): neither restore nor store check --repair: exit %d: %s", i, what, c, e)
			}
		}
		if w, _ = hypervfake.Open(machine); !whole(w) {
			t.Fatalf("run %d (%s): restore did not bring the guardian back whole: %v, %+v", i, what, w.Certificates(certstore.ShieldedVMStore), w.Registrations())
		}
	}
	remove := func() []string { return []string{"guardian", "remove", "UntrustedGuardian", "--yes"} }
	d := timeOf(t, guardctlCmd(t, store, remove()...))
	check(-1, "remove")
	n := max(crashIterations(t)/4, 1)
	for i := range n {
		runOrKill(t, guardctlCmd(t, store, remove()...), d)
		check(i, "remove")
		mustGuardctl(t, store, remove()...)
		runOrKill(t, guardctlCmd(t, store, "guardian", "restore", "UntrustedGuardian"), d)
		check(i, "restore")
	}
	var v guardianView
	out := mustGuardctl(t, store, "guardian", "show", "UntrustedGuardian", "-o", "json")
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Status != "ok" || !v.HasPrivateKeys {
		t.Errorf("after the kills: %v\n%s", err, out)
	}
}
