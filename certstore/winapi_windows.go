//go:build windows

package certstore

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"unsafe"

	"github.com/guardctl/guardctl/guardian"
	"golang.org/x/sys/windows"
)

// SystemStores over crypt32 and CNG. Certificates live in LocalMachine
// system stores (registry-backed, keyed by SHA-1 thumbprint); a
// certificate names its private key through its CERT_KEY_PROV_INFO_PROP_ID
// property (provider, container, machine or user), and the key itself
// lives in that provider, apart from the certificate. Secrets never leave
// the process: keys go in and out as PFX blobs in memory, under a random
// password that exists only in memory.

// What golang.org/x/sys/windows does not declare.
var (
	crypt32                               = windows.NewLazySystemDLL("crypt32.dll")
	procCertGetCertificateContextProperty = crypt32.NewProc("CertGetCertificateContextProperty")
	procCertSetCertificateContextProperty = crypt32.NewProc("CertSetCertificateContextProperty")
	procCertControlStore                  = crypt32.NewProc("CertControlStore")
	procPFXExportCertStoreEx              = crypt32.NewProc("PFXExportCertStoreEx")

	advapi32            = windows.NewLazySystemDLL("advapi32.dll")
	procCryptImportKey  = advapi32.NewProc("CryptImportKey")
	procCryptDestroyKey = advapi32.NewProc("CryptDestroyKey")

	ncrypt                               = windows.NewLazySystemDLL("ncrypt.dll")
	procNCryptOpenStorageProvider        = ncrypt.NewProc("NCryptOpenStorageProvider")
	procNCryptOpenKey                    = ncrypt.NewProc("NCryptOpenKey")
	procNCryptDeleteKey                  = ncrypt.NewProc("NCryptDeleteKey")
	procNCryptFreeObject                 = ncrypt.NewProc("NCryptFreeObject")
	procWineGetVersion                   = windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version")
	certEncoding                  uint32 = windows.X509_ASN_ENCODING | windows.PKCS_7_ASN_ENCODING
)

const (
	certKeyProvInfoPropID = 2 // CERT_KEY_PROV_INFO_PROP_ID

	// PFXExportCertStoreEx flags.
	reportNoPrivateKey                            = 0x1 // REPORT_NO_PRIVATE_KEY
	reportNotAbleToExportPrivateKey               = 0x2 // REPORT_NOT_ABLE_TO_EXPORT_PRIVATE_KEY
	exportPrivateKeys                             = 0x4 // EXPORT_PRIVATE_KEYS
	ncryptMachineKeyFlag                          = 0x20
	ncryptSilentFlag                              = 0x40
	errorFileNotFound               syscall.Errno = 2
)

// cryptKeyProvInfo is CRYPT_KEY_PROV_INFO.
type cryptKeyProvInfo struct {
	ContainerName *uint16
	ProvName      *uint16
	ProvType      uint32 // 0 for a CNG key storage provider
	Flags         uint32 // CRYPT_MACHINE_KEYSET (NCRYPT_MACHINE_KEY_FLAG)
	ProvParamLen  uint32
	ProvParams    uintptr
	KeySpec       uint32
}

// keyRef is where a certificate's private key is, copied out of its
// CRYPT_KEY_PROV_INFO.
type keyRef struct {
	container, provider string
	provType, flags     uint32
	keySpec             uint32
}

func (k keyRef) cng() bool     { return k.provType == 0 }
func (k keyRef) machine() bool { return k.flags&windows.CRYPT_MACHINE_KEYSET != 0 }

type windowsSystemStores struct{}

func newWindowsSystemStores() SystemStores { return windowsSystemStores{} }

// underWine reports that this process runs under Wine (ntdll exports
// wine_get_version), whose crypt32 lacks some of what Windows has.
func underWine() bool { return procWineGetVersion.Find() == nil }

