package certstore

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
)

// The Hyper-V store is built on two narrow interfaces to Windows, in the
// manner of google/certtostore: SystemStores (crypt32 and CNG) and
// GuardianRegistry (HgsClient's MSFT_HgsGuardian). Everything above them
// (pairing, statuses, repair) is platform-neutral and tested on every OS
// against a fake; the Windows implementations live behind build tags.

// ShieldedVMStore is the LocalMachine system store where Hyper-V keeps the
// certificates of local guardians.
const ShieldedVMStore = "Shielded VM Local Certificates"

// SystemCert is one certificate in a LocalMachine system store.
type SystemCert struct {
	Cert *x509.Certificate
	// HasKey reports that the certificate names a private key
	// (CERT_KEY_PROV_INFO_PROP_ID).
	HasKey bool
	// KeyProblem says why a named key cannot be opened; empty when it opens
	// or when there is none.
	KeyProblem string
}

// SystemStores is the part of Windows' certificate API the Hyper-V store
// needs: LocalMachine system stores and their certificates' machine keys.
// Thumbprints are SHA-1, upper-case hex, as Windows shows them.
type SystemStores interface {
	// List returns the certificates of the LocalMachine store named store.
	// A store that does not exist is empty, not an error.
	List(store string) ([]SystemCert, error)
	// Add adds cert to store, creating the store when it is missing. With a
	// key, the key becomes an exportable machine key (in the Microsoft
	// Software Key Storage Provider where the system allows it) linked to
	// the certificate. Adding a certificate that is already there replaces
	// its key link.
	Add(store string, cert *x509.Certificate, key *rsa.PrivateKey) error
	// ExportKey returns the private key of the certificate with this
	// thumbprint; ErrKeyNotExportable when Windows will not give it out.
	ExportKey(store, thumbprint string) (*rsa.PrivateKey, error)
	// Move moves a certificate, with its key link, from one store to
	// another (creating it). The key itself stays where it is.
	Move(from, to, thumbprint string) error
	// Delete removes the certificate from store; with deleteKey its private
	// key is deleted too.
	Delete(store, thumbprint string, deleteKey bool) error
}

// Registration is one of HgsClient's guardians (an MSFT_HgsGuardian
// instance).
type Registration struct {
	Name                 string
	SigningThumbprint    string
	EncryptionThumbprint string
	HasPrivateSigningKey bool
}

// GuardianRegistry is HgsClient's registration of guardian names, reached
// only through its documented interface (the WMI class MSFT_HgsGuardian in
// root\Microsoft\Windows\Hgs, or the HgsClient cmdlets); where it is kept on
// disk is undocumented and never touched.
type GuardianRegistry interface {
	// List returns every registration; ErrNoHgsClient when HgsClient is
	// not installed.
	List() ([]Registration, error)
	// Register names a certificate pair already in ShieldedVMStore
	// (NewByCertificateThumbprints).
	Register(name, signingThumbprint, encryptionThumbprint string) error
	// Unregister removes the name only (Remove); the certificates stay.
	Unregister(name string) error
}

var (
	// ErrNoHgsClient: this Windows has no HgsClient (no Hyper-V), so guardian
	// names cannot be registered; certificates still can be stored.
	ErrNoHgsClient = errors.New("HgsClient is not installed on this machine")
	// ErrKeyNotExportable: Windows refused to export a private key.
	ErrKeyNotExportable = errors.New("the private key cannot be exported")
)
