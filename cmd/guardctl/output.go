package main

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
)

// certView is the JSON form of a certificate (docs/json.md).
type certView struct {
	Subject            string    `json:"subject"`
	Issuer             string    `json:"issuer"`
	Thumbprint         string    `json:"thumbprint"`
	SerialNumber       string    `json:"serialNumber"`
	NotBefore          time.Time `json:"notBefore"`
	NotAfter           time.Time `json:"notAfter"`
	KeyAlgorithm       string    `json:"keyAlgorithm"`
	KeySize            int       `json:"keySize"`
	SignatureAlgorithm string    `json:"signatureAlgorithm"`
	SelfSigned         bool      `json:"selfSigned"`
	HasPrivateKey      bool      `json:"hasPrivateKey"`
}

// guardianView is the JSON form of a guardian (docs/json.md).
type guardianView struct {
	Name           string `json:"name"`
	HasPrivateKeys bool   `json:"hasPrivateKeys"`
	// Keys says where the private keys are: file, tpm or "public only".
	Keys       string     `json:"keys"`
	TPM        *tpmView   `json:"tpm,omitempty"`
	Status     string     `json:"status"` // ok, warning, expiring, expired, broken
	Problem    string     `json:"problem,omitempty"`
	Problems   []string   `json:"problems,omitempty"` // every problem of a broken guardian; problem joins them
	Warning    string     `json:"warning,omitempty"`
	KeyProblem string     `json:"keyProblem,omitempty"` // the store holds private keys guardctl cannot read out
	DaysLeft   *int       `json:"daysLeft,omitempty"`
	Origin     string     `json:"origin,omitempty"`
	AddedAt    *time.Time `json:"addedAt,omitempty"`
	NotAfter   *time.Time `json:"notAfter,omitempty"`
	Signing    *certView  `json:"signing"`
	Encryption *certView  `json:"encryption"`

	keysRead int // private keys read, for a broken entry's Keys column
}

// tpmView is the JSON form of a TPM guardian's TPM (docs/json.md).
type tpmView struct {
	Manufacturer string `json:"manufacturer"`
	// EKSHA256 is the SHA-256 of the TPM's endorsement public key: the
	// host's identity in HGS's TPM mode.
	EKSHA256 string `json:"ekSHA256"`
	// PCRs is the boot-state binding of the encryption key (sha256:0,2,4,7).
	PCRs string `json:"pcrs,omitempty"`
	PIN  bool   `json:"pin"`
}

func newCertView(c *x509.Certificate, hasKey bool) *certView {
	if c == nil {
		return nil
	}
	v := &certView{
		Subject:            c.Subject.String(),
		Issuer:             c.Issuer.String(),
		Thumbprint:         guardian.Thumbprint(c),
		SerialNumber:       strings.ToUpper(c.SerialNumber.Text(16)),
		NotBefore:          c.NotBefore.UTC(),
		NotAfter:           c.NotAfter.UTC(),
		KeyAlgorithm:       c.PublicKeyAlgorithm.String(),
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		SelfSigned:         guardian.SelfSigned(c),
		HasPrivateKey:      hasKey,
	}
	if k, ok := c.PublicKey.(*rsa.PublicKey); ok {
		v.KeySize = k.N.BitLen()
	}
	return v
}

func newGuardianView(e *certstore.Entry, now time.Time) guardianView {
	g := e.Guardian
	// Keys the store holds but will not give out (a key Windows keeps
	// non-exportable) are still this host's.
	held := e.Meta.HasPrivateKeys && e.KeyErr != nil
	v := guardianView{
		Name:           e.Name,
		HasPrivateKeys: e.Meta.HasPrivateKeys,
		Origin:         string(e.Meta.Origin),
		Warning:        e.Warning,
		Signing:        newCertView(g.Signing, g.SigningKey != nil || held),
		Encryption:     newCertView(g.Encryption, g.EncryptionKey != nil || held),
	}
	if e.KeyErr != nil {
		v.KeyProblem = e.KeyErr.Error()
	}
	switch {
	case e.Meta.Keys == guardian.KeysTPM:
		v.Keys = string(guardian.KeysTPM)
	case e.Meta.HasPrivateKeys:
		v.Keys = string(guardian.KeysFile)
	default:
		v.Keys = string(guardian.KeysNone)
	}
	if m := e.Meta.TPM; m != nil && e.Meta.Keys == guardian.KeysTPM {
		v.TPM = &tpmView{Manufacturer: m.Manufacturer, EKSHA256: m.EKSHA256, PIN: m.PIN}
		if m.PCRs != nil {
			v.TPM.PCRs = m.PCRs.String()
		}
	}
	for _, k := range []bool{g.SigningKey != nil, g.EncryptionKey != nil} {
		if k {
			v.keysRead++
		}
	}
	if !e.Meta.AddedAt.IsZero() {
		t := e.Meta.AddedAt
		v.AddedAt = &t
	}
	if g.Signing != nil && g.Encryption != nil {
		t := g.NotAfter().UTC()
		v.NotAfter = &t
		days := certstore.DaysLeft(t, now)
		v.DaysLeft = &days
	}
	switch {
	case e.Broken():
		v.Status, v.Problem, v.Problems = "broken", e.Problem, e.Problems
		if len(v.Problems) == 0 {
			v.Problems = []string{e.Problem}
		}
	case now.After(*v.NotAfter):
		v.Status = "expired"
	case now.Add(certstore.ExpiringWithin).After(*v.NotAfter):
		v.Status = "expiring"
	case e.Warning != "":
		v.Status = "warning"
	default:
		v.Status = "ok"
	}
	return v
}

