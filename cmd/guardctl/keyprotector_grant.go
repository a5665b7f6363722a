package main

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/spf13/cobra"
)

// kpChange is grant or revoke, applied to many files.
type kpChange struct {
	verb string // grant or revoke
	revokeFlags
	allowExpired bool
	dryRun       bool
	noBackup     bool
	keepBackup   bool
	jobs         int
}

// kpFileResult is one file in the JSON output of grant and revoke.
type kpFileResult struct {
	File    string `json:"file"`
	Changed bool   `json:"changed"`
	Backup  string `json:"backup,omitempty"`
	// BackupOpensFor says who the backup of a revoke still lets unwrap.
	BackupOpensFor string `json:"backupOpensFor,omitempty"`
	Error          string `json:"error,omitempty"`
	code           int
	err            error
}

func (c *kpChange) register(cmd *cobra.Command, a *app) {
	f := cmd.Flags()
	c.revokeFlags.register(cmd, a, c.verb)
	f.BoolVar(&c.allowExpired, "allow-expired", false, "accept expired guardian certificates")
	if c.verb == "grant" {
		f.BoolVar(&c.noBackup, "no-backup", false, "do not keep the previous version of each file as a .bak backup")
	} else {
		f.BoolVar(&c.keepBackup, "keep-backup", false, "keep the previous version of each file as a .bak backup (0600), which still lets the revoked guardian unwrap")
		f.BoolVar(&c.noBackup, "no-backup", false, "keep no backup (the default for revoke)")
		f.MarkHidden("no-backup")
	}
	f.IntVar(&c.jobs, "jobs", 0, "files to work on at once (0: one per CPU)")
	a.addDryRun(cmd)
}

func (c *kpChange) run(a *app, files []string) error {
	if err := notInPlace("kp "+c.verb, files...); err != nil {
		return err
	}
	c.dryRun = a.dryRun
	g, who, err := c.target(a, c.verb, c.allowExpired)
	if err != nil {
		return err
	}
	ids, err := a.identities()
	if err != nil {
		return err
	}
	what := fmt.Sprintf("%s key protector", fmt.Sprint(len(files)))
	if len(files) == 1 {
		what = files[0]
	} else {
		what += "s"
	}
	action := map[string]string{"grant": "Give %s access to %s?", "revoke": "Take access to %[2]s away from %[1]s?"}[c.verb]
	if err := a.confirm(fmt.Sprintf(action, asking(who, g), what), fmt.Sprintf("refusing to %s", c.verb)); err != nil {
		return err
	}
	results := make([]kpFileResult, len(files))
	work := make(chan int)
	var wg sync.WaitGroup
	jobs := c.jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	for range min(jobs, len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i] = c.apply(files[i], ids, g, who)
			}
		}()
	}
	for i := range files {
		work <- i
	}
	close(work)
	wg.Wait()

	code, failed := exitOK, 0
	var firstErr error
	for _, r := range results {
		if r.Error != "" {
			failed++
			if code == exitOK {
				code, firstErr = r.code, r.err
			}
		}
	}
	if a.output == "json" {
		if err := writeJSON(a.stdout, results); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			switch {
			case r.Error != "" && len(files) > 1:
				fmt.Fprintf(a.stderr, "guardctl: error: %s\n", r.Error)
			case r.Error != "":
				// one file: its error, with its hint, is the command's
			case r.Changed:
				a.note("guardctl: %s: %s %s", r.File, map[string]string{"grant": "granted", "revoke": "revoked"}[c.verb], who)
				if r.BackupOpensFor != "" {
					a.note("guardctl: the backup %s still lets %s unwrap: delete it once it is not needed", r.Backup, r.BackupOpensFor)
				}
			default:
				a.note("guardctl: %s: unchanged (%s %s)", r.File, who, map[string]string{"grant": "already has access", "revoke": "has no access"}[c.verb])
			}
		}
	}
	switch {
	case failed == 0:
	case len(files) == 1:
		return firstErr
	case failed == len(files):
		return &cliError{code: code, msg: fmt.Sprintf("none of the %d key protectors could be changed", len(files))}
	default:
		done := fmt.Sprintf("the other %d were done", len(files)-failed)
		if len(files)-failed == 1 {
			done = "the other one was done"
		}
		return &cliError{code: code, msg: fmt.Sprintf("%d of %d key protectors could not be changed; %s", failed, len(files), done)}
	}
	return nil
}

// apply changes one file: read, verify, change and replace it, under a
// lock on the file (keyprotector.GrantFile, RevokeFile).
func (c *kpChange) apply(file string, ids []*guardian.Guardian, g *guardian.Guardian, who string) kpFileResult {
	res := kpFileResult{File: file}
	opt := keyprotector.FileOptions{Policy: keyprotector.Policy{Now: time.Now(), AllowExpired: c.allowExpired}, DryRun: c.dryRun}
	var r keyprotector.FileResult
	var err error
	if c.verb == "grant" {
		opt.Backup = !c.noBackup
		r, err = keyprotector.GrantFile(file, ids, g, opt)
	} else {
		opt.Backup = c.keepBackup
		if c.thumbprint != "" {
			r, err = keyprotector.RevokeThumbprintFile(file, ids, c.thumbprint, opt)
		} else {
			r, err = keyprotector.RevokeFile(file, ids, g, opt)
		}
	}
	if err != nil {
		err = fileError(file, err)
		res.code, _ = classify(err)
		res.Error, res.err = err.Error(), err
		return res
	}
	res.Changed, res.Backup = r.Changed, r.Backup
	if c.verb == "revoke" && r.Backup != "" {
		res.BackupOpensFor = who
	}
	return res
}

func newKPGrantCmd(a *app) *cobra.Command {
	c := &kpChange{verb: "grant"}
	cmd := &cobra.Command{
		Use:   "grant FILE... --guardian H",
		Short: "Let another guardian unwrap key protectors",
		Long: `Add a wrapping for guardian H to each key protector. It needs the owner's
private signing key and a guardian that can unwrap, both in this store; H may be
public-only (imported with 'guardian import --public'). Files are worked on in
parallel; each is replaced atomically and its previous version kept as a .bak
backup unless --no-backup. guardctl asks first; --yes confirms.`,
		Example: `  guardctl kp grant vm1.kp --guardian host-b --yes
  guardctl kp grant /srv/vms/*.kp --guardian new-cluster-node --yes --no-backup`,
		Args: atLeastOneArg("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error { return c.run(a, args) },
	}
	c.register(cmd, a)
	return cmd
}

func newKPRevokeCmd(a *app) *cobra.Command {
	c := &kpChange{verb: "revoke"}
	cmd := &cobra.Command{
		Use:   "revoke FILE... (--guardian H | --thumbprint T)",
		Short: "Stop a guardian from unwrapping key protectors",
		Long: `Remove guardian H's wrapping from each key protector (the owner's cannot be
removed). It needs the owner's private signing key. A guardian no store here
knows any more (a decommissioned host) is named by its signing thumbprint, as
'kp show' prints it: --thumbprint T. No copy of the old file is
kept unless --keep-backup, since it would still let H unwrap. The transport key
stays the same: a revoked host that kept the key or an old copy of the file still knows it
(for vTPM bundles, 'guardctl vtpm revoke --rotate' changes the key).`,
		Args: atLeastOneArg("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error { return c.run(a, args) },
	}
	c.register(cmd, a)
	return cmd
}

// atLeastOneArg requires one or more positional arguments, named name.
func atLeastOneArg(name string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return &cliError{code: exitUsage, msg: "missing " + name, hint: "usage: " + cmd.UseLine()}
		}
		return nil
	}
}
