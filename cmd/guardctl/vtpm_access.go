package main

import (
	"fmt"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/guardctl/guardctl/vtpm"
	"github.com/spf13/cobra"
)

// vtpmAccess is vtpm grant or revoke.
type vtpmAccess struct {
	verb         string
	guardianName string
	rotate       bool
	allowExpired bool
}

func (c *vtpmAccess) run(a *app, file string) error {
	if err := notInPlace("vtpm "+c.verb, file); err != nil {
		return err
	}
	g, err := a.accessTarget(c.guardianName, c.verb, c.allowExpired)
	if err != nil {
		return err
	}
	b, p, err := readBundle(file)
	if err != nil {
		return err
	}
	if err := p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: c.allowExpired}); err != nil {
		return inFile(file, err)
	}
	ids, err := a.identities()
	if err != nil {
		return err
	}
	question := fmt.Sprintf("Give guardian %q (signing %s) access to %s?", g.Name, guardian.Thumbprint(g.Signing), file)
	if c.verb == "revoke" {
		question = fmt.Sprintf("Take access to %s away from guardian %q (signing %s)?", file, g.Name, guardian.Thumbprint(g.Signing))
		if c.rotate {
			question += " The payload is re-encrypted under a new transport key."
		}
	}
	if err := a.confirm(question, "refusing to "+c.verb); err != nil {
		return err
	}
	var changed bool
	var kpXML []byte
	if c.verb == "grant" {
		changed, kpXML, err = p.Grant(ids, g)
	} else {
		changed, kpXML, err = p.Revoke(ids, g)
	}
	if err != nil {
		return inFile(file, err)
	}
	if !changed {
		a.note("guardctl: %s: unchanged (guardian %q %s)", file, g.Name, map[string]string{"grant": "already has access", "revoke": "has no access"}[c.verb])
		return a.showBundle(file, b, p, nil)
	}
	if !c.rotate {
		return a.writeBundle(file, b.Reseal(keyprotector.EncodeFile(kpXML)), true)
	}
	// --rotate: the payload goes under a new transport key, wrapped for
	// those who keep access, so that a revoked guardian that kept the old
	// key learns nothing from the new bundle.
	newP, err := keyprotector.Parse(kpXML)
	if err != nil {
		return err
	}
	oldKey, _, err := newP.Unwrap(ids)
	if err != nil {
		return inFile(file, err)
	}
	files, err := b.Open(oldKey)
	if err != nil {
		return inFile(file, err)
	}
	owner, keep, err := newP.Members(ids)
	if err != nil {
		return err
	}
	tk := keyprotector.NewTransportKey()
	_, rotatedXML, err := keyprotector.New(tk, owner, keep)
	if err != nil {
		return err
	}
	modes := map[string]uint32{}
	for _, f := range b.Manifest.Files {
		modes[f.Name] = f.Mode
	}
	rotated, err := vtpm.Seal(b.Manifest, files, modes, keyprotector.EncodeFile(rotatedXML), tk)
	if err != nil {
		return err
	}
	return a.writeBundle(file, rotated, true)
}

func newVTPMAccessCmd(a *app, verb string) *cobra.Command {
	c := &vtpmAccess{verb: verb}
	cmd := &cobra.Command{
		Use:   verb + " FILE --guardian H",
		Short: map[string]string{"grant": "Let another guardian open a bundle (its payload is untouched)", "revoke": "Stop a guardian from opening a bundle (--rotate re-encrypts the payload)"}[verb],
		Long: map[string]string{
			"grant": `Add a wrapping for guardian H to the bundle's key protector; the payload is not
touched. Needs the owner's private signing key and a guardian that can unwrap,
both in this store. The bundle is replaced atomically and the old one kept.`,
			"revoke": `Remove guardian H's wrapping from the bundle's key protector (the owner's cannot
be removed). Without --rotate the transport key stays the same: a revoked host
that kept it, or an old copy of the bundle, can still open the payload. With
--rotate the payload is re-encrypted under a new transport key wrapped for those
who keep access.`,
		}[verb],
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error { return c.run(a, args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&c.guardianName, "guardian", "", "guardian to "+verb)
	f.BoolVar(&c.allowExpired, "allow-expired", false, "accept expired guardian certificates")
	if verb == "revoke" {
		f.BoolVar(&c.rotate, "rotate", false, "re-encrypt the payload under a new transport key")
	}
	cmd.MarkFlagRequired("guardian")
	cmd.RegisterFlagCompletionFunc("guardian", completeGuardianNames(a))
	return cmd
}
