package main

import (
	"errors"
	"fmt"

	"github.com/guardctl/guardctl/certstore"
	"github.com/spf13/cobra"
)

func newGuardianRestoreCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore NAME",
		Short: "Bring back a removed guardian from the trash",
		Long: `Bring back the most recently removed guardian called NAME from the store's
trash. 'guardctl guardian list --removed' shows what the trash holds.

Only what guardctl moved to the trash, as it was then, is restored without a
question: a guardian of that name put there by hand or by another program,
changed since, or dated in the future is shown with its thumbprints, and
restored only when you confirm (--yes). A guardian that comes back without
private keys is said to.`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeRemovedNames(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validName(args[0]); err != nil {
				return err
			}
			st, err := a.store()
			if err != nil {
				return err
			}
			plan, err := certstore.PlanRestore(st, args[0])
			if err == nil {
				a.setChanged(plan.Changed)
				if a.dryRun {
					a.note("would restore guardian %q", args[0])
					return a.print(nameResult{Name: args[0], outcome: a.outcome})
				}
			}
			var c *certstore.Change
			if err == nil {
				c, err = st.Restore(args[0])
			}
			var uv *certstore.UnverifiedError
			if dir, ok := st.(*certstore.Dir); ok && errors.As(err, &uv) {
				a.warnUnverified(uv)
				if err := a.confirm(fmt.Sprintf("Restore guardian %q from %s anyway?", uv.Name, uv.Path), "restoring a guardian guardctl did not put in the trash as it is"); err != nil {
					return err
				}
				c, err = dir.RestoreID(args[0], uv.ID)
			}
			if errors.Is(err, certstore.ErrExists) {
				return withHint(err, exitExists, "remove the guardian that has the name now ('guardctl guardian remove "+args[0]+"'), then restore")
			}
			if err != nil {
				return err
			}
			a.note("restored guardian %q", args[0])
			a.notePublicOnly(c.Entry)
			a.notice(c)
			return a.showGuardian(c.Entry)
		},
	}
	a.addDryRun(cmd)
	return asksToConfirm(cmd)
}

// warnUnverified shows, before the question, what an unverified trash or
// lost+found guardian is and why guardctl cannot vouch for it.
func (a *app) warnUnverified(uv *certstore.UnverifiedError) {
	keys := "with private keys"
	if uv.PublicOnly {
		keys = "public only: no private keys"
	}
	a.warn("%s: %s", uv.Path, uv.Problem)
	a.warn("it holds guardian %q (%s)\n  signing certificate thumbprint:    %s\n  encryption certificate thumbprint: %s", uv.Name, keys, uv.Signing, uv.Encryption)
}

// notePublicOnly says so when a guardian brought back holds no private
// keys: it can be granted access, but cannot own or open a key protector.
func (a *app) notePublicOnly(e *certstore.Entry) {
	if e != nil && e.Guardian != nil && !e.Guardian.HasPrivateKeys() {
		a.note("guardian %q came back public only (no private keys): this host can grant it access, but cannot sign or unwrap with it", e.Name)
	}
}
