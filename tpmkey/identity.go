package tpmkey

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Identity says which TPM holds a key: its manufacturer, and the SHA-256
// of its endorsement key's public key (the RSA-2048 EK of the TCG default
// template, as DER SubjectPublicKeyInfo), which is what HGS's TPM mode
// takes for a host's identity. tpm2_createek -G rsa -f pem gives the same
// key.
type Identity struct {
	Manufacturer string `json:"manufacturer"`
	EKSHA256     string `json:"ekSHA256"`
}

// Identity reads the TPM's identity (once per Device).
func (d *Device) Identity() (*Identity, error) {
	d.idMu.Lock()
	defer d.idMu.Unlock()
	if d.identityOK {
		return d.identity, nil
	}
	var id *Identity
	err := d.use(func(t transport.TPM) error {
		var err error
		id, err = d.readIdentity(t)
		return err
	})
	if err != nil {
		return nil, err
	}
	d.identity, d.identityOK = id, true
	return id, nil
}

func (d *Device) readIdentity(t transport.TPM) (*Identity, error) {
	id := &Identity{}
	err := func() error {
		cap, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTManufacturer), PropertyCount: 1}.Execute(t)
		if err != nil {
			return d.describe(err, "the TPM's properties", nil)
		}
		props, err := cap.CapabilityData.Data.TPMProperties()
		if err == nil && len(props.TPMProperty) > 0 && props.TPMProperty[0].Property == tpm2.TPMPTManufacturer {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], props.TPMProperty[0].Value)
			id.Manufacturer = strings.TrimRight(strings.Map(func(r rune) rune {
				if r < 0x20 || r > 0x7e {
					return ' '
				}
				return r
			}, string(b[:])), " ")
		}
		rsp, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(tpm2.RSAEKTemplate),
		}.Execute(t)
		if err != nil {
			return d.describe(err, "the endorsement key", nil)
		}
		defer flushHandle(t, rsp.ObjectHandle)
		pt, err := rsp.OutPublic.Contents()
		if err != nil {
			return err
		}
		pub, err := tpm2.Pub(*pt)
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(der)
		id.EKSHA256 = hex.EncodeToString(sum[:])
		return nil
	}()
	return id, err
}