// openStore opens the LocalMachine system store name. Without create, a
// missing store is errStoreMissing; with it, the store is created.
func openStore(name string, create, readOnly bool) (windows.Handle, error) {
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return 0, err
	}
	flags := uint32(windows.CERT_SYSTEM_STORE_LOCAL_MACHINE)
	if !create {
		flags |= windows.CERT_STORE_OPEN_EXISTING_FLAG
	}
	if readOnly {
		flags |= windows.CERT_STORE_READONLY_FLAG
	}
	h, err := windows.CertOpenStore(windows.CERT_STORE_PROV_SYSTEM_W, 0, 0, flags, uintptr(unsafe.Pointer(p)))
	runtime.KeepAlive(p)
	if err != nil {
		if errors.Is(err, errorFileNotFound) || errors.Is(err, windows.ERROR_PATH_NOT_FOUND) {
			return 0, errStoreMissing
		}
		if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
			return 0, fmt.Errorf("opening LocalMachine\\%s: %w (the machine's certificate stores need an elevated prompt: run as Administrator)", name, err)
		}
		return 0, fmt.Errorf("opening LocalMachine\\%s: %w", name, err)
	}
	return h, nil
}

var errStoreMissing = errors.New("the store does not exist")

func closeStore(h windows.Handle) { windows.CertCloseStore(h, 0) }

// commit makes Wine write a change to store out now (CERT_STORE_CTRL_COMMIT,
// forced). Windows' system stores write each change through at once; Wine's
// write only when the store's last reference goes, and Wine 8.0 keeps a
// deleted certificate's context, and so the store, alive.
func commit(h windows.Handle, store string) error {
	if !underWine() {
		return nil
	}
	const certStoreCtrlCommit, certStoreCtrlCommitForceFlag = 3, 1
	if r, _, e := procCertControlStore.Call(uintptr(h), certStoreCtrlCommitForceFlag, certStoreCtrlCommit, 0); r == 0 {
		return fmt.Errorf("writing LocalMachine\\%s: %w", store, e)
	}
	return nil
}

func ctxDER(ctx *windows.CertContext) []byte {
	return bytes.Clone(unsafe.Slice(ctx.EncodedCert, ctx.Length))
}

func (windowsSystemStores) List(store string) ([]SystemCert, error) {
	h, err := openStore(store, false, true)
	if errors.Is(err, errStoreMissing) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closeStore(h)
	var out []SystemCert
	var ctx *windows.CertContext
	for {
		ctx, err = windows.CertEnumCertificatesInStore(h, ctx)
		if ctx == nil {
			if errors.Is(err, syscall.Errno(windows.CRYPT_E_NOT_FOUND)) || errors.Is(err, windows.ERROR_NO_MORE_FILES) {
				break
			}
			return nil, fmt.Errorf("listing LocalMachine\\%s: %w", store, err)
		}
		cert, perr := x509.ParseCertificate(ctxDER(ctx))
		if perr != nil {
			// Not one of ours (nor anything Hyper-V writes): the
			// interface has no way to show it, and it must not hide
			// the rest.
			continue
		}
		sc := SystemCert{Cert: cert}
		if ref, ok, err := keyRefOf(ctx); err != nil {
			sc.HasKey, sc.KeyProblem = true, err.Error()
		} else if ok {
			sc.HasKey = true
			if err := checkKey(ctx, ref); err != nil {
				sc.KeyProblem = err.Error()
			}
		}
		out = append(out, sc)
	}
	return out, nil
}

// keyRefOf reads the certificate's CERT_KEY_PROV_INFO_PROP_ID; ok is false
// when it names no private key.
func keyRefOf(ctx *windows.CertContext) (ref keyRef, ok bool, err error) {
	var size uint32
	r, _, e := procCertGetCertificateContextProperty.Call(uintptr(unsafe.Pointer(ctx)), certKeyProvInfoPropID, 0, uintptr(unsafe.Pointer(&size)))
	if r == 0 {
		if errors.Is(e, syscall.Errno(windows.CRYPT_E_NOT_FOUND)) {
			return keyRef{}, false, nil
		}
		return keyRef{}, false, fmt.Errorf("reading the certificate's key property: %w", e)
	}
	if uintptr(size) < unsafe.Sizeof(cryptKeyProvInfo{}) {
		return keyRef{}, false, fmt.Errorf("the certificate's key property is %d bytes, too short", size)
	}
	// The property is a CRYPT_KEY_PROV_INFO followed by the strings it
	// points to; an 8-byte aligned buffer holds it.
	buf := make([]uint64, (size+7)/8)
	r, _, e = procCertGetCertificateContextProperty.Call(uintptr(unsafe.Pointer(ctx)), certKeyProvInfoPropID, uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)))
	if r == 0 {
		return keyRef{}, false, fmt.Errorf("reading the certificate's key property: %w", e)
	}
	info := (*cryptKeyProvInfo)(unsafe.Pointer(&buf[0]))
	ref = keyRef{
		container: windows.UTF16PtrToString(info.ContainerName),
		provider:  windows.UTF16PtrToString(info.ProvName),
		provType:  info.ProvType,
		flags:     info.Flags,
		keySpec:   info.KeySpec,
	}
	runtime.KeepAlive(buf)
	return ref, true, nil
}

