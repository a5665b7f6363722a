package main

import (
	"fmt"

	"github.com/guardctl/guardctl/certstore"

	"github.com/spf13/cobra"
)

// removeResult is the JSON output of guardian remove.
type removeResult struct {
	Name    string `json:"name"`
	Purged  bool   `json:"purged"`
	TrashID string `json:"trashId,omitempty"`
	outcome
	noText // the note says it
}

func newGuardianRemoveCmd(a *app) *cobra.Command {
	var purge bool
	cmd := &cobra.Command{
		Use:     "remove NAME",
		Aliases: []string{"rm"},
		Short:   "Remove a guardian (recoverably, unless --purge)",
		Long: `Remove a guardian from the store, broken or not. It moves to the store's trash,
and 'guardctl guardian restore NAME' brings it back. With --purge it is deleted,
private keys included, and cannot be brought back.

VMs whose key protectors name only this guardian cannot start on this host
without it. guardctl asks first; --yes confirms without asking.`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeGuardianNames(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := validName(name); err != nil {
				return err
			}
			st, err := a.store()
			if err != nil {
				return err
			}
			plan, err := certstore.PlanRemove(st, name)
			if err != nil {
				return err
			}
			e := plan.Existing
			a.setChanged(true)
			if a.dryRun {
				a.note("would %s guardian %q", map[bool]string{false: "move to the trash", true: "delete"}[purge], name)
				return a.print(removeResult{Name: name, Purged: purge, outcome: a.outcome})
			}
			what := fmt.Sprintf("public-only guardian %q", name)
			switch {
			case e.Meta.HasPrivateKeys:
				what = fmt.Sprintf("guardian %q and its private keys", name)
			case e.Guardian.SigningKey != nil || e.Guardian.EncryptionKey != nil:
				what = fmt.Sprintf("guardian %q and the private key it has left", name)
			}
			question := fmt.Sprintf("Move %s to the trash?", what)
			if purge {
				question = fmt.Sprintf("Permanently delete %s? This cannot be undone.", what)
			}
			if err := a.confirm(question, fmt.Sprintf("refusing to remove guardian %q", name)); err != nil {
				return err
			}
			id, err := st.Remove(name, purge)
			if err != nil {
				return err
			}
			if purge {
				a.note("deleted guardian %q", name)
			} else {
				a.note("moved guardian %q to the trash; 'guardctl guardian restore %s' brings it back", name, name)
			}
			return a.print(removeResult{Name: name, Purged: purge, TrashID: id, outcome: a.outcome})
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, "delete the guardian instead of moving it to the trash")
	a.addDryRun(cmd)
	return asksToConfirm(cmd)
}
