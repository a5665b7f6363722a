package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/spf13/cobra"
)

// kpGuardianView is one wrapping in the JSON output (docs/json.md).
type kpGuardianView struct {
	WrappingID           uint32    `json:"wrappingId"`
	Role                 string    `json:"role"` // owner or guardian
	SigningSubject       string    `json:"signingSubject"`
	SigningThumbprint    string    `json:"signingThumbprint"`
	EncryptionThumbprint string    `json:"encryptionThumbprint"`
	NotAfter             time.Time `json:"notAfter"`
	LocalGuardian        string    `json:"localGuardian,omitempty"` // the store guardian with the same certificates
	LocalPrivateKeys     bool      `json:"localPrivateKeys"`
	// LocalStatus: private-keys, public-only, broken or absent (this
	// store's guardian with these certificates, LocalProblem when broken).
	LocalStatus  string `json:"localStatus"`
	LocalProblem string `json:"localProblem,omitempty"`

	localInTPM bool // the local guardian's keys are in this host's TPM
}

// kpView is a key protector in the JSON output (docs/json.md).
type kpView struct {
	File                  string   `json:"file"`
	Signatures            string   `json:"signatures"` // valid, invalid, unsupported, expired
	Problem               string   `json:"problem,omitempty"`
	UnsupportedAlgorithms []string `json:"unsupportedAlgorithms,omitempty"`
	CanUnwrap             bool     `json:"canUnwrap"`
	UnwrapWith            string   `json:"unwrapWith,omitempty"`
	// UnwrapWithKeys says where that guardian's keys are: file or tpm.
	UnwrapWithKeys string `json:"unwrapWithKeys,omitempty"`
	// NeedsAllowExpired: its certificates are out of their dates, every
	// signature checked; guardctl uses it only with --allow-expired.
	NeedsAllowExpired bool `json:"needsAllowExpired,omitempty"`
	IsOwner           bool `json:"isOwner"` // this store holds the owner's private signing key
	// OwnerKnown: the owner is a guardian of this store (public parts are
	// enough), OwnerGuardian its name. Valid signatures from an owner this
	// store does not know prove nothing: anyone could have made them.
	OwnerKnown    bool   `json:"ownerKnown"`
	OwnerGuardian string `json:"ownerGuardian,omitempty"`
	// Verified: everything shown is verified (signatures checked, owner
	// known); Unverified says what is not, when it is not.
	Verified   bool             `json:"verified"`
	Unverified string           `json:"unverified,omitempty"`
	Guardians  []kpGuardianView `json:"guardians"`
	startView
	outcome

	store string // the store's description, for the text form
}

// describeKP builds the view of p as this store sees it. verr is what
// Verify said.
func (a *app) describeKP(file string, p *keyprotector.Protector, verr error) (kpView, error) {
	st, err := a.store()
	if err != nil {
		return kpView{}, err
	}
	entries, err := st.List()
	if err != nil {
		return kpView{}, err
	}
	v := kpView{File: file, Signatures: "valid", UnsupportedAlgorithms: p.UnsupportedAlgorithms(), Guardians: []kpGuardianView{}}
	var ke *keyprotector.Error
	if errors.As(verr, &ke) {
		v.Problem = ke.Msg
		switch ke.Kind {
		case keyprotector.KindUnsupported:
			v.Signatures = "unsupported"
		case keyprotector.KindExpired:
			v.Signatures, v.NeedsAllowExpired = "expired", true
		default:
			v.Signatures = "invalid"
		}
	} else if verr != nil {
		return kpView{}, verr
	}
	for _, w := range p.Wrappings {
		gv := kpGuardianView{
			WrappingID: w.ID, Role: "guardian",
			SigningSubject:       w.Signing.Subject.String(),
			SigningThumbprint:    guardian.Thumbprint(w.Signing),
			EncryptionThumbprint: guardian.Thumbprint(w.Encryption),
			NotAfter:             w.Signing.NotAfter.UTC(),
		}
		if w.Encryption.NotAfter.Before(gv.NotAfter) {
			gv.NotAfter = w.Encryption.NotAfter.UTC()
		}
		if w.ID == p.OwnerID {
			gv.Role = "owner"
		}
		var local string
		gv.LocalStatus, local, gv.LocalProblem = localStatus(w, entries)
		if gv.LocalStatus == "broken" {
			gv.LocalGuardian = local
		}
		for _, e := range entries {
			if !e.Broken() && w.Matches(e.Guardian) {
				gv.LocalGuardian = e.Name
				gv.LocalPrivateKeys = e.Meta.HasPrivateKeys
				gv.localInTPM = e.Meta.Keys == guardian.KeysTPM
				// Expired certificates are a policy refusal that
				// --allow-expired lifts, not a doubt about the key
				// protector: this host can unwrap it, with that flag.
				if e.Meta.HasPrivateKeys && (verr == nil || v.NeedsAllowExpired) && !v.CanUnwrap {
					v.CanUnwrap, v.UnwrapWith, v.UnwrapWithKeys = true, e.Name, string(guardian.KeysFile)
					if e.Meta.Keys == guardian.KeysTPM {
						v.UnwrapWithKeys = string(guardian.KeysTPM)
					}
				}
				if gv.Role == "owner" && e.Meta.HasPrivateKeys {
					v.IsOwner = true
				}
				if gv.Role == "owner" && !v.OwnerKnown {
					v.OwnerKnown, v.OwnerGuardian = true, e.Name
				}
			}
		}
		v.Guardians = append(v.Guardians, gv)
	}
	v.startView = describeStart(p, entries)
	if v.NeedsAllowExpired && v.HostCanStart {
		v.Verdict += " Its certificates are expired: guardctl unwraps it only with --allow-expired."
	}
	if v.HostCanStart && !v.OwnerKnown {
		// The keys to open it are here, but anyone holding this host's
		// public guardian could have made it: no reassurance.
		v.Verdict = fmt.Sprintf("This host holds the keys to open it (guardian %q), but its owner is UNKNOWN to this store, so nothing says who made it: guardctl unwraps it only with --allow-unknown-owner.", v.StartWith)
	}
	switch {
	case v.Signatures == "invalid":
		v.Unverified = "its signatures do not verify"
	case v.Signatures == "unsupported":
		v.Unverified = "its algorithms are outside guardctl's profile, so its signatures were not checked"
	case !v.OwnerKnown:
		v.Unverified = "its owner is not a guardian this store knows, so anyone could have made it"
	default:
		v.Verified = true
	}
	v.store = a.storeDescription()
	return v, nil
}

