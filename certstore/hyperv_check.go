package certstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/guardctl/guardctl/guardian"
)

func (s *HyperV) certPath(tp string) string { return ShieldedVMStore + `\` + tp }

// Check finds what goes wrong in Hyper-V's store and, with repair, sets
// right what can be without losing anything:
//   - a registration whose certificates were deleted: unregistered, and
//     remembered in the trash so that restore can register it again;
//   - a pair (or a lone certificate) no registration names, as
//     Remove-HgsGuardian leaves them: moved to TrashStore, never deleted;
//   - a pair guardctl added without HgsClient: registered;
//   - a guardian without usable private keys: named, left as it is;
//   - several generations of one name, and expired or expiring
//     certificates: named.
func (s *HyperV) Check(repair bool) ([]Finding, error) {
	if _, err := os.Stat(s.stateDir); repair && errors.Is(err, fs.ErrNotExist) {
		// Nothing to lock yet; look first, so that a clean store stays
		// untouched.
		found, err := s.Check(false)
		if err != nil || len(found) == 0 {
			return found, err
		}
	}
	st, unlock, err := s.locked(repair)
	if err != nil {
		return nil, err
	}
	defer unlock()
	now := s.Now()
	var out []Finding
	moved := map[*hvGuardian]bool{}
	trash := func(f *Finding, g *hvGuardian, reason, action string) error {
		f.Repairable = true
		if !repair {
			return nil
		}
		if _, err := s.toTrash(st, g, reason); err != nil {
			return err
		}
		moved[g] = true
		f.Action = action
		return nil
	}
	for _, g := range st.gs {
		f := Finding{Name: g.name, Path: g.path(s), Detail: g.problem}
		restoreHint := fmt.Sprintf("; 'guardctl guardian restore %s' brings it back", g.name)
		switch {
		case g.reg != nil && (g.sig == nil || g.enc == nil):
			f.Kind = FindingBroken
			if err := trash(&f, g, "repair: registered without its certificates",
				fmt.Sprintf("unregistered; kept in the trash, so 'guardctl guardian restore %s' registers it again once its certificates are back", g.name)); err != nil {
				return out, err
			}
		case g.sig == nil && g.enc == nil:
			f.Kind = FindingBroken
			if err := trash(&f, g, "repair: certificates gone", "guardctl's record of it moved to the trash"); err != nil {
				return out, err
			}
		case g.sig == nil || g.enc == nil:
			f.Kind = FindingLeftover
			if err := trash(&f, g, "repair: lone certificate", fmt.Sprintf("moved to the %q store%s", TrashStore, restoreHint)); err != nil {
				return out, err
			}
		case g.problem != "":
			f.Kind = FindingNoPrivateKey
		case g.reg != nil && !g.reg.HasPrivateSigningKey && g.hasKeys():
			// Hyper-V goes by HgsClient: named, not repairable here.
			f.Kind, f.Detail = FindingNoPrivateKey, g.warning
		case g.pending:
			f.Kind, f.Detail = FindingUnregistered, g.warning
			f.Repairable = true
			if repair {
				if err := s.registry.Register(g.name, g.sigTP, g.encTP); err != nil {
					return out, fmt.Errorf("registering guardian %q with HgsClient: %w", g.name, err)
				}
				rec := *g.rec
				rec.Pending = false
				if err := s.setRecord(rec.Signing, rec.Encryption, &rec); err != nil {
					return out, err
				}
				f.Action = "registered with HgsClient"
			}
		case g.leftover:
			f.Kind, f.Detail = FindingLeftover, g.warning
			if err := trash(&f, g, "repair: not registered", fmt.Sprintf("moved to the %q store%s", TrashStore, restoreHint)); err != nil {
				return out, err
			}
		}
		if f.Kind != "" {
			out = append(out, f)
		}
		if moved[g] || g.sig == nil || g.enc == nil {
			continue
		}
		end := g.sig.Cert.NotAfter
		if g.enc.Cert.NotAfter.Before(end) {
			end = g.enc.Cert.NotAfter
		}
		switch {
		case now.After(end):
			// A warning, not a problem: Hyper-V still starts the VMs, and
			// nothing --repair could do changes it, so a script's check
			// must not fail on it for ever.
			out = append(out, Finding{Kind: FindingExpired, Name: g.name, Path: g.path(s), Warning: true,
				Detail: fmt.Sprintf("its certificates expired on %s; Hyper-V still unwraps with them, but new key protectors need -AllowExpired: create a new guardian and grant it to the VMs", end.UTC().Format(time.DateOnly))})
		case now.Add(ExpiringWithin).After(end):
			out = append(out, Finding{Kind: FindingExpiring, Name: g.name, Path: g.path(s), Warning: true,
				Detail: fmt.Sprintf("its certificates expire on %s, in %d days", end.UTC().Format(time.DateOnly), DaysLeft(end, now))})
		}
	}
	gens := map[string][]*hvGuardian{}
	var order []string
	for _, g := range st.gs {
		if g.subjectName == "" {
			continue
		}
		if gens[g.subjectName] == nil {
			order = append(order, g.subjectName)
		}
		gens[g.subjectName] = append(gens[g.subjectName], g)
	}
	for _, n := range order {
		gs := gens[n]
		if len(gs) < 2 {
			continue
		}
		var parts []string
		left := 0
		for _, g := range gs {
			state := "not registered"
			if g.reg != nil {
				state = "registered"
			}
			if !moved[g] {
				left++
			}
			parts = append(parts, fmt.Sprintf("%s (%s, made %s)", g.name, state, notBefore(g).UTC().Format(time.DateOnly)))
		}
		f := Finding{Kind: FindingGenerations, Name: n, Path: ShieldedVMStore, Warning: true,
			Detail: fmt.Sprintf("%d generations of (%s): %s", len(gs), n, strings.Join(parts, ", "))}
		if repair && left < len(gs) {
			f.Action = fmt.Sprintf("%d not registered moved to the %q store", len(gs)-left, TrashStore)
		}
		out = append(out, f)
	}
	// An imported PFX lands in Personal (My) unless a store is named.
	personal, err := s.stores.List(PersonalStore)
	if err != nil {
		return out, fmt.Errorf("reading LocalMachine\\%s: %w", PersonalStore, err)
	}
	for _, c := range personal {
		role, name, host, ok := subjectOf(c.Cert)
		if !ok {
			continue
		}
		out = append(out, Finding{Kind: FindingMisplaced, Name: name, Path: PersonalStore + `\` + guardian.Thumbprint(c.Cert), Warning: true,
			Detail: fmt.Sprintf("the %s certificate of guardian (%s) (%s) is in LocalMachine\\Personal, where Hyper-V does not look: export it with its key and import the pair with 'guardctl guardian import'", role, name, host)})
	}
	for _, tp := range st.unknown {
		out = append(out, Finding{Kind: FindingUnexpected, Path: s.certPath(tp), Warning: true,
			Detail: fmt.Sprintf("a certificate that is not a guardian's (%s); left alone", st.certs[tp].Cert.Subject)})
	}
	return out, nil
}

// path names g in findings: its registration, or its first certificate.
func (g *hvGuardian) path(s *HyperV) string {
	switch {
	case g.reg != nil && (g.sig == nil || g.enc == nil):
		return "HgsClient guardian " + g.reg.Name
	case g.sig != nil:
		return s.certPath(g.sigTP)
	case g.enc != nil:
		return s.certPath(g.encTP)
	}
	return "guardctl record " + g.name
}

// DaysLeft is how many whole days are left until end (0 when past).
func DaysLeft(end, now time.Time) int {
	if !end.After(now) {
		return 0
	}
	return int(end.Sub(now) / (24 * time.Hour))
}
