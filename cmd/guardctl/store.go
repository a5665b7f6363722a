package main

import (
	"fmt"

	"github.com/guardctl/guardctl/certstore"
	"github.com/spf13/cobra"
)

func newStoreCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Check and repair the guardian store",
	}
	cmd.AddCommand(newStoreCheckCmd(a))
	return cmd
}

// checkResult is the JSON output of store check.
type checkResult struct {
	Store    string `json:"store"`
	Clean    bool   `json:"clean"`
	Repaired bool   `json:"repaired"`
	// Remaining counts the findings that are problems (not warnings) and
	// were not repaired: store check exits 6 when it is not 0.
	Remaining int                 `json:"remaining"`
	Findings  []certstore.Finding `json:"findings"`
	outcome
}

func newStoreCheckCmd(a *app) *cobra.Command {
	var repair bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Find broken guardians and leftovers of interrupted writes",
		Long: `Check every entry of the store: guardians whose files are missing, damaged or
do not match (a key deleted by hand, a corrupted certificate), leftovers of a
write that was interrupted, files that are not part of a store, and keys or
directories other users can read.

With --repair, broken entries and leftovers are moved to the store's
lost+found directory (nothing is deleted) and permissions are tightened.

On Hyper-V's store (--store hyperv) it finds registrations whose certificates
were deleted, guardians without usable private keys, pairs Remove-HgsGuardian
left behind, generations of one name piling up, pairs added while HgsClient was
missing, and expired or expiring certificates. With --repair, a registration
without certificates is unregistered (and kept in the trash, so restore can
register it again), leftover pairs are moved to the "guardctl Removed
Guardians" store (restorable, never deleted), and pending names are
registered. A guardian without private keys cannot be repaired: import its PFX
pair again.

Exits 0 when the store is clean (or was repaired, or only warnings remain), 6
when problems remain.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.store()
			if err != nil {
				return err
			}
			// A dry run of --repair is a check: every finding says
			// whether --repair acts on it.
			acting := repair && !a.dryRun
			findings, err := st.Check(acting)
			if err != nil {
				return err
			}
			changed := false
			res := checkResult{Store: st.Location(), Clean: len(findings) == 0, Findings: findings}
			for _, f := range findings {
				fixed := f.Action != "" || (repair && f.Repairable)
				changed = changed || (repair && f.Repairable)
				if !f.Warning && !fixed {
					res.Remaining++
				}
			}
			res.Repaired = acting && changed
			a.setChanged(changed)
			res.outcome = a.outcome
			if res.Findings == nil {
				res.Findings = []certstore.Finding{}
			}
			if a.output == "json" {
				if err := writeJSON(a.stdout, res); err != nil {
					return err
				}
			} else if len(findings) == 0 {
				a.note("guardctl: store %s is clean", st.Location())
			} else {
				rows := make([][]string, 0, len(findings))
				for _, f := range findings {
					action := f.Action
					switch {
					case action == "" && repair && f.Repairable:
						action = "would be repaired"
					case action == "":
						action = "-"
					}
					rows = append(rows, []string{string(f.Kind), f.Path, f.Detail, action})
				}
				if err := writeTable(a.stdout, []string{"KIND", "PATH", "PROBLEM", "ACTION"}, rows); err != nil {
					return err
				}
			}
			switch {
			case res.Remaining > 0 && !repair:
				return &cliError{code: exitStoreProblem, msg: "the store has problems", hint: "'guardctl store check --repair' moves them aside without deleting anything"}
			case res.Remaining > 0:
				return &cliError{code: exitStoreProblem, msg: fmt.Sprintf("%d of the problems need more than --repair can do", res.Remaining), hint: "see the PROBLEM column: a guardian without private keys needs its PFX pair imported again ('guardctl guardian import NAME --dir DIR --force')"}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "move broken entries and leftovers to lost+found and fix permissions")
	a.addDryRun(cmd)
	return cmd
}