// unverifiedError is the error of a show or inspect that printed things it
// could not verify: exit 8, with how to trust the owner when that is why.
func unverifiedError(file, what string, ownerUnknown bool) error {
	e := &cliError{code: exitUnverified, msg: fmt.Sprintf("%s: not everything shown is verified: %s", file, what)}
	if ownerUnknown {
		_, e.hint = classify(&keyprotector.Error{Kind: keyprotector.KindUnknownOwner})
	}
	return e
}

// printKP prints a key protector (kp show, new and wrap).
func (a *app) printKP(v kpView) error {
	v.outcome = a.outcome
	return a.print(v)
}

// writeText writes the key protector's details, its guardians as a table,
// and the verdict.
func (v kpView) writeText(w io.Writer) error {
	status := v.Signatures
	if v.Problem != "" {
		status += ": " + v.Problem
	}
	unwrap := "no: no guardian in " + v.store + " is named in it"
	switch {
	case v.CanUnwrap && !v.OwnerKnown:
		unwrap = "only with --allow-unknown-owner: guardian " + v.UnwrapWith + " holds a key, but the owner is unknown"
	case v.CanUnwrap && v.NeedsAllowExpired:
		unwrap = "yes, with guardian " + v.UnwrapWith + " and --allow-expired (its certificates are expired)"
	case v.CanUnwrap:
		unwrap = "yes, with guardian " + v.UnwrapWith
		if v.UnwrapWithKeys == string(guardian.KeysTPM) {
			unwrap += " (its keys are in this host's TPM)"
		}
	case v.Signatures == "invalid":
		unwrap = "no: the key protector does not verify"
	case v.Signatures == "unsupported":
		unwrap = "no: its algorithms are outside guardctl's profile"
	}
	owner := "known: guardian " + v.OwnerGuardian
	if !v.OwnerKnown {
		owner = "UNKNOWN to this store: unverified, anyone could have made this key protector"
	}
	if err := writeDetails(w, [][2]string{
		{"File", v.File},
		{"Signatures", status},
		{"Owner", owner},
		{"This host can unwrap", unwrap},
		{"This host is the owner", yesNo(v.IsOwner)},
	}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(v.Guardians))
	for _, g := range v.Guardians {
		local := "-"
		if g.LocalGuardian != "" {
			local = g.LocalGuardian
			switch {
			case g.LocalStatus == "broken":
				local += " (broken)"
			case g.LocalPrivateKeys && g.localInTPM:
				local += " (keys in this host's TPM)"
			case g.LocalPrivateKeys:
				local += " (private keys)"
			}
		}
		rows = append(rows, []string{fmt.Sprint(g.WrappingID), g.Role, g.SigningSubject, g.SigningThumbprint, g.NotAfter.Format(time.DateOnly), local})
	}
	if err := writeTable(w, []string{"ID", "ROLE", "SIGNING SUBJECT", "SIGNING THUMBPRINT", "EXPIRES", "LOCAL GUARDIAN"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	_, err := fmt.Fprintln(w, v.Verdict)
	return err
}

func newKPShowCmd(a *app) *cobra.Command {
	var allowExpired bool
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Show a key protector's owner and guardians, and whether this host can open it",
		Long: `Show a key protector (FILE, or - for standard input): its owner and guardians (subjects, thumbprints, expiry), the
local guardian that matches each, whether this host can unwrap it and whether it
is the owner, and whether the signatures verify.

It ends with one line that answers "can this host start this VM?": yes, when
this store holds, for one of its guardians, both certificates with their
private keys; otherwise which certificate (subject, thumbprint) is missing. For a
Hyper-V VM, save its key protector first, as bytes:
[IO.File]::WriteAllBytes("vm1.kp", (Get-VMKeyProtector -VMName vm1)).

A key protector that uses algorithms guardctl does not know (as one Hyper-V wrote
may) is still listed, with the algorithm named. Valid signatures only prove
who the owner is: the owner is trusted when it is a guardian of this store
(public parts are enough). Expired guardian certificates are named, with
--allow-expired as what unwrapping needs. Exits 0 when everything shown is
verified, 5 when its signatures do not verify or its certificates are expired
(unless --allow-expired), 8 when it is shown but not verified (an owner this
store does not know, algorithms guardctl cannot check).`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := readKeyProtector(args[0])
			if err != nil {
				return err
			}
			verr := p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: allowExpired})
			v, err := a.describeKP(args[0], p, verr)
			if err != nil {
				return err
			}
			if err := a.printKP(v); err != nil {
				return err
			}
			if v.Signatures == "invalid" {
				return &cliError{code: exitVerification, msg: args[0] + ": " + v.Problem}
			}
			if v.NeedsAllowExpired {
				return inFile(args[0], verr)
			}
			if !v.Verified {
				return unverifiedError(args[0], v.Unverified, !v.OwnerKnown)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&allowExpired, "allow-expired", false, "do not count expired guardian certificates as a problem")
	return cmd
}
