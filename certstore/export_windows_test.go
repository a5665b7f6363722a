//go:build windows

package certstore

import (
	"unsafe"

	"golang.org/x/sys/windows"
)

// For the tests in certstore_test.

var (
	NewWindowsSystemStores = newWindowsSystemStores
	NewHgsRegistry         = newHgsRegistry
	UnderWine              = underWine
)

var procCertUnregisterSystemStore = crypt32.NewProc("CertUnregisterSystemStore")

// DeleteSystemStore deletes a LocalMachine system store a test made
// (CertUnregisterSystemStore with CERT_STORE_DELETE_FLAG).
func DeleteSystemStore(name string) error {
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return err
	}
	const certStoreDeleteFlag = 0x10
	r, _, e := procCertUnregisterSystemStore.Call(uintptr(unsafe.Pointer(p)), windows.CERT_SYSTEM_STORE_LOCAL_MACHINE|certStoreDeleteFlag)
	if r == 0 {
		return e
	}
	return nil
}

// KeyOpens returns a function that reports whether the private key that
// the certificate tp in store links to now still opens.
func KeyOpens(store, tp string) (func() bool, error) {
	h, err := openExisting(store, tp)
	if err != nil {
		return nil, err
	}
	defer closeStore(h)
	ctx, err := find(h, store, tp)
	if err != nil {
		return nil, err
	}
	defer windows.CertFreeCertificateContext(ctx)
	ref, _, err := keyRefOf(ctx)
	if err != nil {
		return nil, err
	}
	return func() bool {
		k, spec, err := openKey(ref, false)
		if err != nil {
			return false
		}
		freeKey(k, spec)
		return true
	}, nil
}

// UsePowerShell makes the HgsClient registry run exe instead of Windows
// PowerShell until the test ends.
func UsePowerShell(t interface{ Cleanup(func()) }, exe string) {
	old := powershellPath
	powershellPath = func() string { return exe }
	t.Cleanup(func() { powershellPath = old })
}
