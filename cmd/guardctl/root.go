package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/tpmkey"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// app is the state every command shares: global flags and the streams.
type app struct {
	storeSpec string // --store: a directory or certstore.HyperVSpec
	tpmSpec   string // --tpm: the TPM that holds TPM guardians' keys
	pinFile   string // --pin-file: the TPM guardians' PIN
	// tpmDev is the TPM, opened on first use and closed when the command
	// ends.
	tpmDev  *tpmkey.Device
	output  string
	noInput bool
	yes     bool
	// dryRun is --dry-run, on the commands that change something.
	dryRun bool
	// outcome is what such a command reports in its JSON: whether it
	// changed something (or, with --dry-run, would).
	outcome outcome
	// asksToConfirm: the command running is marked with asksToConfirm.
	asksToConfirm bool

	stdin  *os.File
	stdout io.Writer
	stderr *os.File

	answers *bool // whether the terminal answered canPrompt's query
}

func run(args []string) int {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	return a.execute(args)
}

// execute runs one command line and returns its exit code.
func (a *app) execute(args []string) int {
	stdinArg.r, stdinArg.taken = a.stdin, false
	root := newRootCmd(a)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if a.tpmDev != nil {
		a.tpmDev.Close()
	}
	if err != nil {
		bundle := cmd != nil && cmd.Parent() != nil && cmd.Parent().Name() == "vtpm"
		return printError(a.stderr, a.noAccessError(err, bundle))
	}
	return exitOK
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "guardctl",
		Short: "Keep VMs with a virtual TPM alive across host reinstalls and migrations",
		Long: `guardctl manages guardians (the signing and encryption certificate pairs that
Hyper-V key protectors are wrapped for), key protectors, and software vTPM state,
so that a VM with a virtual TPM starts on a new or reinstalled host.`,
		Version:       buildVersion().Version,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.asksToConfirm = cmd.Annotations[confirmsAnnotation] != ""
			if a.output != "table" && a.output != "json" {
				return usageError("invalid --output %q (want table or json)", a.output)
			}
			return nil
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		// "kp grnat FILE --guardian H": the flag is not kp's because grnat
		// is not a command, which is what to say.
		if cmd.HasSubCommands() && len(cmd.Flags().Args()) > 0 {
			return unknownCommand(cmd, cmd.Flags().Args())
		}
		// A value a choiceFlag does not take says so itself.
		if ce := (*cliError)(nil); errors.As(err, &ce) {
			return ce
		}
		return &cliError{code: exitUsage, msg: err.Error(), hint: fmt.Sprintf("see '%s --help'", cmd.CommandPath())}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.storeSpec, "store", os.Getenv("GUARDCTL_STORE"), "guardian store: a directory, or 'hyperv' for Hyper-V's own store on Windows (env GUARDCTL_STORE)")
	pf.StringVar(&a.tpmSpec, "tpm", os.Getenv("GUARDCTL_TPM"), "the TPM 2.0 that holds TPM guardians' keys: a device (default /dev/tpmrm0) or swtpm:host=HOST,port=PORT (env GUARDCTL_TPM)")
	pf.StringVar(&a.pinFile, "pin-file", "", "read the TPM guardians' PIN from FILE (- for standard input)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	pf.BoolVar(&a.noInput, "no-input", false, "never prompt (implied when standard input is not a terminal)")
	pf.BoolVarP(&a.yes, "yes", "y", false, "assume yes for confirmations")
	root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	root.MarkPersistentFlagDirname("store")

	root.AddCommand(newGuardianCmd(a), newKeyProtectorCmd(a), newVTPMCmd(a), newStoreCmd(a))
	root.AddCommand(newVersionCmd(a))
	completeFileKinds(root)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	strictGroups(root)
	return root
}

// strictGroups makes every command that has subcommands (guardctl, kp,
// completion, …) refuse an unknown one with the usage exit code and a
// suggestion. Cobra checks only the root's and, for any other group,
// prints its help and exits 0: a misspelled "kp grnat" in a CI step would
// succeed having done nothing. "help TOPIC" is as strict.
func strictGroups(c *cobra.Command) {
	if c.Name() == "help" && c.HasParent() && c.Run != nil {
		show := c.Run
		c.Run = nil
		c.RunE = func(cmd *cobra.Command, args []string) error {
			found, rest, err := cmd.Root().Find(args)
			if err != nil {
				return err
			}
			if err := found.ValidateArgs(rest); err != nil && found.HasSubCommands() {
				return err
			}
			show(cmd, args)
			return nil
		}
	}
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = unknownCommand
		c.SuggestionsMinimumDistance = 2
		c.DisableFlagsInUseLine = true // alone, a group shows its help
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	for _, sub := range c.Commands() {
		strictGroups(sub)
	}
}

