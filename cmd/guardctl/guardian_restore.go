package main

import (
	"errors"

	"github.com/guardctl/guardctl/certstore"
	"github.com/spf13/cobra"
)

func newGuardianRestoreCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore NAME",
		Short: "Bring back a removed guardian from the trash",
		Long: `Bring back the most recently removed guardian called NAME from the store's
trash. 'guardctl guardian list --removed' shows what the trash holds.`,
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
			if errors.Is(err, certstore.ErrExists) {
				return withHint(err, exitExists, "remove the guardian that has the name now ('guardctl guardian remove "+args[0]+"'), then restore")
			}
			if err != nil {
				return err
			}
			a.note("restored guardian %q", args[0])
			a.notice(c)
			return a.showGuardian(c.Entry)
		},
	}
	a.addDryRun(cmd)
	return cmd
}
