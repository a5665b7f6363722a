package tpmkey

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Key is an RSA-2048 key held in a TPM. It implements crypto.Signer
// (RSASSA-PKCS1-v1.5 with SHA-256) and crypto.Decrypter (RSA-OAEP with
// SHA-256 and an empty label): what key protectors use.
type Key struct {
	dev  *Device
	file *keyfile.TPMKey
	pub  *rsa.PublicKey
	// Label names the key in messages ("guardian \"H\"'s encryption key").
	Label string
	// PCRs is the boot-state binding the key was made with, if any.
	PCRs *PCRBinding
	// Identity is the TPM the key was made in, as recorded then (nil when
	// not known).
	Identity *Identity
	// policy is the key's PCR policy as its blob records it (nil: none),
	// so that the key stays usable from its blob alone; PCRs only names
	// what changed.
	policy *tpm2.PolicyPCR
	// policyAuth: the policy ends with PolicyAuthValue (the key has a PIN).
	policyAuth bool
}

// device is the key's TPM, or an error when the key was read without one.
func (k *Key) device() (*Device, error) {
	if k.dev == nil {
		return nil, errorf(KindMissing, "%s is in a TPM and no TPM was given to use it with", k.Label)
	}
	return k.dev, nil
}

// Public is the key's RSA public key.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// InTPM says that the key lives in a TPM (guardian.KeyLocation asks).
func (k *Key) InTPM() bool { return true }

// HasPIN reports whether the key was made with a PIN.
func (k *Key) HasPIN() bool { return k.file.HasAuth() }

// PEM is the key blob as a "TSS2 PRIVATE KEY" PEM file: useless off the
// TPM it was made in.
func (k *Key) PEM() []byte { return k.file.Bytes() }

// Device is the TPM the key is used with.
func (k *Key) Device() *Device { return k.dev }

// Parse reads a "TSS2 PRIVATE KEY" PEM blob made by Create, for use with
// dev. pcrs is the binding it was made with (kept beside it), or nil.
func Parse(dev *Device, pemData []byte, label string, pcrs *PCRBinding) (*Key, error) {
	f, err := keyfile.Decode(pemData)
	if err != nil {
		return nil, errorf(KindInvalid, "%s is not a TSS2 PRIVATE KEY blob: %v", label, err)
	}
	if !f.Keytype.Equal(keyfile.OIDLoadableKey) || f.Parent != tpm2.TPMRHOwner {
		return nil, errorf(KindInvalid, "%s is not a loadable key under the owner hierarchy's storage key", label)
	}
	pt, err := f.Pubkey.Contents()
	if err != nil {
		return nil, errorf(KindInvalid, "%s: damaged public area: %v", label, err)
	}
	pub, err := tpm2.Pub(*pt)
	if err != nil {
		return nil, errorf(KindInvalid, "%s: %v", label, err)
	}
	rp, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, errorf(KindInvalid, "%s is not an RSA key", label)
	}
	k := &Key{dev: dev, file: f, pub: rp, Label: label, PCRs: pcrs}
	for _, p := range f.Policy {
		switch tpm2.TPMCC(p.CommandCode) {
		case tpm2.TPMCCPolicyPCR:
			// TPM2B_DIGEST pcrDigest, then TPML_PCR_SELECTION pcrs: go-tpm
			// reads each, and the digest's own encoding says where the
			// selection starts.
			cp := p.CommandPolicy
			digest, err := tpm2.Unmarshal[tpm2.TPM2BDigest](cp)
			if err != nil {
				return nil, errorf(KindInvalid, "%s: damaged PCR policy: %v", label, err)
			}
			n := len(tpm2.Marshal(digest))
			if len(cp) < n {
				return nil, errorf(KindInvalid, "%s: damaged PCR policy", label)
			}
			sel, err := tpm2.Unmarshal[tpm2.TPMLPCRSelection](cp[n:])
			if err != nil {
				return nil, errorf(KindInvalid, "%s: damaged PCR policy: %v", label, err)
			}
			k.policy = &tpm2.PolicyPCR{PcrDigest: *digest, Pcrs: *sel}
		case tpm2.TPMCCPolicyAuthValue:
			k.policyAuth = true
		default:
			return nil, errorf(KindInvalid, "%s: a policy guardctl does not make (command %#x)", label, p.CommandCode)
		}
	}
	if k.policy == nil && len(f.Policy) > 0 {
		return nil, errorf(KindInvalid, "%s: a policy without PolicyPCR", label)
	}
	return k, nil
}

