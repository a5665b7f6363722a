package main

import (
	"fmt"
	"strings"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/keyprotector"
)

// kpCertRef names a certificate in the JSON output of kp show.
type kpCertRef struct {
	Subject    string `json:"subject"`
	Thumbprint string `json:"thumbprint"`
}

// startView answers "can this host start this VM?" for a key protector:
// Hyper-V (or guardctl, for a vTPM bundle) can unwrap it when this host's
// store holds, for one of its guardians, both certificates with their
// private keys. Whether guardctl can check the key protector's signatures
// does not matter: Hyper-V's own key protectors use algorithms that are
// not published, and their guardians are still named in them.
type startView struct {
	HostCanStart bool        `json:"hostCanStart"`
	StartWith    string      `json:"startWith,omitempty"` // the store guardian that can
	Missing      []kpCertRef `json:"missing,omitempty"`   // what would let it, any one of them
	Verdict      string      `json:"verdict"`
}

// localStatus is what this store holds of wrapping w: "private-keys",
// "public-only", "broken" (with the guardian that has its certificates and
// what is wrong), or "absent".
func localStatus(w *keyprotector.Wrapping, entries []*certstore.Entry) (status, name, problem string) {
	sigTP, encTP := guardian.Thumbprint(w.Signing), guardian.Thumbprint(w.Encryption)
	status = "absent"
	for _, e := range entries {
		g := e.Guardian
		switch {
		case !e.Broken() && w.Matches(g):
			if e.Meta.HasPrivateKeys {
				return "private-keys", e.Name, ""
			}
			status, name, problem = "public-only", e.Name, ""
		case status == "absent" && ((g.Signing != nil && guardian.Thumbprint(g.Signing) == sigTP) || (g.Encryption != nil && guardian.Thumbprint(g.Encryption) == encTP)):
			problem = e.Problem
			if problem == "" {
				problem = "it holds only some of this guardian's certificates"
			}
			status, name = "broken", e.Name
		}
	}
	return status, name, problem
}

// describeStart works out the answer from the wrappings' local status.
func describeStart(p *keyprotector.Protector, entries []*certstore.Entry) startView {
	var v startView
	var lacking []string
	for _, w := range p.Wrappings {
		status, name, problem := localStatus(w, entries)
		if status == "private-keys" {
			v.HostCanStart, v.StartWith = true, name
			v.Verdict = fmt.Sprintf("This host can start the VM: guardian %q in this store holds the certificates of %q with their private keys.", name, w.Signing.Subject.CommonName)
			v.Missing = nil
			return v
		}
		ref := kpCertRef{Subject: w.Encryption.Subject.String(), Thumbprint: guardian.Thumbprint(w.Encryption)}
		v.Missing = append(v.Missing, ref)
		why := "is not in this store"
		switch status {
		case "public-only":
			why = fmt.Sprintf("is in this store (guardian %q) without its private key", name)
		case "broken":
			why = fmt.Sprintf("is in this store as guardian %q, which is broken: %s", name, problem)
		}
		lacking = append(lacking, fmt.Sprintf("%s (thumbprint %s) %s", ref.Subject, ref.Thumbprint, why))
	}
	switch len(lacking) {
	case 0:
		v.Verdict = "This host cannot start the VM: the key protector names no guardian."
	case 1:
		v.Verdict = "This host cannot start the VM: the certificate " + lacking[0] + "; import that guardian's PFX pair ('guardctl guardian import NAME --dir DIR')."
	default:
		v.Verdict = "This host cannot start the VM: it needs one of these certificates with its private key, and none is usable here: " + strings.Join(lacking, "; ") + "; import one of those guardians' PFX pairs ('guardctl guardian import NAME --dir DIR')."
	}
	return v
}
