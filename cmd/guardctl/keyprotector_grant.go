package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// ioJobsPerCPU is how many files per CPU a batch works on at once by
// default: enough that while some wait for the disk (fsync), the others
// keep every CPU busy.
const ioJobsPerCPU = 8

// procsPerCPU is how many Ps (GOMAXPROCS) per CPU a batch runs with.
const procsPerCPU = 2

// kpChange is grant or revoke, applied to many files.
type kpChange struct {
	verb string // grant or revoke
	revokeFlags
	allowExpired bool
	dryRun       bool
	noBackup     bool
	keepBackup   bool
	jobs         int
	verbose      bool
	noEscrow     bool
}

// kpFileResult is one file in the JSON output of grant and revoke.
type kpFileResult struct {
	File    string `json:"file"`
	Changed bool   `json:"changed"`
	DryRun  bool   `json:"dryRun,omitempty"`
	Backup  string `json:"backup,omitempty"`
	// BackupOpensFor says who the backup of a revoke still lets unwrap.
	BackupOpensFor string `json:"backupOpensFor,omitempty"`
	// RemovedBackups are the earlier backups of the file (kept by grants)
	// that still let the revoked guardian unwrap, which a revoke removes
	// (with --dry-run: would remove); KeptBackups, the same left in place
	// with --keep-backup.
	RemovedBackups []string `json:"removedBackups,omitempty"`
	KeptBackups    []string `json:"keptBackups,omitempty"`
	Error          string   `json:"error,omitempty"`
	code           int
	err            error
}

// kpFileResults is the output of grant and revoke: JSON only; in every
// output mode report says on standard error what happened.
type kpFileResults []kpFileResult

func (kpFileResults) writeText(io.Writer) error { return nil }

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
		addNoEscrow(cmd, &c.noEscrow)
	}
	f.IntVar(&c.jobs, "jobs", 0, fmt.Sprintf("files to work on at once (0: %d per CPU, so that the disk's waits overlap the cryptography)", ioJobsPerCPU))
	f.BoolVar(&c.verbose, "verbose", false, "say what happened to each file (by default: one closing line, and a progress bar on a terminal)")
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
	// A goroutine blocked in fsync (or another system call) keeps its P
	// until the runtime takes it back, up to 10 ms later when nothing is
	// queued on it, and its CPU idles meanwhile: with two Ps per CPU the
	// other files' work goes on.
	cpus := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procsPerCPU * cpus))
	// One batch for all files: what is the same for each is done once,
	// and at most one file per P is in its cryptography, while the others
	// read, write and fsync.
	batch := keyprotector.NewBatch(procsPerCPU * cpus)
	// A batch makes much short-lived garbage (XML trees) in a small heap:
	// fewer collections leave more of the CPUs to the cryptography.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	bar := c.progressBar(a, len(files))
	jobs := c.jobs
	if jobs <= 0 {
		jobs = ioJobsPerCPU * cpus
	}
	for range min(jobs, len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i] = c.apply(files[i], ids, g, who, batch)
				if bar != nil {
					bar.Add(1)
				}
			}
		}()
	}
	for i := range files {
		work <- i
	}
	close(work)
	wg.Wait()
	if bar != nil {
		bar.Finish()
	}
	// Each file's content was synced before it replaced the old one;
	// one sync per directory makes the new names durable.
	if err := batch.Sync(); err != nil {
		return fmt.Errorf("%w: the files changed may not survive a crash; run the command again", err)
	}

	code, failed := exitOK, 0
	var firstErr error
	for i, r := range results {
		if r.err != nil {
			// Each file's "no guardian can unwrap" names the store.
			r.err = a.noAccessError(r.err, false)
			r.Error = r.err.Error()
			r.code, _ = classify(r.err)
			results[i] = r
		}
		if r.Error != "" {
			failed++
			if code == exitOK {
				code, firstErr = r.code, r.err
			}
		}
	}
	if err := a.print(kpFileResults(results)); err != nil {
		return err
	}
	c.report(a, results, who)
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

// progressMin is the smallest batch that shows a progress bar.
const progressMin = 5

