package guardian

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"time"
)

// KeySizes are the RSA modulus sizes Generate accepts.
var KeySizes = []int{2048, 3072, 4096}

// MinKeySize is the smallest RSA key a guardian may have, as Microsoft
// requires for guardian certificates.
const MinKeySize = 2048

// GenerateOptions describe a new guardian.
type GenerateOptions struct {
	Name       string
	Host       string // the host name in the subjects, as Hyper-V puts COMPUTERNAME there
	KeySize    int    // 0 means 2048
	ValidYears int    // 0 means 10
	Now        time.Time
	Rand       io.Reader // nil means crypto/rand
	// NewKey makes the private key for role ("signing" or "encryption";
	// the encryption key must be a crypto.Decrypter too) somewhere other
	// than memory, such as a TPM. nil: software RSA keys of KeySize bits.
	NewKey func(role string) (crypto.Signer, error)
}

// Generate makes a guardian shaped like the one New-HgsGuardian
// -GenerateCertificates makes: two self-signed RSA certificates with SHA-256
// signatures, one for signing and one for encryption.
func Generate(o GenerateOptions) (*Guardian, error) {
	if err := ValidateName(o.Name); err != nil {
		return nil, err
	}
	if o.KeySize == 0 {
		o.KeySize = 2048
	}
	okSize := false
	for _, s := range KeySizes {
		okSize = okSize || s == o.KeySize
	}
	if !okSize {
		return nil, errorf(KindUnsupported, "key size %d is not supported; use 2048, 3072 or 4096", o.KeySize)
	}
	if o.ValidYears == 0 {
		o.ValidYears = 10
	}
	if o.ValidYears < 1 || o.ValidYears > 100 {
		return nil, errorf(KindInvalid, "validity of %d years is out of range; use 1 to 100", o.ValidYears)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	g := &Guardian{Name: o.Name}
	sk, sc, err := selfSigned(o, "signing", fmt.Sprintf("Shielded VM Signing Certificate (%s) (%s)", o.Name, o.Host), x509.KeyUsageDigitalSignature)
	if err != nil {
		return nil, err
	}
	ek, ec, err := selfSigned(o, "encryption", fmt.Sprintf("Shielded VM Encryption Certificate (%s) (%s)", o.Name, o.Host), x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment)
	if err != nil {
		return nil, err
	}
	dk, ok := ek.(crypto.Decrypter)
	if !ok {
		return nil, errorf(KindUnsupported, "the encryption key made for guardian %q cannot decrypt", o.Name)
	}
	g.SigningKey, g.Signing, g.EncryptionKey, g.Encryption = sk, sc, dk, ec
	return g, nil
}

func selfSigned(o GenerateOptions, role, cn string, usage x509.KeyUsage) (crypto.Signer, *x509.Certificate, error) {
	var key crypto.Signer
	var err error
	if o.NewKey != nil {
		key, err = o.NewKey(role)
	} else {
		key, err = rsa.GenerateKey(o.Rand, o.KeySize)
	}
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(o.Rand, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, err
	}
	ski := sha1.Sum(pub)
	notBefore := o.Now.UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notBefore.AddDate(o.ValidYears, 0, 0),
		KeyUsage:              usage,
		BasicConstraintsValid: true,
		SubjectKeyId:          ski[:],
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	der, err := x509.CreateCertificate(o.Rand, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}