// checkKey says whether the certificate's private key opens and matches
// it, as Windows' own users of the certificate would find it
// (CryptAcquireCertificatePrivateKey). Wine 8.0 opens keys there without
// the CRYPT_MACHINE_KEYSET of their provider information and so never
// finds a machine key; under Wine the key is opened again by its provider
// information, which is what Windows does.
func checkKey(ctx *windows.CertContext, ref keyRef) error {
	var h windows.Handle
	var spec uint32
	var mustFree bool
	err := windows.CryptAcquireCertificatePrivateKey(ctx,
		windows.CRYPT_ACQUIRE_SILENT_FLAG|windows.CRYPT_ACQUIRE_ALLOW_NCRYPT_KEY_FLAG|windows.CRYPT_ACQUIRE_COMPARE_KEY_FLAG,
		nil, &h, &spec, &mustFree)
	if err == nil {
		if mustFree {
			freeKey(h, spec)
		}
		return nil
	}
	if underWine() {
		h, spec, err := openKey(ref, false)
		if err != nil {
			return err
		}
		freeKey(h, spec)
		return nil
	}
	return keyError(ref, err)
}

func keyError(ref keyRef, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) && (errno == windows.ERROR_ACCESS_DENIED || errno == syscall.Errno(windows.NTE_PERM)) {
		return fmt.Errorf("the private key %s in %q does not open for this user: %w (machine keys need an elevated prompt: run as Administrator)", ref.container, ref.provider, err)
	}
	return fmt.Errorf("the private key %s in %q does not open: %w", ref.container, ref.provider, err)
}

func freeKey(h windows.Handle, spec uint32) {
	if spec == windows.CERT_NCRYPT_KEY_SPEC {
		procNCryptFreeObject.Call(uintptr(h))
	} else {
		windows.CryptReleaseContext(h, 0)
	}
}

// openKey opens the key ref names: an NCRYPT_KEY_HANDLE for a CNG key
// (spec CERT_NCRYPT_KEY_SPEC), an HCRYPTPROV otherwise; freeKey frees it.
// With del, a legacy key is deleted instead (CRYPT_DELETEKEYSET) and
// there is no handle.
func openKey(ref keyRef, del bool) (h windows.Handle, spec uint32, err error) {
	container, err := windows.UTF16PtrFromString(ref.container)
	if err != nil {
		return 0, 0, err
	}
	provider, err := windows.UTF16PtrFromString(ref.provider)
	if err != nil {
		return 0, 0, err
	}
	defer runtime.KeepAlive(container)
	defer runtime.KeepAlive(provider)
	if !ref.cng() {
		flags := uint32(windows.CRYPT_SILENT)
		if ref.machine() {
			flags |= windows.CRYPT_MACHINE_KEYSET
		}
		if del {
			flags |= windows.CRYPT_DELETEKEYSET
		}
		if err := windows.CryptAcquireContext(&h, container, provider, ref.provType, flags); err != nil {
			return 0, 0, keyError(ref, err)
		}
		return h, ref.keySpec, nil
	}
	var prov windows.Handle
	if r, _, _ := procNCryptOpenStorageProvider.Call(uintptr(unsafe.Pointer(&prov)), uintptr(unsafe.Pointer(provider)), 0); r != 0 {
		return 0, 0, keyError(ref, syscall.Errno(r))
	}
	defer procNCryptFreeObject.Call(uintptr(prov))
	flags := uintptr(ncryptSilentFlag)
	if ref.machine() {
		flags |= ncryptMachineKeyFlag
	}
	if r, _, _ := procNCryptOpenKey.Call(uintptr(prov), uintptr(unsafe.Pointer(&h)), uintptr(unsafe.Pointer(container)), 0, flags); r != 0 {
		return 0, 0, keyError(ref, syscall.Errno(r))
	}
	return h, windows.CERT_NCRYPT_KEY_SPEC, nil
}

