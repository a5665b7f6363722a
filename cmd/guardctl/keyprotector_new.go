package main

import (
	"crypto/subtle"
	"fmt"
	"os"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/spf13/cobra"
)

// kpCreateFlags are the flags new and wrap share.
type kpCreateFlags struct {
	owner         string
	guardianNames []string
	out           string
	force         bool
	allowExpired  bool
	noEscrow      bool
}

func (f *kpCreateFlags) register(cmd *cobra.Command, a *app) {
	fl := cmd.Flags()
	fl.StringVar(&f.owner, "owner", "", "owner guardian (needs its private signing key)")
	fl.StringArrayVar(&f.guardianNames, "guardian", nil, "guardian to wrap the key for as well (repeatable)")
	fl.StringVar(&f.out, "out", "", "key protector file to write (- for standard output, which is then not a table)")
	fl.BoolVar(&f.force, "force", false, "overwrite FILE, keeping a .bak backup")
	fl.BoolVar(&f.allowExpired, "allow-expired", false, "accept guardians whose certificates have expired")
	addNoEscrow(cmd, &f.noEscrow)
	cmd.MarkFlagRequired("owner")
	cmd.MarkFlagRequired("out")
	cmd.RegisterFlagCompletionFunc("owner", completeGuardianFlag(a))
	cmd.RegisterFlagCompletionFunc("guardian", completeGuardianFlag(a))
}

// guardians loads the owner (which must have its private keys here) and
// the other guardians the flags name.
func (f *kpCreateFlags) guardians(a *app) (*guardian.Guardian, []*guardian.Guardian, error) {
	owner, err := a.wholeGuardian(f.owner)
	if err != nil {
		return nil, nil, err
	}
	if owner.SigningKey == nil {
		return nil, nil, withHint(fmt.Errorf("guardian %q has no private keys in this store and cannot own a key protector", f.owner), exitNoAccess,
			"the owner must be a guardian of this host ('guardctl guardian create' or 'guardian import --dir')")
	}
	if err := checkGuardianDates(owner, f.allowExpired); err != nil {
		return nil, nil, err
	}
	gs, err := a.guardiansByName(f.guardianNames, f.allowExpired)
	if err != nil {
		return nil, nil, err
	}
	return owner, gs, nil
}

// create makes a key protector for key and writes it to f.out (- is
// standard output). When f.out already is a key protector of the same owner
// for the same guardians (and, for wrap, of the same key), nothing changes,
// --force or not; kp new (fresh) with --force makes a new key anyway.
func (f *kpCreateFlags) create(a *app, key []byte, fresh bool) error {
	if f.out == "-" {
		if err := a.stdoutFor("--out"); err != nil {
			return err
		}
	}
	owner, gs, err := f.guardians(a)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(f.out); err == nil && f.out != "-" {
		if !fresh || !f.force {
			known := key
			if fresh {
				known = nil
			}
			if p := f.sameProtector(owner, gs, known); p != nil {
				a.setChanged(false)
				a.note("%s already protects this key for these guardians; unchanged", f.out)
				v, err := a.describeKP(f.out, p, nil)
				if err != nil {
					return err
				}
				return a.printKP(v)
			}
		}
		if err := refuseExisting(f.out, f.force); err != nil {
			return err
		}
	}
	p, xmlData, err := keyprotector.New(key, owner, gs)
	if err != nil {
		return err
	}
	if err := a.checkEscrow(p, nil, f.noEscrow); err != nil {
		return fmt.Errorf("refusing to write %s: %w", f.out, err)
	}
	if f.out == "-" {
		if a.dryRun {
			return nil
		}
		_, err := a.stdout.Write(keyprotector.EncodeFile(xmlData))
		return err
	}
	if !a.dryRun {
		if _, err := writeKeyProtector(f.out, xmlData, f.force, true); err != nil {
			return err
		}
	}
	a.setChanged(true)
	a.note("%s %s", a.would("wrote"), f.out)
	v, err := a.describeKP(f.out, p, p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: true}))
	if err != nil {
		return err
	}
	return a.printKP(v)
}

// sameProtector returns the key protector at f.out when it verifies and is
// owner's for exactly gs (and, when key is not nil, protects key), else nil.
func (f *kpCreateFlags) sameProtector(owner *guardian.Guardian, gs []*guardian.Guardian, key []byte) *keyprotector.Protector {
	p, err := readKeyProtector(f.out)
	if err != nil || p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: f.allowExpired}) != nil || !p.HasExactly(owner, gs) {
		return nil
	}
	if key != nil {
		got, _, err := p.Unwrap([]*guardian.Guardian{owner})
		if err != nil || subtle.ConstantTimeCompare(got, key) != 1 {
			return nil
		}
	}
	return p
}

func newKPNewCmd(a *app) *cobra.Command {
	var f kpCreateFlags
	cmd := &cobra.Command{
		Use:   "new --owner G [--guardian H]... --out FILE",
		Short: "Make a key protector with a fresh 256-bit transport key",
		Example: `  guardctl kp new --owner UntrustedGuardian --guardian host-b --out vm1.kp
  guardctl kp unwrap vm1.kp --key-out vm1.key     # on any host holding a guardian`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.create(a, keyprotector.NewTransportKey(), true)
		},
	}
	f.register(cmd, a)
	a.addDryRun(cmd)
	return cmd
}

func newKPWrapCmd(a *app) *cobra.Command {
	var f kpCreateFlags
	var keyFile string
	cmd := &cobra.Command{
		Use:   "wrap --owner G [--guardian H]... --key-file K --out FILE",
		Short: "Protect a key you already have (a swtpm key, a libvirt secret value)",
		Long: fmt.Sprintf(`Protect an existing key: the exact bytes of --key-file (1 to %d bytes; - reads
standard input) are wrapped for the owner and the guardians, and 'guardctl kp
unwrap' gives back the same bytes on any host holding one of them.`, keyprotector.MaxKeySize),
		Example: `  guardctl kp wrap --owner UntrustedGuardian --guardian host-b --key-file swtpm.key --out vm1.kp`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := readSecretInput(keyFile, keyprotector.MaxKeySize+1)
			if err != nil {
				return err
			}
			if len(key) == 0 || len(key) > keyprotector.MaxKeySize {
				return usageError("the key in %s is %d bytes; guardctl wraps keys of 1 to %d bytes", keyFile, len(key), keyprotector.MaxKeySize)
			}
			return f.create(a, key, false)
		},
	}
	f.register(cmd, a)
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file holding the key to protect (- for standard input)")
	cmd.MarkFlagRequired("key-file")
	a.addDryRun(cmd)
	return cmd
}

// addNoEscrow gives a command that writes a key protector or bundle its
// --no-escrow flag.
func addNoEscrow(cmd *cobra.Command, p *bool) {
	cmd.Flags().BoolVar(p, "no-escrow", false, "write it even when only this host's TPM guardians could open it (it then dies with the TPM)")
}

// checkEscrow refuses, unless noEscrow, a key protector that only this
// store's TPM guardians could open (those drop reports are about to go).
func (a *app) checkEscrow(p *keyprotector.Protector, drop func(*keyprotector.Wrapping) bool, noEscrow bool) error {
	if noEscrow {
		return nil
	}
	local, err := a.known()
	if err != nil {
		return err
	}
	return p.CheckEscrow(local, drop)
}
