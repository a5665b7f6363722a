package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/spf13/cobra"
)

func newKeyProtectorCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "keyprotector",
		Aliases: []string{"kp"},
		Short:   "Create, inspect, grant, revoke, wrap and unwrap key protectors",
		Long: `A key protector holds one transport key wrapped for an owner guardian and for the
guardians of the hosts allowed to run a VM, in Microsoft's [MS-KPS] Protector
model. Any host holding one of those guardians with its private keys unwraps the
same key; only the owner changes who may. docs/keyprotector.md describes the
format and its algorithms.`,
	}
	cmd.AddCommand(
		newKPNewCmd(a),
		newKPWrapCmd(a),
		newKPShowCmd(a),
		newKPGrantCmd(a),
		newKPRevokeCmd(a),
		newKPUnwrapCmd(a),
	)
	return cmd
}

// identities returns the store's whole guardians with private keys: what
// this host can unwrap with.
func (a *app) identities() ([]*guardian.Guardian, error) {
	return a.guardians(true)
}

// known returns every whole guardian of the store, public-only ones too:
// the owners whose key protectors and bundles this host accepts.
func (a *app) known() ([]*guardian.Guardian, error) {
	return a.guardians(false)
}

func (a *app) guardians(privateOnly bool) ([]*guardian.Guardian, error) {
	st, err := a.store()
	if err != nil {
		return nil, err
	}
	entries, err := st.List()
	if err != nil {
		return nil, err
	}
	var out []*guardian.Guardian
	for _, e := range entries {
		if !e.Broken() && (!privateOnly || e.Meta.HasPrivateKeys && e.KeyErr == nil) {
			out = append(out, e.Guardian)
		}
	}
	return out, nil
}

// wholeGuardian returns a guardian from the store that is not broken.
func (a *app) wholeGuardian(name string) (*guardian.Guardian, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	st, err := a.store()
	if err != nil {
		return nil, err
	}
	e, err := st.Get(name)
	if err != nil {
		return nil, err
	}
	if e.Broken() {
		return nil, withHint(fmt.Errorf("guardian %q is broken: %s", name, e.Problem), exitFailure, "'guardctl store check' shows what is wrong")
	}
	return e.Guardian, nil
}

// checkGuardianDates refuses a guardian with an expired certificate unless
// allowExpired, before it is put into a key protector.
func checkGuardianDates(g *guardian.Guardian, allowExpired bool) error {
	return g.Validate(guardian.Policy{Now: time.Now(), AllowExpired: allowExpired, AllowUntrustedRoot: true})
}

// readKeyProtector reads and parses a key protector file.
func readKeyProtector(path string) (*keyprotector.Protector, error) {
	data, err := readInput(path, keyprotector.MaxFileSize)
	if err != nil {
		return nil, err
	}
	p, err := keyprotector.Parse(data)
	if err != nil {
		return nil, inFile(path, err)
	}
	return p, nil
}

// writeKeyProtector writes a key protector file (length prefix and XML).
func writeKeyProtector(path string, xmlData []byte, overwrite, backup bool) (string, error) {
	return atomicfile.WriteFile(path, keyprotector.EncodeFile(xmlData), 0o644, atomicfile.Options{Overwrite: overwrite, Backup: backup})
}

// fileError says which file err is about: a library's error gets the file
// name, a missing file is "not found"; the others name it already.
func fileError(path string, err error) error {
	var about interface{ About(string) error }
	var ce *cliError
	switch {
	case errors.As(err, &ce):
		// It has its exit code and hint already; a cause it wraps
		// is not to be told again.
		return err
	case errors.As(err, &about):
		return about.About(path)
	case errors.Is(err, fs.ErrNotExist):
		return openError(path, err)
	case errors.As(err, new(*keyprotector.EscrowError)):
		return fmt.Errorf("%s: %w", path, err)
	}
	return err
}

// refuseExisting fails early when path exists and force is not set.
func refuseExisting(path string, force bool) error {
	if force {
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: %w", path, atomicfile.ErrExists)
	}
	return nil
}

// guardiansByName loads the named guardians (public parts suffice).
func (a *app) guardiansByName(names []string, allowExpired bool) ([]*guardian.Guardian, error) {
	var out []*guardian.Guardian
	for _, n := range names {
		g, err := a.wholeGuardian(n)
		if err != nil {
			return nil, err
		}
		if err := checkGuardianDates(g, allowExpired); err != nil {
			return nil, err
		}
		out = append(out, g.Public())
	}
	return out, nil
}

// kindOfKP is the kind of a keyprotector error, 0 for any other.
func kindOfKP(err error) keyprotector.Kind {
	var ke *keyprotector.Error
	if errors.As(err, &ke) {
		return ke.Kind
	}
	return 0
}

// trustFlags are the flags of the commands that accept a key protector or
// bundle made elsewhere.
type trustFlags struct {
	allowExpired, allowUnknownOwner bool
}

