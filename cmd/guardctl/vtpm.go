package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/vtpm"
	"github.com/spf13/cobra"
)

func newVTPMCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vtpm",
		Short: "Check and re-key software vTPM (swtpm) state",
		Long: `Work on the state of a software vTPM as swtpm keeps it: a state directory (as
libvirt keeps under /var/lib/libvirt/swtpm/UUID/tpm2) or a state file, plain or
encrypted with a key (swtpm --key file=…) or a passphrase (--key pwdfile=…, and
libvirt's vTPM secret).`,
	}
	cmd.AddCommand(newVTPMCheckCmd(a), newVTPMRekeyCmd(a))
	return cmd
}

// stateKeyFlags name how a state's key is given.
type stateKeyFlags struct {
	keyFile, keyFormat, passphraseFile string
}

func (f *stateKeyFlags) register(cmd *cobra.Command, prefix, what string) {
	fl := cmd.Flags()
	fl.StringVar(&f.keyFile, prefix+"key-file", "", what+" key file, as swtpm --key file= reads it")
	fl.StringVar(&f.keyFormat, prefix+"key-format", "hex", "format of the "+prefix+"key file: hex or binary")
	fl.StringVar(&f.passphraseFile, prefix+"passphrase-file", "", what+" passphrase file, every byte of it (as swtpm --key pwdfile= and libvirt's secret)")
	cmd.MarkFlagsMutuallyExclusive(prefix+"key-file", prefix+"passphrase-file")
}

func (f *stateKeyFlags) given() bool { return f.keyFile != "" || f.passphraseFile != "" }

// key returns the key the flags name; bits is what a passphrase derives.
func (f *stateKeyFlags) key(bits int) (vtpm.Key, error) {
	switch {
	case f.keyFile != "":
		data, err := readInput(f.keyFile, 4096)
		if err != nil {
			return nil, err
		}
		return vtpm.ParseKeyFile(data, f.keyFormat)
	case f.passphraseFile != "":
		data, err := readInput(f.passphraseFile, 1<<20)
		if err != nil {
			return nil, err
		}
		if len(data) == 0 {
			return nil, usageError("the passphrase file %s is empty", f.passphraseFile)
		}
		return vtpm.KeyFromPassphrase(data, bits)
	}
	return nil, nil
}

// readState resolves and reads a state, returning its path and info.
func readState(path string) (string, []byte, vtpm.Info, error) {
	p, err := vtpm.StatePath(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil, vtpm.Info{}, &cliError{code: exitNotFound, msg: err.Error()}
		}
		return "", nil, vtpm.Info{}, err
	}
	blob, err := readInput(p, vtpm.MaxBlobSize)
	if err != nil {
		return "", nil, vtpm.Info{}, err
	}
	info, err := vtpm.Inspect(blob)
	if err != nil {
		return "", nil, vtpm.Info{}, inFile(p, err)
	}
	return p, blob, info, nil
}

// checkResultView is the JSON output of vtpm check.
type checkResultView struct {
	Path       string `json:"path"`
	Version    int    `json:"version"`
	Encrypted  bool   `json:"encrypted"`
	KeyBits    int    `json:"keyBits,omitempty"`
	KeyChecked bool   `json:"keyChecked"`
	Size       int    `json:"size"`
}

func newVTPMCheckCmd(a *app) *cobra.Command {
	var k stateKeyFlags
	cmd := &cobra.Command{
		Use:   "check STATE [--key-file F | --passphrase-file F]",
		Short: "Is this state plain or encrypted, and does this key open it (offline)",
		Long: `Read a swtpm state (a state directory or file) without starting swtpm: say
whether it is plain or encrypted and with what key size, and, given a key or
passphrase, whether it opens the state. Exits 0 when the key opens it (or when no
key was given), 5 when it does not.`,
		Args: exactArgs("STATE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, blob, info, err := readState(args[0])
			if err != nil {
				return err
			}
			res := checkResultView{Path: p, Version: info.Version, Encrypted: info.Encrypted, KeyBits: info.KeyBits, Size: info.Size}
			if k.given() {
				key, err := k.key(max(info.KeyBits, 256))
				if err != nil {
					return err
				}
				if _, err := vtpm.Decrypt(blob, key); err != nil {
					return inFile(p, err)
				}
				res.KeyChecked = true
			}
			if a.output == "json" {
				return writeJSON(a.stdout, res)
			}
			enc := "plain (not encrypted)"
			if info.Encrypted {
				enc = fmt.Sprintf("encrypted, AES-%d-CBC", info.KeyBits)
			}
			pairs := [][2]string{{"State", p}, {"Format", fmt.Sprintf("swtpm blob version %d, %d bytes", info.Version, info.Size)}, {"Encryption", enc}}
			switch {
			case res.KeyChecked:
				pairs = append(pairs, [2]string{"Key", "opens the state"})
			case info.Encrypted:
				pairs = append(pairs, [2]string{"Key", "not checked: give --key-file or --passphrase-file"})
			}
			return writeDetails(a.stdout, pairs)
		},
	}
	k.register(cmd, "", "the state's")
	return cmd
}