// deleteKeyOf deletes the private key ref names: NCryptDeleteKey for a CNG
// key, CryptAcquireContext(CRYPT_DELETEKEYSET) for a legacy one.
func deleteKeyOf(ref keyRef) error {
	h, spec, err := openKey(ref, true)
	if err != nil {
		return fmt.Errorf("deleting: %w", err)
	}
	if !ref.cng() {
		return nil
	}
	// NCryptDeleteKey frees the handle when it succeeds.
	if r, _, _ := procNCryptDeleteKey.Call(uintptr(h), 0); r != 0 {
		freeKey(h, spec)
		return fmt.Errorf("deleting the private key %s in %q: %w", ref.container, ref.provider, syscall.Errno(r))
	}
	return nil
}

// parseThumbprint accepts a SHA-1 thumbprint in either case, with or
// without spaces (as certutil prints them).
func parseThumbprint(tp string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(tp, " ", ""))
	if err != nil || len(b) != 20 {
		return nil, fmt.Errorf("%q is not a SHA-1 thumbprint (40 hexadecimal digits)", tp)
	}
	return b, nil
}

// find returns the certificate with this thumbprint in the open store h;
// the caller frees it (or hands it to CertDeleteCertificateFromStore).
func find(h windows.Handle, store, tp string) (*windows.CertContext, error) {
	hash, err := parseThumbprint(tp)
	if err != nil {
		return nil, err
	}
	blob := windows.CryptHashBlob{Size: uint32(len(hash)), Data: &hash[0]}
	ctx, err := windows.CertFindCertificateInStore(h, certEncoding, 0, windows.CERT_FIND_SHA1_HASH, unsafe.Pointer(&blob), nil)
	runtime.KeepAlive(hash)
	if ctx == nil {
		if errors.Is(err, syscall.Errno(windows.CRYPT_E_NOT_FOUND)) {
			return nil, notInStore(store, tp)
		}
		return nil, fmt.Errorf("finding %s in LocalMachine\\%s: %w", tp, store, err)
	}
	return ctx, nil
}

func notInStore(store, tp string) error {
	return fmt.Errorf("certificate %s is not in LocalMachine\\%s: %w", strings.ToUpper(tp), store, syscall.Errno(windows.CRYPT_E_NOT_FOUND))
}

// openExisting opens store for a change to a certificate that must be in
// it; a missing store holds nothing.
func openExisting(store, tp string) (windows.Handle, error) {
	h, err := openStore(store, false, false)
	if errors.Is(err, errStoreMissing) {
		return 0, notInStore(store, tp)
	}
	return h, err
}

func (windowsSystemStores) Add(store string, cert *x509.Certificate, key *rsa.PrivateKey) error {
	h, err := openStore(store, true, false)
	if err != nil {
		return err
	}
	defer closeStore(h)
	if key == nil {
		ctx, err := windows.CertCreateCertificateContext(certEncoding, &cert.Raw[0], uint32(len(cert.Raw)))
		if err != nil {
			return fmt.Errorf("reading the certificate: %w", err)
		}
		defer windows.CertFreeCertificateContext(ctx)
		if err := windows.CertAddCertificateContextToStore(h, ctx, windows.CERT_STORE_ADD_REPLACE_EXISTING, nil); err != nil {
			return fmt.Errorf("adding %s to LocalMachine\\%s: %w", guardian.Thumbprint(cert), store, err)
		}
		return commit(h, store)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return errors.New("the private key does not match the certificate")
	}
	ctx, err := importKey(cert, key)
	if err != nil {
		return err
	}
	defer windows.CertFreeCertificateContext(ctx)
	// The context carries the link to the new key; adding it copies that
	// property with it.
	if err := windows.CertAddCertificateContextToStore(h, ctx, windows.CERT_STORE_ADD_REPLACE_EXISTING, nil); err != nil {
		if ref, ok, _ := keyRefOf(ctx); ok {
			deleteKeyOf(ref)
		}
		return fmt.Errorf("adding %s to LocalMachine\\%s: %w", guardian.Thumbprint(cert), store, err)
	}
	return commit(h, store)
}