// CreateOptions describe a new key.
type CreateOptions struct {
	// Decrypt makes a key that decrypts as well as signs (an encryption
	// key still signs its own certificate).
	Decrypt bool
	// PIN protects the key; without one the key has noDA, so that failed
	// uses never count toward the TPM's dictionary-attack lockout.
	PIN []byte
	// PCRs binds the key to the current values of these PCRs.
	PCRs *PCRBinding
	// Label names the key in messages.
	Label string
}

// Create generates an RSA-2048 key inside the TPM under the H-2 storage
// key. With PCRs, their current values are read into o.PCRs.Values and
// the key is usable only while they hold them.
func (d *Device) Create(o CreateOptions) (*Key, error) {
	var k *Key
	err := d.use(func(t transport.TPM) error {
		srk, srkPub, flush, err := createSRK(t)
		if err != nil {
			return d.describe(err, o.Label, nil)
		}
		defer flush()
		attrs := tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			NoDA:                len(o.PIN) == 0,
			SignEncrypt:         true,
			Decrypt:             o.Decrypt,
		}
		var policy []byte
		if o.PCRs != nil {
			if err := d.readPCRs(t, o.PCRs); err != nil {
				return err
			}
			calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
			if err != nil {
				return err
			}
			pp := o.PCRs.policyPCR(tpm2.TPMHandle(0))
			if err := pp.Update(calc); err != nil {
				return err
			}
			if len(o.PIN) > 0 {
				if err := (tpm2.PolicyAuthValue{}).Update(calc); err != nil {
					return err
				}
			}
			policy = calc.Hash().Digest
			attrs.UserWithAuth = false
		}
		tmpl := tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgRSA,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			AuthPolicy:       tpm2.TPM2BDigest{Buffer: policy},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
				KeyBits:   2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)}),
		}
		// The PIN travels to the TPM encrypted (EncryptIn).
		rsp, err := tpm2.Create{
			ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16,
				tpm2.AESEncryption(128, tpm2.EncryptIn), tpm2.Salted(srk.Handle, *srkPub))},
			InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{UserAuth: tpm2.TPM2BAuth{Buffer: o.PIN}}},
			InPublic:    tpm2.New2B(tmpl),
		}.Execute(t)
		if err != nil {
			return d.describe(err, o.Label, nil)
		}
		opts := []keyfile.TPMKeyOption{keyfile.WithUserAuth(o.PIN)}
		if o.PCRs != nil {
			opts = append(opts, keyfile.WithPolicy(o.PCRs.keyfilePolicy(len(o.PIN) > 0)))
		}
		f := keyfile.NewTPMKey(keyfile.OIDLoadableKey, rsp.OutPublic, rsp.OutPrivate, opts...)
		if k, err = Parse(d, f.Bytes(), o.Label, o.PCRs); err != nil {
			return err
		}
		if len(o.PIN) > 0 {
			// The PIN just set is the one to use with the key.
			d.pin, d.pinRead = o.PIN, true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// Sign signs a SHA-256 digest with RSASSA-PKCS1-v1.5 in the TPM.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return nil, errorf(KindInvalid, "%s signs SHA-256 digests only", k.Label)
	}
	if _, pss := opts.(*rsa.PSSOptions); pss {
		return nil, errorf(KindInvalid, "%s signs RSASSA-PKCS1-v1.5 only", k.Label)
	}
	var sig []byte
	err := k.run(tpm2.AESEncryption(128, tpm2.EncryptIn), func(t transport.TPM, key tpm2.AuthHandle) error {
		rsp, err := tpm2.Sign{
			KeyHandle: key,
			Digest:    tpm2.TPM2BDigest{Buffer: digest},
			InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}.Execute(t)
		if err != nil {
			return err
		}
		s, err := rsp.Signature.Signature.RSASSA()
		if err != nil {
			return err
		}
		sig = s.Sig.Buffer
		return nil
	})
	return sig, err
}