func (t *trustFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&t.allowExpired, "allow-expired", false, "accept expired guardian certificates")
	cmd.Flags().BoolVar(&t.allowUnknownOwner, "allow-unknown-owner", false, "accept an owner that is not a guardian of this store (anyone with this host's public guardian could have made the file)")
}

// unwrapProtector verifies p (read from file), checks that its owner is a
// guardian this store knows, and unwraps it with this store's guardians.
func (a *app) unwrapProtector(file string, p *keyprotector.Protector, t trustFlags) ([]byte, *guardian.Guardian, error) {
	if err := p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: t.allowExpired}); err != nil {
		return nil, nil, inFile(file, err)
	}
	ids, err := a.identities()
	if err != nil {
		return nil, nil, err
	}
	key, by, err := p.Unwrap(ids)
	if err != nil {
		return nil, nil, inFile(file, err)
	}
	// Checked once this host is known to be able to open it, so that a
	// host that cannot hears that first.
	if !t.allowUnknownOwner {
		known, err := a.known()
		if err != nil {
			return nil, nil, err
		}
		if err := p.CheckOwner(known); err != nil {
			return nil, nil, inFile(file, err)
		}
	}
	return key, by, nil
}

// revokeFlags are --guardian and --thumbprint, the two ways to name the
// guardian a revoke removes: a decommissioned host's guardian is usually in
// no store any more, and is named by its signing thumbprint (as kp show
// prints it).
type revokeFlags struct {
	guardianName, thumbprint, guardianFile string
	// bundle: the files are vTPM bundles, whose thumbprints vtpm inspect
	// prints (kp show, for key protectors).
	bundle bool
}

// showCommand is the command that prints the thumbprints in the files.
func (r *revokeFlags) showCommand() string {
	if r.bundle {
		return "vtpm inspect"
	}
	return "kp show"
}

func (r *revokeFlags) register(cmd *cobra.Command, a *app, verb string) {
	f := cmd.Flags()
	f.StringVar(&r.guardianName, "guardian", "", "guardian to "+verb+" (a guardian of this store, public-only is enough)")
	f.StringVar(&r.guardianFile, "guardian-file", "", "guardian to "+verb+" from its public guardian file (as 'guardian export --public' writes it), not imported into this store")
	ways := []string{"guardian"}
	if verb == "revoke" {
		f.StringVar(&r.thumbprint, "thumbprint", "", "revoke the guardian whose signing certificate has this SHA-1 thumbprint (as '"+r.showCommand()+"' prints it), whether or not this store knows it")
		ways = append(ways, "thumbprint")
	}
	ways = append(ways, "guardian-file")
	cmd.MarkFlagsOneRequired(ways...)
	cmd.MarkFlagsMutuallyExclusive(ways...)
	cmd.MarkFlagFilename("guardian-file", "xml")
	cmd.RegisterFlagCompletionFunc("guardian", completeGuardianFlag(a))
}

// target is the guardian named by --guardian (nil with --thumbprint) and
// how to call it in messages.
func (r *revokeFlags) target(a *app, verb string, allowExpired bool) (*guardian.Guardian, string, error) {
	if r.guardianFile != "" {
		// Named after its file (host-b.guardian.xml is host-b), as
		// 'guardian export --public' names it.
		name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(r.guardianFile), ".xml"), ".guardian")
		g, err := readPublicGuardian(r.guardianFile, name, guardian.Policy{Now: time.Now(), AllowExpired: allowExpired || verb == "revoke", AllowUntrustedRoot: true})
		if err != nil {
			return nil, "", err
		}
		return g.Public(), fmt.Sprintf("guardian %q", name), nil
	}
	if r.thumbprint == "" {
		g, err := a.accessTarget(r.guardianName, verb, allowExpired)
		if err != nil {
			return nil, "", err
		}
		return g, fmt.Sprintf("guardian %q", g.Name), nil
	}
	tp := strings.ToUpper(strings.NewReplacer(" ", "", ":", "").Replace(r.thumbprint))
	if _, err := hex.DecodeString(tp); err != nil || len(tp) != 40 {
		return nil, "", usageError("--thumbprint %q is not a SHA-1 thumbprint (40 hexadecimal digits, as 'guardctl %s FILE' prints it)", r.thumbprint, r.showCommand())
	}
	r.thumbprint = tp
	return nil, "the guardian with signing thumbprint " + tp, nil
}

// asking is who, as a confirmation names it: with the thumbprint.
func asking(who string, g *guardian.Guardian) string {
	if g == nil {
		return who
	}
	return fmt.Sprintf("%s (signing %s)", who, guardian.Thumbprint(g.Signing))
}

// accessTarget loads the guardian a grant or revoke is about (public
// parts); a grant refuses expired certificates unless allowExpired.
func (a *app) accessTarget(name, verb string, allowExpired bool) (*guardian.Guardian, error) {
	g, err := a.wholeGuardian(name)
	if err != nil {
		return nil, err
	}
	if verb == "grant" {
		if err := checkGuardianDates(g, allowExpired); err != nil {
			return nil, err
		}
	}
	return g.Public(), nil
}