// randomPassword is a PFX password that exists only in this process.
func randomPassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// importKey makes key an exportable machine key and returns a context of
// cert (not in any system store) linked to it. The key goes to the
// Microsoft Software Key Storage Provider through PFXImportCertStore of a
// PFX built in memory; only where the system refuses CNG there (Wine 8.0
// does) it goes to a legacy provider instead (importLegacyKey).
func importKey(cert *x509.Certificate, key *rsa.PrivateKey) (*windows.CertContext, error) {
	password, err := randomPassword()
	if err != nil {
		return nil, err
	}
	// 3DES (guardian's legacy form): every Windows that runs Hyper-V
	// reads it, and its password is random and never leaves memory.
	pfx, err := guardian.EncodePFX(key, cert, password, true)
	if err != nil {
		return nil, err
	}
	defer clear(pfx)
	pw, err := windows.UTF16PtrFromString(password)
	if err != nil {
		return nil, err
	}
	blob := windows.CryptDataBlob{Size: uint32(len(pfx)), Data: &pfx[0]}
	h, err := windows.PFXImportCertStore(&blob, pw, windows.CRYPT_MACHINE_KEYSET|windows.CRYPT_EXPORTABLE|windows.PKCS12_ALWAYS_CNG_KSP)
	runtime.KeepAlive(pfx)
	runtime.KeepAlive(pw)
	if err != nil {
		if cngRefused(err) {
			return importLegacyKey(cert, key)
		}
		return nil, fmt.Errorf("importing the private key of %s: %w", guardian.Thumbprint(cert), err)
	}
	defer closeStore(h)
	return find(h, "PFX", guardian.Thumbprint(cert))
}

// cngRefused says whether PFXImportCertStore failed because it does not
// take PKCS12_ALWAYS_CNG_KSP: Wine 8.0 fails on any flag it does not know,
// setting no error of its own. The PFX and its password are ours, so
// nothing else about them can be wrong.
func cngRefused(err error) bool {
	if underWine() {
		return true
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case 0, windows.ERROR_INVALID_PARAMETER, windows.ERROR_NOT_SUPPORTED, windows.ERROR_CALL_NOT_IMPLEMENTED,
		syscall.Errno(windows.NTE_BAD_FLAGS), syscall.Errno(windows.NTE_NOT_SUPPORTED):
		return true
	}
	return false
}

// The legacy provider keys go to where CNG is refused.
const (
	legacyProvider = "Microsoft Enhanced RSA and AES Cryptographic Provider"
	legacyProvType = windows.PROV_RSA_AES
)

// importLegacyKey imports key into a new machine key container of its own
// in the legacy provider (CryptImportKey of a PRIVATEKEYBLOB, exportable)
// and links a context of cert to it. PFXImportCertStore cannot be used for
// this under Wine 8.0: it puts every key in the same default container and
// links the certificate to a user key that does not exist.
func importLegacyKey(cert *x509.Certificate, key *rsa.PrivateKey) (*windows.CertContext, error) {
	blob, err := privateKeyBlob(key)
	if err != nil {
		return nil, err
	}
	defer clear(blob)
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	ref := keyRef{container: "guardctl-" + hex.EncodeToString(id), provider: legacyProvider, provType: legacyProvType,
		flags: windows.CRYPT_MACHINE_KEYSET, keySpec: windows.AT_KEYEXCHANGE}
	container, err := windows.UTF16PtrFromString(ref.container)
	if err != nil {
		return nil, err
	}
	provider, err := windows.UTF16PtrFromString(ref.provider)
	if err != nil {
		return nil, err
	}
	var prov windows.Handle
	if err := windows.CryptAcquireContext(&prov, container, provider, ref.provType, windows.CRYPT_NEWKEYSET|windows.CRYPT_MACHINE_KEYSET|windows.CRYPT_SILENT); err != nil {
		return nil, fmt.Errorf("making a key container in %q: %w", ref.provider, err)
	}
	var hkey windows.Handle
	r, _, e := procCryptImportKey.Call(uintptr(prov), uintptr(unsafe.Pointer(&blob[0])), uintptr(len(blob)), 0, windows.CRYPT_EXPORTABLE, uintptr(unsafe.Pointer(&hkey)))
	runtime.KeepAlive(blob)
	if r == 0 {
		windows.CryptReleaseContext(prov, 0)
		deleteKeyOf(ref)
		return nil, fmt.Errorf("importing the private key of %s into %q: %w", guardian.Thumbprint(cert), ref.provider, e)
	}
	procCryptDestroyKey.Call(uintptr(hkey))
	windows.CryptReleaseContext(prov, 0)

	ctx, err := windows.CertCreateCertificateContext(certEncoding, &cert.Raw[0], uint32(len(cert.Raw)))
	if err != nil {
		deleteKeyOf(ref)
		return nil, fmt.Errorf("reading the certificate: %w", err)
	}
	info := cryptKeyProvInfo{ContainerName: container, ProvName: provider, ProvType: ref.provType, Flags: ref.flags, KeySpec: ref.keySpec}
	r, _, e = procCertSetCertificateContextProperty.Call(uintptr(unsafe.Pointer(ctx)), certKeyProvInfoPropID, 0, uintptr(unsafe.Pointer(&info)))
	runtime.KeepAlive(container)
	runtime.KeepAlive(provider)
	if r == 0 {
		windows.CertFreeCertificateContext(ctx)
		deleteKeyOf(ref)
		return nil, fmt.Errorf("linking %s to its private key: %w", guardian.Thumbprint(cert), e)
	}
	return ctx, nil
}