// rekeyResult is the JSON output of vtpm rekey.
type rekeyResult struct {
	Path      string `json:"path"`
	Encrypted bool   `json:"encrypted"`
	KeyBits   int    `json:"keyBits,omitempty"`
	Backup    string `json:"backup"`
}

func newVTPMRekeyCmd(a *app) *cobra.Command {
	var old, next stateKeyFlags
	var toPlain bool
	var cipherName string
	cmd := &cobra.Command{
		Use:   "rekey STATE [--key-file F | --passphrase-file F] (--new-key-file F | --new-passphrase-file F | --to-plain)",
		Short: "Re-encrypt swtpm state under a new key or passphrase, or to or from plaintext",
		Long: `Re-encrypt a swtpm state offline: decrypt it in memory with its current key or
passphrase (none for plain state), encrypt it under the new one (or not, with
--to-plain), check that it reads back, and replace the file atomically. No
plaintext copy is written to disk. The previous file is kept as a .bak backup,
and the file keeps its mode and owner. Refused while a swtpm is using the state.

Start swtpm afterwards with the new key: --key file=F[,mode=aes-256-cbc], or
--key pwdfile=F,mode=… (for libvirt, set the new value of the vTPM secret).`,
		Example: `  guardctl vtpm rekey /var/lib/libvirt/swtpm/$UUID/tpm2 --passphrase-file old.pass --new-passphrase-file new.pass
  guardctl vtpm rekey vm1/tpm2 --new-key-file vm1.key            # encrypt plain state (AES-256 for a 64-digit key)
  guardctl vtpm rekey vm1/tpm2 --key-file vm1.key --to-plain`,
		Args: exactArgs("STATE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets := 0
			for _, b := range []bool{next.given(), toPlain} {
				if b {
					targets++
				}
			}
			if targets != 1 {
				return usageError("give exactly one of --new-key-file, --new-passphrase-file or --to-plain")
			}
			bits := map[string]int{"aes-128-cbc": 128, "aes-cbc": 128, "aes-256-cbc": 256}[cipherName]
			if bits == 0 {
				return usageError("unknown --cipher %q (want aes-128-cbc or aes-256-cbc)", cipherName)
			}
			p, blob, info, err := readState(args[0])
			if err != nil {
				return err
			}
			if err := vtpm.CheckNotInUse(filepath.Dir(p)); err != nil {
				return withHint(fmt.Errorf("%s: %w", p, err), exitFailure, "shut the VM (and its swtpm) down first")
			}
			oldKey, err := old.key(max(info.KeyBits, 128))
			if err != nil {
				return err
			}
			state, err := vtpm.Decrypt(blob, oldKey)
			if err != nil {
				return inFile(p, err)
			}
			newKey, err := next.key(bits)
			if err != nil {
				return err
			}
			out, err := vtpm.Encrypt(state, newKey)
			if err != nil {
				return err
			}
			if back, err := vtpm.Decrypt(out, newKey); err != nil || string(back) != string(state) {
				return fmt.Errorf("the re-encrypted state does not read back; nothing was written")
			}
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			backup, err := atomicfile.WriteFile(p, out, fi.Mode().Perm(), atomicfile.Options{Overwrite: true, Backup: true})
			if err != nil {
				return err
			}
			if err := vtpm.KeepOwner(p, fi); err != nil {
				return fmt.Errorf("%s was re-keyed but its owner could not be kept: %w", p, err)
			}
			res := rekeyResult{Path: p, Encrypted: newKey != nil, KeyBits: len(newKey) * 8, Backup: backup}
			if a.output == "json" {
				return writeJSON(a.stdout, res)
			}
			what := "plaintext"
			if newKey != nil {
				what = fmt.Sprintf("AES-%d-CBC under the new key", len(newKey)*8)
			}
			a.note("guardctl: re-encrypted %s as %s; the previous file is %s", p, what, backup)
			return nil
		},
	}
	old.register(cmd, "", "the current")
	next.register(cmd, "new-", "the new")
	cmd.Flags().BoolVar(&toPlain, "to-plain", false, "write the state unencrypted")
	cmd.Flags().StringVar(&cipherName, "cipher", "aes-256-cbc", "cipher for a new passphrase: aes-128-cbc or aes-256-cbc (a new key file's length decides for itself)")
	return cmd
}
