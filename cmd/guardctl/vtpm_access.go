package main

import (
	"fmt"
	"strings"
	"time"

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
	opt := vtpm.AccessOptions{
		Policy: keyprotector.Policy{Now: time.Now(), AllowExpired: c.allowExpired},
		Backup: c.verb == "grant" || c.keepBackup, DryRun: a.dryRun,
		Rotate: c.rotate, Escrow: !c.noEscrow, KeepEarlierBackups: c.keepBackup,
	}
	var r vtpm.AccessResult
	if c.verb == "grant" {
		r, err = vtpm.GrantFile(file, ids, g, opt)
	} else {
		r, err = vtpm.RevokeFile(file, ids, g, c.thumbprint, opt)
	}
	if err != nil {
		return fileError(file, err)
	}
	now, backup, changed := r.Bundle, r.Backup, r.Changed
	p, err := keyprotector.Parse(now.KeyProtector)
	if err != nil {
		return err
	}
	a.setChanged(changed)
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
	if len(r.KeptBackups) > 0 {
		a.note("the earlier backups %s still let %s open it (--keep-backup): delete them once they are not needed", strings.Join(r.KeptBackups, ", "), who)
	}
	if len(r.RemovedBackups) > 0 {
		a.note("%s the earlier backups that still let %s open it: %s", map[bool]string{true: "would remove", false: "removed"}[a.dryRun], who, strings.Join(r.RemovedBackups, ", "))
	}
	_, err = a.showBundle(file, now, p, p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: true}), func(v *bundleView) {
		v.Backup = backup
		if backup != "" && c.verb == "revoke" {
			v.BackupOpensFor = who
		}
		v.KeptBackups, v.RemovedBackups = r.KeptBackups, r.RemovedBackups
	})
	return err
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
