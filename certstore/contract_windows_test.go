//go:build windows

package certstore_test

import (
	"errors"
	"os"
	"testing"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
)

// machineStoresEnv: on a real Windows machine the Store contract runs over
// Hyper-V's own store only where this is 1 (a disposable CI runner), since
// each case starts by emptying Shielded VM Local Certificates and
// "guardctl Removed Guardians" and unregistering every HgsClient guardian.
// Under Wine (a throwaway prefix, from TestContractUnderWine) it always
// runs.
const machineStoresEnv = "GUARDCTL_TEST_MACHINE_STORES"

func init() {
	if !certstore.UnderWine() && os.Getenv(machineStoresEnv) != "1" {
		return
	}
	impls = append(impls, impl{name: "hyperv-windows", open: openWindowsHyperV, probe: func() caps {
		_, err := certstore.NewHgsRegistry().List()
		return caps{noExport: certstore.UnderWine(), noHgs: errors.Is(err, certstore.ErrNoHgsClient)}
	}})
}

// openWindowsHyperV is Hyper-V's store over crypt32, CNG and HgsClient,
// emptied first.
func openWindowsHyperV(t *testing.T) (certstore.Store, breaker) {
	stores, reg := certstore.NewWindowsSystemStores(), certstore.NewHgsRegistry()
	if regs, err := reg.List(); err == nil {
		for _, r := range regs {
			must(t, reg.Unregister(r.Name))
		}
	}
	for _, st := range []string{certstore.ShieldedVMStore, certstore.TrashStore} {
		certs, err := stores.List(st)
		must(t, err)
		for _, c := range certs {
			must(t, stores.Delete(st, guardian.Thumbprint(c.Cert), true))
		}
	}
	// Not t.TempDir: under Wine, Go's RemoveAll fails ("Invalid
	// function"), and a failed cleanup fails the test.
	state, err := os.MkdirTemp("", "guardctl-hyperv-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(state) })
	return certstore.NewHyperV(stores, reg, state), windowsBreaker{stores}
}

type windowsBreaker struct{ stores certstore.SystemStores }

// dropKey deletes the signing key and puts the certificate back without
// one, as an import that lost it leaves it.
func (b windowsBreaker) dropKey(t *testing.T, s certstore.Store, name string) {
	e, err := s.Get(name)
	must(t, err)
	must(t, b.stores.Delete(certstore.ShieldedVMStore, guardian.Thumbprint(e.Guardian.Signing), true))
	must(t, b.stores.Add(certstore.ShieldedVMStore, e.Guardian.Signing, nil))
}

func (b windowsBreaker) dropCerts(t *testing.T, s certstore.Store, name string) {
	e, err := s.Get(name)
	must(t, err)
	must(t, b.stores.Delete(certstore.ShieldedVMStore, guardian.Thumbprint(e.Guardian.Signing), false))
	must(t, b.stores.Delete(certstore.ShieldedVMStore, guardian.Thumbprint(e.Guardian.Encryption), false))
}
