package main

import (
	"io"
	"time"

	"github.com/spf13/cobra"
)

// removedView is the JSON form of a guardian in the trash.
type removedView struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// RemovedAt is absent when the store does not know it.
	RemovedAt *time.Time `json:"removedAt,omitempty"`
	// Unverified says why guardctl cannot vouch for the entry (restore
	// asks before bringing it back).
	Unverified string `json:"unverified,omitempty"`
}

func newGuardianListCmd(a *app) *cobra.Command {
	var removed bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the guardians in the store",
		Long: `List the guardians in the store, one row each: name, whether it holds private
keys, the signing and encryption thumbprints (SHA-1, as Windows shows them),
expiry and status (ok, expiring within 60 days, expired, warning or broken with
the reason). A broken entry is listed, not fatal: 'guardctl guardian remove' or
'guardctl store check --repair' deals with it.

In Hyper-V's store (--store hyperv) the list holds HgsClient's registered
guardians, pairs in Shielded VM Local Certificates that no registration names
(warning: a pair Remove-HgsGuardian left behind; older generations of a name
are listed as NAME@DATE), and registrations whose certificates or private keys
are missing (broken).`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if removed {
				return a.listRemoved()
			}
			st, err := a.store()
			if err != nil {
				return err
			}
			entries, err := st.List()
			if err != nil {
				return err
			}
			now := time.Now()
			views := make([]guardianView, 0, len(entries))
			for _, e := range entries {
				views = append(views, newGuardianView(e, now))
			}
			if len(views) == 0 {
				a.note("no guardians in %s", st.Location())
			}
			return a.print(guardianList(views))
		},
	}
	cmd.Flags().BoolVar(&removed, "removed", false, "list the guardians in the trash instead (see 'guardian restore')")
	return cmd
}

func (a *app) listRemoved() error {
	st, err := a.store()
	if err != nil {
		return err
	}
	removed, err := st.Trash()
	if err != nil {
		return err
	}
	views := make([]removedView, 0, len(removed))
	for _, r := range removed {
		v := removedView{Name: r.Name, ID: r.ID, Unverified: r.Unverified}
		if !r.RemovedAt.IsZero() {
			v.RemovedAt = &r.RemovedAt
		}
		views = append(views, v)
	}
	if len(views) == 0 {
		a.note("the trash of %s is empty", st.Location())
	}
	return a.print(removedList(views))
}

// guardianList is the output of guardian list: a table, nothing when it is
// empty (the note says so).
type guardianList []guardianView

func (l guardianList) writeText(w io.Writer) error {
	if len(l) == 0 {
		return nil
	}
	rows := make([][]string, 0, len(l))
	for _, v := range l {
		sig, enc := "-", "-"
		if v.Signing != nil {
			sig = v.Signing.Thumbprint
		}
		if v.Encryption != nil {
			enc = v.Encryption.Thumbprint
		}
		rows = append(rows, []string{v.Name, v.keysText(), sig, enc, dateText(v.NotAfter), v.statusText()})
	}
	return writeTable(w, []string{"NAME", "KEYS", "SIGNING THUMBPRINT", "ENCRYPTION THUMBPRINT", "EXPIRES", "STATUS"}, rows)
}

// removedList is the output of guardian list --removed.
type removedList []removedView

func (l removedList) writeText(w io.Writer) error {
	if len(l) == 0 {
		return nil
	}
	rows := make([][]string, 0, len(l))
	for _, v := range l {
		when := "-"
		if v.RemovedAt != nil {
			when = v.RemovedAt.Format(time.RFC3339)
		}
		note := ""
		if v.Unverified != "" {
			note = "unverified: " + v.Unverified
		}
		rows = append(rows, []string{v.Name, when, v.ID, note})
	}
	return writeTable(w, []string{"NAME", "REMOVED", "ID", "NOTE"}, rows)
}