// Decrypt decrypts RSA-OAEP (SHA-256, empty label) in the TPM; the
// plaintext comes back encrypted in the session (EncryptOut). A ciphertext
// the key cannot decrypt gives an error wrapping rsa.ErrDecryption.
func (k *Key) Decrypt(_ io.Reader, ct []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	o, ok := opts.(*rsa.OAEPOptions)
	if !ok || o.Hash != crypto.SHA256 || (o.MGFHash != 0 && o.MGFHash != crypto.SHA256) || len(o.Label) > 0 {
		return nil, errorf(KindInvalid, "%s decrypts RSA-OAEP with SHA-256 and no label only", k.Label)
	}
	var pt []byte
	err := k.run(tpm2.AESEncryption(128, tpm2.EncryptOut), func(t transport.TPM, key tpm2.AuthHandle) error {
		rsp, err := tpm2.RSADecrypt{
			KeyHandle:  key,
			CipherText: tpm2.TPM2BPublicKeyRSA{Buffer: ct},
			InScheme: tpm2.TPMTRSADecrypt{Scheme: tpm2.TPMAlgOAEP,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgOAEP, &tpm2.TPMSEncSchemeOAEP{HashAlg: tpm2.TPMAlgSHA256})},
		}.Execute(t)
		if err != nil {
			// A padding that does not check is TPM_RC_VALUE; libtpms
			// (swtpm) built on OpenSSL 3 answers TPM_RC_FAILURE and
			// goes on working.
			if errors.Is(err, tpm2.TPMRCValue) || errors.Is(err, tpm2.TPMRCSize) || errors.Is(err, tpm2.TPMRCFailure) {
				return fmt.Errorf("%w", rsa.ErrDecryption)
			}
			return err
		}
		pt = rsp.Message.Buffer
		return nil
	})
	return pt, err
}

// Check loads the key into the TPM and flushes it: whether the key can be
// used here, short of its PIN and PCRs.
func (k *Key) Check() error {
	if _, err := k.device(); err != nil {
		return err
	}
	return k.dev.use(func(t transport.TPM) error {
		srk, _, flush, err := createSRK(t)
		if err != nil {
			return k.dev.describe(err, k.Label, nil)
		}
		defer flush()
		h, err := k.load(t, srk)
		if err != nil {
			return k.dev.describe(err, k.Label, k)
		}
		flushHandle(t, h.Handle)
		return nil
	})
}

func (k *Key) load(t transport.TPM, srk *tpm2.AuthHandle) (*tpm2.AuthHandle, error) {
	rsp, err := tpm2.Load{
		ParentHandle: *srk,
		InPrivate:    k.file.Privkey,
		InPublic:     k.file.Pubkey,
	}.Execute(t)
	if err != nil {
		return nil, err
	}
	return &tpm2.AuthHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

// run loads the key under a fresh H-2 storage key, authorizes it in a
// salted session with parameter encryption in dir (a policy session when
// the key is bound to PCRs), calls f, and flushes everything.
func (k *Key) run(dir tpm2.AuthOption, f func(t transport.TPM, key tpm2.AuthHandle) error) error {
	if _, err := k.device(); err != nil {
		return err
	}
	return k.dev.use(func(t transport.TPM) error {
		var pin []byte
		if k.HasPIN() {
			p, err := k.dev.thePIN()
			if err != nil {
				return err
			}
			pin = p
		}
		srk, srkPub, flushSRK, err := createSRK(t)
		if err != nil {
			return k.dev.describe(err, k.Label, nil)
		}
		defer flushSRK()
		h, err := k.load(t, srk)
		if err != nil {
			return k.dev.describe(err, k.Label, k)
		}
		defer flushHandle(t, h.Handle)
		if k.policy == nil {
			h.Auth = tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth(pin), dir, tpm2.Salted(srk.Handle, *srkPub))
			if err := f(t, *h); err != nil {
				return k.dev.describe(err, k.Label, nil)
			}
			return nil
		}
		sess, closeSess, err := tpm2.PolicySession(t, tpm2.TPMAlgSHA256, 16, tpm2.Auth(pin), dir, tpm2.Salted(srk.Handle, *srkPub))
		if err != nil {
			return k.dev.describe(err, k.Label, nil)
		}
		defer closeSess()
		pp := *k.policy
		pp.PolicySession = sess.Handle()
		if _, err := pp.Execute(t); err != nil {
			if errors.Is(err, tpm2.TPMRCValue) {
				return k.dev.pcrsChanged(t, k)
			}
			return k.dev.describe(err, k.Label, nil)
		}
		if k.policyAuth {
			if _, err := (tpm2.PolicyAuthValue{PolicySession: sess.Handle()}).Execute(t); err != nil {
				return k.dev.describe(err, k.Label, nil)
			}
		}
		h.Auth = sess
		if err := f(t, *h); err != nil {
			if errors.Is(err, tpm2.TPMRCPolicyFail) {
				return k.dev.pcrsChanged(t, k)
			}
			return k.dev.describe(err, k.Label, nil)
		}
		return nil
	})
}