// privateKeyBlob is key as a CryptoAPI PRIVATEKEYBLOB: BLOBHEADER,
// RSAPUBKEY, then the modulus, primes, CRT exponents and coefficient and
// the private exponent, little-endian.
func privateKeyBlob(key *rsa.PrivateKey) ([]byte, error) {
	if len(key.Primes) != 2 {
		return nil, errors.New("a key of more than two primes cannot go to a legacy provider")
	}
	key.Precompute()
	bits := key.N.BitLen()
	if bits%16 != 0 || key.E <= 0 || key.E > 0xffffffff {
		return nil, fmt.Errorf("an RSA key of %d bits cannot go to a legacy provider", bits)
	}
	n, half := bits/8, bits/16
	const privateKeyBlobType, curBlobVersion, calgRSAKeyX, rsa2 = 7, 2, 0xa400, 0x32415352
	blob := []byte{privateKeyBlobType, curBlobVersion, 0, 0}
	blob = binary.LittleEndian.AppendUint32(blob, calgRSAKeyX)
	blob = binary.LittleEndian.AppendUint32(blob, rsa2)
	blob = binary.LittleEndian.AppendUint32(blob, uint32(bits))
	blob = binary.LittleEndian.AppendUint32(blob, uint32(key.E))
	for _, part := range []struct {
		v    *big.Int
		size int
	}{{key.N, n}, {key.Primes[0], half}, {key.Primes[1], half}, {key.Precomputed.Dp, half}, {key.Precomputed.Dq, half}, {key.Precomputed.Qinv, half}, {key.D, n}} {
		if part.v.BitLen() > 8*part.size {
			clear(blob)
			return nil, errors.New("the RSA key's parts do not fit a PRIVATEKEYBLOB")
		}
		b := part.v.FillBytes(make([]byte, part.size))
		slices.Reverse(b)
		blob = append(blob, b...)
		clear(b)
	}
	return blob, nil
}

func (windowsSystemStores) ExportKey(store, thumbprint string) (*rsa.PrivateKey, error) {
	h, err := openStore(store, false, true)
	if errors.Is(err, errStoreMissing) {
		return nil, notInStore(store, thumbprint)
	}
	if err != nil {
		return nil, err
	}
	defer closeStore(h)
	ctx, err := find(h, store, thumbprint)
	if err != nil {
		return nil, err
	}
	defer windows.CertFreeCertificateContext(ctx)
	cert, err := x509.ParseCertificate(ctxDER(ctx))
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", thumbprint, err)
	}
	if _, ok, err := keyRefOf(ctx); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("certificate %s in LocalMachine\\%s has no private key", thumbprint, store)
	}
	// A memory store holding this one certificate (with its properties),
	// exported as a PFX with its key.
	mem, err := windows.CertOpenStore(windows.CERT_STORE_PROV_MEMORY, 0, 0, 0, 0)
	if err != nil {
		return nil, err
	}
	defer closeStore(mem)
	if err := windows.CertAddCertificateContextToStore(mem, ctx, windows.CERT_STORE_ADD_ALWAYS, nil); err != nil {
		return nil, err
	}
	password, err := randomPassword()
	if err != nil {
		return nil, err
	}
	pw, err := windows.UTF16PtrFromString(password)
	if err != nil {
		return nil, err
	}
	flags := uintptr(exportPrivateKeys | reportNotAbleToExportPrivateKey | reportNoPrivateKey)
	var blob windows.CryptDataBlob
	export := func() error {
		r, _, e := procPFXExportCertStoreEx.Call(uintptr(mem), uintptr(unsafe.Pointer(&blob)), uintptr(unsafe.Pointer(pw)), 0, flags)
		if r == 0 {
			return exportError(thumbprint, e)
		}
		return nil
	}
	if err := export(); err != nil {
		return nil, err
	}
	if blob.Size == 0 || blob.Size > guardian.MaxPFXSize {
		return nil, exportError(thumbprint, fmt.Errorf("PFXExportCertStoreEx gave %d bytes", blob.Size))
	}
	data := make([]byte, blob.Size)
	defer clear(data)
	blob.Data = &data[0]
	if err := export(); err != nil {
		return nil, err
	}
	runtime.KeepAlive(pw)
	pfx, err := guardian.DecodePFX(data[:blob.Size], password)
	if err != nil {
		return nil, fmt.Errorf("reading the private key of %s that Windows exported: %w", thumbprint, err)
	}
	if !pfx.Cert.Equal(cert) {
		return nil, fmt.Errorf("exporting the private key of %s: the PFX Windows made holds another certificate", thumbprint)
	}
	return pfx.Key, nil
}