func (v guardianView) statusText() string {
	s := v.Status
	switch v.Status {
	case "broken":
		return "broken: " + v.Problem
	case "warning":
		return "warning: " + v.Warning
	case "expiring":
		s = fmt.Sprintf("expiring in %d days", *v.DaysLeft)
	}
	if v.Warning != "" {
		s += "; " + v.Warning
	}
	return s
}

func (v guardianView) keysText() string {
	switch {
	case v.HasPrivateKeys && v.Keys == string(guardian.KeysTPM):
		return "tpm" // generated in this host's TPM, never exported
	case v.HasPrivateKeys:
		return "private" // software keys: the "file" of the JSON's keys
	case v.Keys == string(guardian.KeysTPM) && v.keysRead > 0:
		return "one TPM key"
	case v.keysRead > 0:
		return "one private key" // a broken entry: what is really there
	}
	return "public only"
}

// outcome is the part of a changing command's JSON that says whether it
// changed something; with --dry-run, whether the same command without it
// would. Decided by meaning (the same certificates, the same key), never by
// comparing bytes guardctl encodes afresh on every run.
type outcome struct {
	Changed *bool `json:"changed,omitempty"`
	DryRun  bool  `json:"dryRun,omitempty"`
}

// setChanged records what the command changed (or would change).
func (a *app) setChanged(changed bool) {
	a.outcome = outcome{Changed: &changed, DryRun: a.dryRun}
}

// would is the verb of a note: "would VERB" in a dry run.
func (a *app) would(verb string) string {
	if a.dryRun {
		return "would " + verb
	}
	return verb
}

// writeJSON writes v indented, the only thing on standard output.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeTable writes a borderless table for people.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	t := tablewriter.NewTable(w,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders:  tw.BorderNone,
			Symbols:  tw.NewSymbols(tw.StyleNone),
			Settings: tw.Settings{Separators: tw.SeparatorsNone, Lines: tw.LinesNone},
		})),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignLeft),
		tablewriter.WithRowAlignment(tw.AlignLeft),
		tablewriter.WithRowAutoWrap(tw.WrapNone),
		tablewriter.WithPadding(tw.Padding{Left: "", Right: "  ", Overwrite: true}),
	)
	t.Header(header)
	if err := t.Bulk(rows); err != nil {
		return err
	}
	return t.Render()
}

// writeDetails writes "key: value" lines for one object.
func writeDetails(w io.Writer, pairs [][2]string) error {
	width := 0
	for _, p := range pairs {
		width = max(width, len(p[0]))
	}
	for _, p := range pairs {
		if _, err := fmt.Fprintf(w, "%-*s  %s\n", width+1, p[0]+":", p[1]); err != nil {
			return err
		}
	}
	return nil
}

func dateText(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.DateOnly)
}

// guardianResult is one guardian as guardian show, create, import and
// restore print it.
type guardianResult struct {
	guardianView
	outcome
}

// showGuardian prints one guardian.
func (a *app) showGuardian(e *certstore.Entry) error {
	return a.print(guardianResult{newGuardianView(e, time.Now()), a.outcome})
}

func (r guardianResult) writeText(w io.Writer) error {
	v := r.guardianView
	pairs := [][2]string{
		{"Name", v.Name},
		{"Keys", v.keysText()},
		{"Status", v.statusText()},
	}
	if v.KeyProblem != "" {
		pairs = append(pairs, [2]string{"Key export", "impossible: " + v.KeyProblem})
	}
	if t := v.TPM; t != nil {
		pairs = append(pairs,
			[2]string{"TPM", fmt.Sprintf("manufacturer %s, endorsement key SHA-256 %s", orDash(t.Manufacturer), orDash(t.EKSHA256))},
			[2]string{"TPM PCR binding", orText(t.PCRs, "none")},
			[2]string{"TPM PIN", yesNo(t.PIN)})
	}
	if v.Origin != "" {
		pairs = append(pairs, [2]string{"Origin", v.Origin})
	}
	for _, c := range []struct {
		role string
		v    *certView
	}{{"Signing", v.Signing}, {"Encryption", v.Encryption}} {
		if c.v == nil {
			pairs = append(pairs, [2]string{c.role + " certificate", "unreadable"})
			continue
		}
		pairs = append(pairs,
			[2]string{c.role + " subject", c.v.Subject},
			[2]string{c.role + " thumbprint", c.v.Thumbprint},
			[2]string{c.role + " key", fmt.Sprintf("%s %d bits, private key %s", c.v.KeyAlgorithm, c.v.KeySize, yesNo(c.v.HasPrivateKey))},
			[2]string{c.role + " valid", c.v.NotBefore.Format(time.DateOnly) + " to " + c.v.NotAfter.Format(time.DateOnly)},
		)
	}
	return writeDetails(w, pairs)
}

func orDash(s string) string { return orText(s, "-") }

func orText(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
