package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/guardctl/guardctl/certstore"
	"github.com/spf13/cobra"
)

func newStoreCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Check and repair the guardian store",
	}
	cmd.AddCommand(newStoreCheckCmd(a), newStoreRecoverCmd(a))
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

	repair bool // --repair: a repairable finding "would be repaired"
}

func newStoreCheckCmd(a *app) *cobra.Command {
	var repair bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Find broken guardians and leftovers of interrupted writes",
		Long: `Check every entry of the store: guardians whose files are missing, damaged or
do not match (a key deleted by hand, a corrupted certificate), leftovers of a
write that was interrupted, files that are not part of a store (in the trash
too: anything that is not a removed guardian), keys or
directories other users can read, and files or directories whose mode denies
their owner (a key chmod 000): a mode problem, not damage.

With --repair, an entry whose only problem is its metadata (guardian.json
missing or damaged) while its certificates and keys verify as a pair gets its
metadata rebuilt in place (a damaged guardian.json goes to lost+found); other
broken entries and leftovers are moved to the store's lost+found directory
(nothing is deleted) and modes are set as the store writes them (0600 keys,
0700 directories; too open or too closed). 'guardctl store recover'
brings a guardian back out of lost+found. What --repair cannot do (lost+found
is not a directory, an entry cannot be renamed) is said for each finding, by a
dry run too; the other findings are still repaired. A store path of the wrong
type (guardians a file, .lock a directory) is reported, not repaired.

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
			changed, repairable := false, false
			res := checkResult{Store: st.Location(), Clean: len(findings) == 0, Findings: findings, repair: repair}
			for _, f := range findings {
				fixed := f.Action != "" || (repair && f.Repairable)
				changed = changed || (repair && f.Repairable)
				repairable = repairable || f.Repairable
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
			if len(findings) == 0 {
				a.note("store %s is clean", st.Location())
			}
			if err := a.print(res); err != nil {
				return err
			}
			switch {
			case res.Remaining > 0 && !repair && repairable:
				return &cliError{code: exitStoreProblem, msg: "the store has problems", hint: "'guardctl store check --repair' moves them aside without deleting anything"}
			case res.Remaining > 0 && !repair:
				return &cliError{code: exitStoreProblem, msg: "the store has problems --repair cannot put right", hint: "do what the PROBLEM and ACTION columns (detail and cannotRepair in JSON) say, then run 'guardctl store check' again"}
			case res.Remaining > 0:
				return &cliError{code: exitStoreProblem, msg: fmt.Sprintf("%d of the problems need more than --repair can do", res.Remaining), hint: "see the PROBLEM and ACTION columns (detail and cannotRepair in JSON), put right what they name, and run --repair again; a guardian without private keys needs its PFX pair imported again ('guardctl guardian import NAME --dir DIR --force')"}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "move broken entries and leftovers to lost+found and fix permissions")
	a.addDryRun(cmd)
	return cmd
}

// writeText writes the findings as a table; nothing when there are none
// (the note says the store is clean).
func (res checkResult) writeText(w io.Writer) error {
	if len(res.Findings) == 0 {
		return nil
	}
	rows := make([][]string, 0, len(res.Findings))
	for _, f := range res.Findings {
		action := f.Action
		switch {
		case action == "" && f.CannotRepair != "":
			action = "cannot repair: " + f.CannotRepair
		case action == "" && res.repair && f.Repairable:
			action = "would be repaired"
		case action == "":
			action = "-"
		}
		rows = append(rows, []string{string(f.Kind), f.Path, f.Detail, action})
	}
	return writeTable(w, []string{"KIND", "PATH", "PROBLEM", "ACTION"}, rows)
}

// lostView is the JSON output of store recover without an item.
type lostView struct {
	Store string               `json:"store"`
	Items []certstore.LostItem `json:"items"`
}

// writeText lists what lost+found holds; nothing when it is empty (the
// note says so).
func (v lostView) writeText(w io.Writer) error {
	if len(v.Items) == 0 {
		return nil
	}
	rows := make([][]string, 0, len(v.Items))
	for _, it := range v.Items {
		name, keys, state := it.Name, "-", "recoverable"
		if name == "" {
			name = "-"
		}
		if it.Kind == "guardian" {
			keys = [...]string{"public only", "one private key", "private"}[it.PrivateKeys]
		}
		if !it.Recoverable {
			state = "no: " + strings.Join(it.Problems, "; ")
		}
		rows = append(rows, []string{it.ID, name, keys, state})
	}
	return writeTable(w, []string{"ITEM", "GUARDIAN", "KEYS", "RECOVERABLE"}, rows)
}

func newStoreRecoverCmd(a *app) *cobra.Command {
	var as string
	var force bool
	cmd := &cobra.Command{
		Use:   "recover [ITEM|NAME] [--as NAME] [--force]",
		Short: "List lost+found, or bring a guardian back out of it",
		Long: `Without an argument, list what 'store check --repair' moved to the store's
lost+found directory: each item, the guardian it holds, whether it holds
private keys, and whether it can be recovered (its certificates, and keys when
it has them, verify as a pair) or what is wrong with it.

With ITEM (an item's name in lost+found, as listed) or NAME (the newest
recoverable item holding that guardian), add that guardian back to the store,
under --as NAME when given, its metadata rebuilt if need be. An existing
guardian of the same name is replaced only with --force, and then kept in the
trash. The lost+found item is left as it was. Works on a directory store.

An item that is not what guardctl moved there from the store's own guardians,
as it was (an interrupted write's leftover, something put there by hand,
changed since, or dated in the future; the list says so) is shown with its
thumbprints and recovered only when you confirm (--yes). A guardian that comes
back without private keys is said to.`,
		Example: `  guardctl store recover
  guardctl store recover UntrustedGuardian
  guardctl store recover 20261125T131256.123456789Z-1a2b3c4d-host-b --as host-b-old`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.store()
			if err != nil {
				return err
			}
			dir, ok := st.(*certstore.Dir)
			if !ok {
				return usageError("store recover works on a directory store; %s has no lost+found", st.Location())
			}
			if len(args) == 0 {
				if as != "" || force {
					return usageError("--as and --force go with an item to recover")
				}
				items, err := dir.LostAndFound()
				if err != nil {
					return err
				}
				if items == nil {
					items = []certstore.LostItem{}
				}
				if len(items) == 0 {
					a.note("lost+found of %s is empty", dir.Location())
				}
				return a.print(lostView{Store: dir.Location(), Items: items})
			}
			if as != "" {
				if err := validName(as); err != nil {
					return err
				}
			}
			ch, err := dir.Recover(filepath.Base(args[0]), as, force, a.dryRun, false)
			var uv *certstore.UnverifiedError
			if errors.As(err, &uv) {
				a.warnUnverified(uv)
				if err := a.confirm(fmt.Sprintf("Recover guardian %q from %s anyway?", uv.Name, uv.Path), "recovering a guardian guardctl did not move to lost+found from the store as it is"); err != nil {
					return err
				}
				ch, err = dir.Recover(uv.ID, as, force, a.dryRun, true)
			}
			if errors.Is(err, certstore.ErrNotFound) {
				return withHint(err, exitNotFound, "'guardctl store recover' with no argument lists what lost+found holds")
			}
			if err != nil {
				return err
			}
			a.setChanged(true)
			if ch.ReplacedID != "" {
				a.note("the guardian %q it replaced is in the trash ('guardctl guardian list --removed')", ch.Entry.Name)
			}
			a.note("%s guardian %q into %s; %s", a.would("recovered"), ch.Entry.Name, dir.Location(), ch.Notice)
			a.notePublicOnly(ch.Entry)
			return a.showGuardian(ch.Entry)
		},
	}
	asksToConfirm(cmd)
	cmd.Flags().StringVar(&as, "as", "", "the name to give the recovered guardian")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing guardian of the same name (it goes to the trash)")
	a.addDryRun(cmd)
	return cmd
}