func exportError(tp string, err error) error {
	var errno syscall.Errno
	isErrno := errors.As(err, &errno)
	if underWine() {
		why := ""
		if !isErrno || errno != 0 {
			why = fmt.Sprintf(" (%v)", err)
		}
		return fmt.Errorf("%w: exporting the private key of %s needs PFXExportCertStoreEx, which Wine does not implement%s; export it on Windows", ErrKeyNotExportable, tp, why)
	}
	if isErrno {
		switch errno {
		case syscall.Errno(windows.NTE_BAD_KEY_STATE), syscall.Errno(windows.NTE_PERM), windows.ERROR_ACCESS_DENIED:
			return fmt.Errorf("%w: Windows refused to export the private key of %s (%v): it was made or imported as not exportable", ErrKeyNotExportable, tp, err)
		}
	}
	return fmt.Errorf("exporting the private key of %s: %w", tp, err)
}

func (windowsSystemStores) Move(from, to, thumbprint string) error {
	src, err := openExisting(from, thumbprint)
	if err != nil {
		return err
	}
	defer closeStore(src)
	ctx, err := find(src, from, thumbprint)
	if err != nil {
		return err
	}
	dst, err := openStore(to, true, false)
	if err != nil {
		windows.CertFreeCertificateContext(ctx)
		return err
	}
	defer closeStore(dst)
	// The copy carries the certificate's properties, the key link among
	// them; the key itself is not touched.
	if err := windows.CertAddCertificateContextToStore(dst, ctx, windows.CERT_STORE_ADD_REPLACE_EXISTING, nil); err != nil {
		windows.CertFreeCertificateContext(ctx)
		return fmt.Errorf("copying %s to LocalMachine\\%s: %w", thumbprint, to, err)
	}
	if err := commit(dst, to); err != nil {
		windows.CertFreeCertificateContext(ctx)
		return err
	}
	// CertDeleteCertificateFromStore frees ctx, whatever it returns.
	if err := windows.CertDeleteCertificateFromStore(ctx); err != nil {
		return fmt.Errorf("%s was copied to LocalMachine\\%s but not deleted from LocalMachine\\%s: %w", thumbprint, to, from, err)
	}
	return commit(src, from)
}

func (windowsSystemStores) Delete(store, thumbprint string, deleteKey bool) error {
	h, err := openExisting(store, thumbprint)
	if err != nil {
		return err
	}
	defer closeStore(h)
	ctx, err := find(h, store, thumbprint)
	if err != nil {
		return err
	}
	ref, hasKey, refErr := keyRefOf(ctx)
	if err := windows.CertDeleteCertificateFromStore(ctx); err != nil {
		return fmt.Errorf("deleting %s from LocalMachine\\%s: %w", thumbprint, store, err)
	}
	if err := commit(h, store); err != nil {
		return err
	}
	if !deleteKey {
		return nil
	}
	if refErr != nil {
		return fmt.Errorf("%s was deleted from LocalMachine\\%s, its private key not: %w", thumbprint, store, refErr)
	}
	if hasKey {
		if err := deleteKeyOf(ref); err != nil {
			return fmt.Errorf("%s was deleted from LocalMachine\\%s, its private key not: %w", thumbprint, store, err)
		}
	}
	return nil
}
