package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/guardctl/guardctl/vtpm"
	"github.com/spf13/cobra"
)

// vtpmAccess is vtpm grant or revoke.
type vtpmAccess struct {
	verb string
	revokeFlags
	rotate       bool
	keepBackup   bool
	allowExpired bool
	noEscrow     bool
	// oldKey is the transport key a rotation replaced: a revoked guardian
	// may have kept it, so backups under it still open for that guardian.
	oldKey []byte
}

func (c *vtpmAccess) run(a *app, file string) error {
	if err := notInPlace("vtpm "+c.verb, file); err != nil {
		return err
	}
	g, who, err := c.target(a, c.verb, c.allowExpired)
	if err != nil {
		return err
	}
	// Read once before asking, so that a bad bundle fails first.
	if _, _, err := readBundle(file); err != nil {
		return err
	}
	ids, err := a.identities()
	if err != nil {
		return err
	}
	question := fmt.Sprintf("Give %s access to %s?", asking(who, g), file)
	if c.verb == "revoke" {
		question = fmt.Sprintf("Take access to %s away from %s?", file, asking(who, g))
		if c.rotate {
			question += " The payload is re-encrypted under a new transport key."
		}
	}
	if err := a.confirm(question, "refusing to "+c.verb); err != nil {
		return err
	}
	var now *vtpm.Bundle
	backup, changed, err := vtpm.UpdateFile(file, vtpm.UpdateOptions{Backup: c.verb == "grant" || c.keepBackup, DryRun: a.dryRun}, func(b *vtpm.Bundle) (*vtpm.Bundle, error) {
		now = b
		next, err := c.change(b, ids, g)
		if next != nil {
			now = next
		}
		return next, err
	})
	if err != nil {
		return fileError(file, err)
	}
	p, err := keyprotector.Parse(now.KeyProtector)
	if err != nil {
		return err
	}
	var stale []string
	if c.verb == "revoke" {
		if stale, err = c.earlierBackups(file, g, backup, a.dryRun); err != nil {
			return fileError(file, err)
		}
	}
	// Removing the backups that still open for the revoked guardian
	// changes what is on disk too.
	a.setChanged(changed || (len(stale) > 0 && !c.keepBackup))
	if !changed {
		a.note("%s: unchanged (%s %s)", file, who, map[string]string{"grant": "already has access", "revoke": "has no access"}[c.verb])
	} else if a.dryRun {
		a.note("would write %s", file)
	} else if backup != "" {
		if c.verb == "revoke" {
			a.note("%s written; the backup %s still lets %s open it: delete it once it is not needed", file, backup, who)
		} else {
			a.note("%s written; the previous version is %s", file, backup)
		}
	}
	switch {
	case len(stale) == 0:
	case c.keepBackup:
		a.note("the earlier backups %s still let %s open it (--keep-backup): delete them once they are not needed", strings.Join(stale, ", "), who)
	default:
		a.note("%s the earlier backups that still let %s open it: %s", map[bool]string{true: "would remove", false: "removed"}[a.dryRun], who, strings.Join(stale, ", "))
	}
	_, err = a.showBundle(file, now, p, p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: true}), func(v *bundleView) {
		v.Backup = backup
		if backup != "" && c.verb == "revoke" {
			v.BackupOpensFor = who
		}
		if c.keepBackup {
			v.KeptBackups = stale
		} else {
			v.RemovedBackups = stale
		}
	})
	return err
}

// earlierBackups finds the backups of file that earlier runs kept and that
// still open for the revoked guardian (its wrapping is in them, or after
// --rotate their payload is under the old transport key), and removes
// them unless --keep-backup (or --dry-run): otherwise the revoke, or the
// rotation, would take nothing away.
func (c *vtpmAccess) earlierBackups(file string, g *guardian.Guardian, kept string, dryRun bool) ([]string, error) {
	tp := c.thumbprint
	if tp == "" {
		tp = guardian.Thumbprint(g.Signing)
	}
	stale, err := vtpm.BackupsOpeningFor(file, func(kp []byte) bool {
		p, err := keyprotector.Parse(kp)
		return err == nil && p.FindThumbprint(tp) != nil
	}, c.oldKey)
	if err != nil {
		return nil, fmt.Errorf("looking for earlier backups that still open for it: %w", err)
	}
	stale = slices.DeleteFunc(stale, func(b string) bool { return b == kept })
	if len(stale) == 0 || c.keepBackup || dryRun {
		return stale, nil
	}
	if err := atomicfile.RemoveBackups(stale); err != nil {
		return nil, fmt.Errorf("removing the earlier backups that still open for it: %w", err)
	}
	return stale, nil
}

