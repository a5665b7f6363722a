package main

import (
	"github.com/guardctl/guardctl/guardian"
	"github.com/spf13/cobra"
)

func newGuardianCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "guardian",
		Aliases: []string{"guardians", "g"},
		Short:   "Create, list, show, remove, export and import guardians",
		Long: `A guardian is a signing and an encryption certificate, with their private keys
when this host can unwrap key protectors made for it, or without them when it is
another host's guardian that key protectors can be granted to.`,
	}
	cmd.AddCommand(
		newGuardianCreateCmd(a),
		newGuardianListCmd(a),
		newGuardianShowCmd(a),
		newGuardianRemoveCmd(a),
		newGuardianRestoreCmd(a),
		newGuardianExportCmd(a),
		newGuardianImportCmd(a),
	)
	return cmd
}

// validName checks a guardian name given on the command line.
func validName(name string) error {
	if err := guardian.ValidateName(name); err != nil {
		return usageError("%v", err)
	}
	return nil
}

// completeGuardianNames completes a command's NAME argument with the names
// of the guardians in the store.
func completeGuardianNames(a *app) cobra.CompletionFunc {
	names := completeGuardianFlag(a)
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names(cmd, args, toComplete)
	}
}

// completeGuardianFlag completes a flag's value (--owner, --guardian) with
// the names of the guardians in the store, wherever the flag is on the
// command line ('kp grant FILE --guardian <TAB>').
func completeGuardianFlag(a *app) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		st, err := a.store()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		entries, err := st.List()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var names []cobra.Completion
		for _, e := range entries {
			names = append(names, e.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeRemovedNames completes the names of guardians in the trash.
func completeRemovedNames(a *app) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		st, err := a.store()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		removed, err := st.Trash()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		seen := map[string]bool{}
		var names []cobra.Completion
		for _, r := range removed {
			if !seen[r.Name] {
				seen[r.Name] = true
				names = append(names, r.Name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// nameResult is the JSON output of a dry run of guardian create and
// restore: the guardian's name and what would change; the note says it
// for people.
type nameResult struct {
	Name string `json:"name"`
	outcome
	noText
}
