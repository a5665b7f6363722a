package tpmkey

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// PCRBinding binds a key to the values some PCRs of one bank held when it
// was made.
type PCRBinding struct {
	Bank string `json:"bank"` // sha1, sha256, sha384 or sha512
	PCRs []int  `json:"pcrs"` // ascending
	// Values are the PCRs' values (hex) at creation, in the order of PCRs.
	Values []string `json:"values,omitempty"`
}

var banks = map[string]tpm2.TPMAlgID{
	"sha1":   tpm2.TPMAlgSHA1,
	"sha256": tpm2.TPMAlgSHA256,
	"sha384": tpm2.TPMAlgSHA384,
	"sha512": tpm2.TPMAlgSHA512,
}

// ParsePCRs reads a PCR selection as tpm2-tools spell one: BANK:N,N,...
// (sha256:0,2,4,7).
func ParsePCRs(s string) (*PCRBinding, error) {
	bank, list, ok := strings.Cut(s, ":")
	if !ok || list == "" {
		return nil, errorf(KindSpec, "--pcrs %q: want BANK:PCR,PCR,... such as sha256:0,2,4,7", s)
	}
	bank = strings.ToLower(bank)
	if _, ok := banks[bank]; !ok {
		return nil, errorf(KindSpec, "--pcrs %q: unknown bank %q (sha1, sha256, sha384 or sha512)", s, bank)
	}
	b := &PCRBinding{Bank: bank}
	for _, p := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 || n > 23 {
			return nil, errorf(KindSpec, "--pcrs %q: %q is not a PCR number (0 to 23)", s, p)
		}
		if !slices.Contains(b.PCRs, n) {
			b.PCRs = append(b.PCRs, n)
		}
	}
	slices.Sort(b.PCRs)
	return b, nil
}

// String spells the selection as ParsePCRs reads it.
func (b *PCRBinding) String() string {
	ns := make([]string, len(b.PCRs))
	for i, n := range b.PCRs {
		ns[i] = strconv.Itoa(n)
	}
	return b.Bank + ":" + strings.Join(ns, ",")
}

func (b *PCRBinding) selection(pcrs ...int) tpm2.TPMLPCRSelection {
	us := make([]uint, len(pcrs))
	for i, n := range pcrs {
		us[i] = uint(n)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: banks[b.Bank], PCRSelect: tpm2.PCClientCompatible.PCRs(us...)}}}
}

// digest is what TPM2_PolicyPCR compares: SHA-256 (the session's hash) of
// the values at creation, concatenated in PCR order.
func (b *PCRBinding) digest() []byte {
	h := sha256.New()
	for _, v := range b.Values {
		raw, _ := hex.DecodeString(v)
		h.Write(raw)
	}
	return h.Sum(nil)
}

func (b *PCRBinding) policyPCR(session tpm2.TPMHandle) tpm2.PolicyPCR {
	return tpm2.PolicyPCR{PolicySession: session, PcrDigest: tpm2.TPM2BDigest{Buffer: b.digest()}, Pcrs: b.selection(b.PCRs...)}
}

// keyfilePolicy is the policy as the TSS2 PRIVATE KEY format records it,
// so that other tools (the OpenSSL tpm2 provider) can satisfy it too.
func (b *PCRBinding) keyfilePolicy(pin bool) []*keyfile.TPMPolicy {
	var cp bytes.Buffer
	cp.Write(tpm2.Marshal(tpm2.TPM2BDigest{Buffer: b.digest()}))
	cp.Write(tpm2.Marshal(b.selection(b.PCRs...)))
	out := []*keyfile.TPMPolicy{{CommandCode: int(tpm2.TPMCCPolicyPCR), CommandPolicy: cp.Bytes()}}
	if pin {
		out = append(out, &keyfile.TPMPolicy{CommandCode: int(tpm2.TPMCCPolicyAuthValue)})
	}
	return out
}

// read returns the current values of the binding's PCRs, one PCR at a time
// (a TPM returns at most eight values per read).
func (b *PCRBinding) read(t transport.TPM) ([]string, error) {
	out := make([]string, len(b.PCRs))
	for i, n := range b.PCRs {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: b.selection(n)}.Execute(t)
		if err != nil {
			return nil, err
		}
		if len(rsp.PCRValues.Digests) != 1 {
			return nil, errorf(KindOther, "the TPM has no PCR %d in its %s bank", n, b.Bank)
		}
		out[i] = hex.EncodeToString(rsp.PCRValues.Digests[0].Buffer)
	}
	return out, nil
}

func (d *Device) readPCRs(t transport.TPM, b *PCRBinding) error {
	vs, err := b.read(t)
	if err != nil {
		return d.describe(err, "the PCRs", nil)
	}
	b.Values = vs
	return nil
}

// pcrsChanged names the PCRs whose values differ from those k was bound to
// (when the values at creation are known).
func (d *Device) pcrsChanged(t transport.TPM, k *Key) error {
	if k.PCRs == nil {
		return errorf(KindPCR, "%s is bound to the boot state and the PCRs it is bound to changed since it was made: this host did not boot as it did then", k.Label)
	}
	now, err := k.PCRs.read(t)
	var changed []string
	if err == nil {
		for i, n := range k.PCRs.PCRs {
			if i < len(k.PCRs.Values) && now[i] != k.PCRs.Values[i] {
				changed = append(changed, fmt.Sprintf("%s:%d", k.PCRs.Bank, n))
			}
		}
	}
	what := "the PCRs it is bound to (" + k.PCRs.String() + ") differ from their values when it was made"
	if len(changed) > 0 {
		what = "PCR " + strings.Join(changed, ", ") + " changed since it was made"
	}
	e := errorf(KindPCR, "%s is bound to the boot state and %s: this host did not boot as it did then", k.Label, what)
	e.Changed = changed
	return e
}