// unknownCommand is the Args of a command group: no argument (its help),
// or the name of one of its commands, which cobra has already taken.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	path := cmd.CommandPath()
	if cmd.HasParent() {
		path = cmd.Parent().CommandPath() + " " + cmd.CalledAs() // kp, as typed
	}
	hint := fmt.Sprintf("'%s --help' lists its commands", path)
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		for i := range s {
			s[i] = "'" + path + " " + s[i] + "'"
		}
		hint = "did you mean " + strings.Join(s, " or ") + "?"
	}
	return &cliError{code: exitUsage, msg: fmt.Sprintf("unknown command %q for %q", args[0], path), hint: hint}
}

// openStore opens a store from its --store value. Only the command tests
// replace it (hyperv_fake_test.go backs --store hyperv with a fake of
// Windows there); a release build always uses certstore.Open.
var openStore = certstore.Open

// store opens the store --store names (certstore.DefaultSpec when none).
func (a *app) store() (certstore.Store, error) {
	spec := a.storeSpec
	if spec == "" {
		spec = certstore.DefaultSpec()
	}
	dev, err := a.tpm()
	if err != nil {
		return nil, err
	}
	return openStore(spec, certstore.WithTPM(dev))
}

// tpm returns the TPM --tpm names. Nothing is opened until a TPM key is
// used, so that a host without a TPM runs every other command.
func (a *app) tpm() (*tpmkey.Device, error) {
	if a.tpmDev != nil {
		return a.tpmDev, nil
	}
	d, err := tpmkey.Open(a.tpmSpec, a.readPIN)
	if err != nil {
		return nil, err
	}
	a.tpmDev = d
	return d, nil
}

// interactive reports whether guardctl may prompt: a person at a terminal
// on both standard input and standard error, and no --no-input.
func (a *app) interactive() bool {
	return !a.noInput && term.IsTerminal(int(a.stdin.Fd())) && term.IsTerminal(int(a.stderr.Fd()))
}

// terminalTimeout is how long canPrompt waits for the terminal to answer.
const terminalTimeout = 2 * time.Second

// canPrompt reports whether guardctl can prompt: interactive, and a
// terminal that answers the cursor-position query the prompt library
// sends first (it would wait forever for one that does not; without an
// answer guardctl refuses as it does without a terminal).
func (a *app) canPrompt() bool {
	if !a.interactive() {
		return false
	}
	if a.answers == nil {
		ok := terminalAnswers(a.stdin, a.stderr, terminalTimeout)
		a.answers = &ok
		if !ok {
			a.tell("the terminal did not answer within %v; not prompting", terminalTimeout)
		}
	}
	return *a.answers
}

// addDryRun gives a command that changes something its --dry-run flag.
func (a *app) addDryRun(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&a.dryRun, "dry-run", false, "read and check everything, write nothing, and report what would change")
}

// exactArgs is cobra.ExactArgs with a usage exit code and the argument's name.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < len(names) {
			return &cliError{code: exitUsage, msg: fmt.Sprintf("missing %s", names[len(args)]), hint: fmt.Sprintf("usage: %s", cmd.UseLine())}
		}
		if len(args) > len(names) {
			return &cliError{code: exitUsage, msg: fmt.Sprintf("unexpected argument %q", args[len(names)]), hint: fmt.Sprintf("usage: %s", cmd.UseLine())}
		}
		return nil
	}
}

// flagSet reports whether a flag was given on the command line.
func flagSet(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}

// isTerminalWriter reports whether w is a terminal.
func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// choiceFlag is a string flag that takes one of a few values. A value it
// does not take is refused when the flags are parsed, before anything is
// read: a usage error (exit 2) whose hint lists the values it takes.
type choiceFlag struct {
	name    string
	value   *string
	allowed []string
}

// choiceVar defines the flag name on fs, with def as its default and
// allowed as the values it takes, and completes those values.
func choiceVar(cmd *cobra.Command, p *string, name, def, usage string, allowed ...string) {
	*p = def
	cmd.Flags().Var(&choiceFlag{name: name, value: p, allowed: allowed}, name, usage)
	cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp))
}

func (c *choiceFlag) String() string { return *c.value }

// Type is "string", as for any string flag, in help and completion.
func (c *choiceFlag) Type() string { return "string" }

func (c *choiceFlag) Set(s string) error {
	for _, v := range c.allowed {
		if s == v {
			*c.value = s
			return nil
		}
	}
	return &cliError{code: exitUsage,
		msg:  fmt.Sprintf("unknown --%s %q (want %s)", c.name, s, strings.Join(c.allowed, " or ")),
		hint: fmt.Sprintf("--%s takes one of: %s", c.name, strings.Join(c.allowed, ", "))}
}
