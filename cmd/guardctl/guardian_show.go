package main

import "github.com/spf13/cobra"

func newGuardianShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:               "show NAME",
		Short:             "Show everything about one guardian",
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeGuardianNames(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validName(args[0]); err != nil {
				return err
			}
			st, err := a.store()
			if err != nil {
				return err
			}
			e, err := st.Get(args[0])
			if err != nil {
				return err
			}
			return a.showGuardian(e)
		},
	}
}