// change returns b with g granted or revoked (and, with --rotate, under a
// new transport key), or nil when g already has (or has no) access.
func (c *vtpmAccess) change(b *vtpm.Bundle, ids []*guardian.Guardian, g *guardian.Guardian) (*vtpm.Bundle, error) {
	p, err := keyprotector.Parse(b.KeyProtector)
	if err != nil {
		return nil, err
	}
	if err := p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: c.allowExpired}); err != nil {
		return nil, err
	}
	var changed bool
	var kpXML []byte
	if c.verb == "grant" {
		changed, kpXML, err = p.Grant(ids, g)
	} else if g = c.in(p, g); g != nil {
		changed, kpXML, err = p.Revoke(ids, g)
	}
	if err != nil || !changed {
		return nil, err
	}
	if c.verb == "revoke" && !c.noEscrow {
		left, err := keyprotector.Parse(kpXML)
		if err != nil {
			return nil, err
		}
		if err := left.CheckEscrow(ids, nil); err != nil {
			return nil, err
		}
	}
	if !c.rotate {
		return b.Reseal(keyprotector.EncodeFile(kpXML)), nil
	}
	// --rotate: the payload goes under a new transport key, wrapped for
	// those who keep access, so that a revoked guardian that kept the old
	// key learns nothing from the new bundle.
	newP, err := keyprotector.Parse(kpXML)
	if err != nil {
		return nil, err
	}
	oldKey, _, err := newP.Unwrap(ids)
	if err != nil {
		return nil, err
	}
	c.oldKey = oldKey
	files, err := b.Open(oldKey)
	if err != nil {
		return nil, err
	}
	owner, keep, err := newP.Members(ids)
	if err != nil {
		return nil, err
	}
	tk := keyprotector.NewTransportKey()
	_, rotatedXML, err := keyprotector.New(tk, owner, keep)
	if err != nil {
		return nil, err
	}
	modes := map[string]uint32{}
	for _, f := range b.Manifest.Files {
		modes[f.Name] = f.Mode
	}
	return vtpm.Seal(b.Manifest, files, modes, keyprotector.EncodeFile(rotatedXML), tk)
}

func newVTPMAccessCmd(a *app, verb string) *cobra.Command {
	c := &vtpmAccess{verb: verb, revokeFlags: revokeFlags{bundle: true}}
	cmd := &cobra.Command{
		Use:   verb + map[string]string{"grant": " FILE --guardian H", "revoke": " FILE (--guardian H | --thumbprint T)"}[verb],
		Short: map[string]string{"grant": "Let another guardian open a bundle (its payload is untouched)", "revoke": "Stop a guardian from opening a bundle (--rotate re-encrypts the payload)"}[verb],
		Long: map[string]string{
			"grant": `Add a wrapping for guardian H to the bundle's key protector; the payload is not
touched. Needs the owner's private signing key and a guardian that can unwrap,
both in this store. The bundle is replaced atomically and the old one kept
(0600).`,
			"revoke": `Remove guardian H's wrapping from the bundle's key protector (the owner's cannot
be removed). A guardian no store here knows any more is named by its signing
thumbprint, as 'vtpm inspect' prints it: --thumbprint T. Without --rotate the transport key stays the same: a revoked host
that kept it, or an old copy of the bundle, can still open the payload. With
--rotate the payload is re-encrypted under a new transport key wrapped for those
who keep access. No copy of the old bundle is kept unless --keep-backup, since
it would still open for H; for the same reason the earlier backups of the
bundle that still open for H (its wrapping is in them, or with --rotate their
payload is under the old transport key) are removed, and listed, unless
--keep-backup.`,
		}[verb],
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error { return c.run(a, args[0]) },
	}
	f := cmd.Flags()
	c.revokeFlags.register(cmd, a, verb)
	f.BoolVar(&c.allowExpired, "allow-expired", false, "accept expired guardian certificates")
	if verb == "revoke" {
		f.BoolVar(&c.rotate, "rotate", false, "re-encrypt the payload under a new transport key")
		f.BoolVar(&c.keepBackup, "keep-backup", false, "keep the previous bundle as a .bak (0600), which still lets the revoked guardian open it")
		addNoEscrow(cmd, &c.noEscrow)
	}
	a.addDryRun(cmd)
	return asksToConfirm(cmd)
}