// createSRK makes the H-2 storage key (the template every TSS2 PRIVATE KEY
// with the owner as parent is made under) and returns it with a flush.
func createSRK(t transport.TPM) (*tpm2.AuthHandle, *tpm2.TPMTPublic, func(), error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(keyfile.ECCSRK_H2_Template),
	}.Execute(t)
	if err != nil {
		return nil, nil, nil, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flushHandle(t, rsp.ObjectHandle)
		return nil, nil, nil, err
	}
	return &tpm2.AuthHandle{Handle: rsp.ObjectHandle, Name: rsp.Name, Auth: tpm2.PasswordAuth(nil)}, pub,
		func() { flushHandle(t, rsp.ObjectHandle) }, nil
}

func flushHandle(t transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t)
}

// describe turns a TPM response into an Error naming the key and what to
// do; a transport failure says the TPM went away.
func (d *Device) describe(err error, label string, k *Key) error {
	var te *Error
	if errors.As(err, &te) || errors.Is(err, rsa.ErrDecryption) {
		return err
	}
	switch {
	case errors.Is(err, tpm2.TPMRCIntegrity):
		return d.notLoadable(label, err, k)
	case errors.Is(err, tpm2.TPMRCAuthFail):
		return errorf(KindPIN, "the PIN does not open %s (each wrong PIN counts toward the TPM's dictionary-attack lockout)", label)
	case errors.Is(err, tpm2.TPMRCLockout):
		return errorf(KindLockout, "the TPM (%s) is in dictionary-attack lockout after wrong PINs; wait for it to recover or reset the lockout (tpm2_dictionarylockout --clear-lockout)", d.spec)
	case errors.Is(err, tpm2.TPMRCObjectMemory), errors.Is(err, tpm2.TPMRCSessionMemory):
		return errorf(KindBusy, "the TPM (%s) has no free object or session slots (another program holds them): %v", d.spec, err)
	}
	var rc tpm2.TPMRC
	if errors.As(err, &rc) {
		return errorf(KindOther, "the TPM (%s) refused to use %s: %v", d.spec, label, err)
	}
	return errorf(KindMissing, "the TPM (%s) stopped answering while using %s: %v", d.spec, label, err)
}

// notLoadable says why a blob does not load: this is another TPM (its
// endorsement key differs from the one recorded), or this TPM was cleared
// (same endorsement key, new storage seed).
func (d *Device) notLoadable(label string, cause error, k *Key) error {
	why := "it was made in another TPM, or this TPM was cleared since"
	if k != nil && k.Identity != nil && k.Identity.EKSHA256 != "" && d.tpmForIdentity != nil {
		if now, err := d.readIdentity(d.tpmForIdentity); err == nil {
			if now.EKSHA256 == k.Identity.EKSHA256 {
				why = "this TPM was cleared since the key was made (tpm2_clear, or a TPM clear in the firmware settings), which destroys every key made under it"
			} else {
				why = fmt.Sprintf("it was made in another TPM (endorsement key SHA-256 %s; this TPM's is %s)", k.Identity.EKSHA256, now.EKSHA256)
			}
		}
	}
	return errorf(KindNotLoadable, "%s does not load into this TPM (%s): %s (%v)", label, d.spec, why, shortRC(cause))
}

func shortRC(err error) string {
	var rc tpm2.TPMRC
	if errors.As(err, &rc) {
		var f1 tpm2.TPMFmt1Error
		if errors.As(err, &f1) {
			return f1.Error()
		}
		return rc.Error()
	}
	return err.Error()
}