// progressBar returns a bar on standard error for a batch of n files, or
// nil: only on a terminal, for more than a few files, and not with
// --verbose (whose lines would break it).
func (c *kpChange) progressBar(a *app, n int) *progressbar.ProgressBar {
	if n < progressMin || c.verbose || !isTerminalWriter(a.stderr) {
		return nil
	}
	return progressbar.NewOptions(n,
		progressbar.OptionSetWriter(a.stderr),
		progressbar.OptionSetDescription(a.would(map[string]string{"grant": "granting", "revoke": "revoking"}[c.verb])),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// report writes to standard error what people need: the error of each file
// that failed (when there are several: one file's error is the command's),
// with --verbose (or for a single file) what happened to each file, and
// always one closing line: granted N, unchanged N, failed N.
func (c *kpChange) report(a *app, results []kpFileResult, who string) {
	done := map[string]string{"grant": "granted", "revoke": "revoked"}[c.verb]
	if c.dryRun {
		done = "would " + c.verb
	}
	perFile := c.verbose || len(results) == 1
	changed, unchanged, failed := 0, 0, 0
	var backups, removed []string
	for _, r := range results {
		backups = append(backups, r.KeptBackups...)
		removed = append(removed, r.RemovedBackups...)
		switch {
		case r.Error != "":
			failed++
			if len(results) > 1 {
				message(a.stderr, kindError, r.Error)
			}
		case r.Changed:
			changed++
			if r.BackupOpensFor != "" {
				backups = append(backups, r.Backup)
			}
			if perFile {
				a.tell("%s: %s %s", r.File, done, who)
			}
		default:
			unchanged++
			if perFile {
				a.tell("%s: unchanged (%s %s)", r.File, who, map[string]string{"grant": "already has access", "revoke": "has no access"}[c.verb])
			}
		}
	}
	removes := map[bool]string{true: "would remove", false: "removed"}[c.dryRun]
	switch {
	case len(removed) == 1:
		a.tell("%s the earlier backup %s, which still let %s unwrap", removes, removed[0], who)
	case len(removed) > 1:
		a.tell("%s the %d earlier backups that still let %s unwrap: %s", removes, len(removed), who, strings.Join(removed, ", "))
	}
	switch {
	case len(backups) == 1:
		a.tell("the backup %s still lets %s unwrap: delete it once it is not needed", backups[0], who)
	case len(backups) > 1:
		a.tell("the %d backups (%s, ...) still let %s unwrap: delete them once they are not needed", len(backups), backups[0], who)
	}
	a.tell("%s %d, unchanged %d, failed %d", done, changed, unchanged, failed)
}

// apply changes one file: read, verify, change and replace it, under a
// lock on the file (keyprotector.GrantFile, RevokeFile).
func (c *kpChange) apply(file string, ids []*guardian.Guardian, g *guardian.Guardian, who string, batch *keyprotector.Batch) kpFileResult {
	res := kpFileResult{File: file, DryRun: c.dryRun}
	opt := keyprotector.FileOptions{Policy: keyprotector.Policy{Now: time.Now(), AllowExpired: c.allowExpired}, DryRun: c.dryRun, Batch: batch}
	var r keyprotector.FileResult
	var err error
	if c.verb == "grant" {
		opt.Backup = !c.noBackup
		r, err = keyprotector.GrantFile(file, ids, g, opt)
	} else {
		opt.Backup, opt.KeepEarlierBackups, opt.Escrow = c.keepBackup, c.keepBackup, !c.noEscrow
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
	res.Changed, res.Backup, res.RemovedBackups, res.KeptBackups = r.Changed, r.Backup, r.RemovedBackups, r.KeptBackups
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
	return asksToConfirm(cmd)
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
kept unless --keep-backup, since it would still let H unwrap; for the same
reason the earlier backups of the file that name H (kept by grant) are
removed, and listed, unless --keep-backup. The transport key
stays the same: a revoked host that kept the key or an old copy of the file still knows it
(for vTPM bundles, 'guardctl vtpm revoke --rotate' changes the key).`,
		Args: atLeastOneArg("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error { return c.run(a, args) },
	}
	c.register(cmd, a)
	return asksToConfirm(cmd)
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
