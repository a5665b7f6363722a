package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/guardctl/guardctl/vtpm"
	"github.com/spf13/cobra"
)

func newVTPMCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vtpm",
		Short: "Wrap, unwrap, check and re-key software vTPM (swtpm) state",
		Long: `Move the state of a software vTPM (swtpm, as QEMU, libvirt and Proxmox use) to
another host so that the VM starts there with the same TPM: 'wrap' seals a state
into a bundle only the named guardians open, 'unwrap' puts it in place on a host
holding one of them. 'check' and 'rekey' work on a state where it is.

A state is a directory (as libvirt keeps /var/lib/libvirt/swtpm/UUID/tpm2, carried
with every file in it), a linear state file or block device (as Proxmox keeps a
tpmstate volume; a symbolic link to a block device, as 'pvesm path' gives, is
followed), or a qcow2 image holding a linear state (Proxmox VE 9's tpmstate0,
read and written with qemu-img), plain or encrypted with a
key (swtpm --key file=…) or a passphrase (--key pwdfile=…, libvirt's vTPM
secret). docs/vtpm.md describes the bundle and what is refused.`,
	}
	cmd.AddCommand(newVTPMWrapCmd(a), newVTPMUnwrapCmd(a), newVTPMInspectCmd(a), newVTPMAccessCmd(a, "grant"), newVTPMAccessCmd(a, "revoke"), newVTPMCheckCmd(a), newVTPMRekeyCmd(a))
	return cmd
}

// stateKeyFlags name how a state's key is given.
type stateKeyFlags struct {
	keyFile, keyFormat, passphraseFile, kdf string
	secret                                  []byte // what key read from the file
}

func (f *stateKeyFlags) register(cmd *cobra.Command, prefix, what string) {
	fl := cmd.Flags()
	fl.StringVar(&f.keyFile, prefix+"key-file", "", what+" key file, as swtpm --key file= reads it (- for standard input)")
	choiceVar(cmd, &f.keyFormat, prefix+"key-format", "hex", "format of the "+prefix+"key file: hex or binary", "hex", "binary")
	fl.StringVar(&f.passphraseFile, prefix+"passphrase-file", "", what+" passphrase file, every byte of it (as swtpm --key pwdfile= and libvirt's secret; - for standard input)")
	kdfUsage := "swtpm's key derivation (kdf=) for the passphrase: pbkdf2 or sha512 (default: whichever opens the state)"
	if prefix != "" {
		kdfUsage = "swtpm's key derivation (kdf=) for the new passphrase: pbkdf2 (swtpm's default) or sha512"
	}
	choiceVar(cmd, &f.kdf, prefix+"kdf", "", kdfUsage, string(vtpm.KDFPBKDF2), string(vtpm.KDFSHA512))
	cmd.MarkFlagsMutuallyExclusive(prefix+"key-file", prefix+"passphrase-file")
	cmd.MarkFlagsMutuallyExclusive(prefix+"key-file", prefix+"kdf")
}

func (f *stateKeyFlags) given() bool { return f.keyFile != "" || f.passphraseFile != "" }

func (f *stateKeyFlags) readSecret() ([]byte, error) {
	if f.keyFile != "" {
		data, err := readSecretInput(f.keyFile, 4096)
		if err != nil {
			return nil, err
		}
		f.secret = data
		return data, nil
	}
	data, err := readSecretInput(f.passphraseFile, 1<<20)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, usageError("the passphrase file %s is empty", f.passphraseFile)
	}
	f.secret = data
	return data, nil
}

// key returns the new key the flags name (nil for none); bits is what a
// passphrase derives, and the passphrase's key derivation is --kdf's
// (swtpm's default, pbkdf2, when not given).
func (f *stateKeyFlags) key(bits int) (vtpm.Key, vtpm.KDF, error) {
	if !f.given() {
		return nil, "", nil
	}
	data, err := f.readSecret()
	if err != nil {
		return nil, "", err
	}
	if f.keyFile != "" {
		k, err := vtpm.ParseKeyFile(data, f.keyFormat)
		return k, "", err
	}
	kdf, err := vtpm.ParseKDF(f.kdf)
	if err != nil {
		return nil, "", usageError("%v", err)
	}
	k, err := vtpm.KeyFromPassphrase(data, bits, kdf)
	return k, kdf, err
}

// open returns the key the flags name that opens every blob of st (nil
// when none is given) and, for a passphrase, the key derivation that did:
// --kdf's, or whichever of swtpm's opens it. bits is the state's key size.
func (f *stateKeyFlags) open(st *vtpm.State, bits int) (vtpm.Key, vtpm.KDF, error) {
	if !f.given() {
		return nil, "", nil
	}
	if f.keyFile != "" || f.kdf != "" {
		key, kdf, err := f.key(bits)
		if err != nil {
			return nil, "", err
		}
		if _, err := st.Transform(func(_ string, b []byte) ([]byte, error) { return vtpm.Decrypt(b, key) }); err != nil {
			return nil, "", inFile(st.Path, err)
		}
		return key, kdf, nil
	}
	data, err := f.readSecret()
	if err != nil {
		return nil, "", err
	}
	key, kdf, err := st.PassphraseKey(data, bits, "")
	if err != nil {
		return nil, "", inFile(st.Path, err)
	}
	return key, kdf, nil
}

// readState reads a state (directory, linear file or blob file).
func readState(path string) (*vtpm.State, error) {
	if path == "-" {
		return nil, usageError("a vTPM state is a directory or a file, read and written in place; standard input (-) is not one")
	}
	st, err := vtpm.ReadState(path)
	if errors.Is(err, os.ErrNotExist) {
		msg := err.Error()
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			msg = pe.Path + ": no such file or directory"
		}
		return nil, &cliError{code: exitNotFound, msg: msg, hint: "check the path; a VM whose TPM state is lost gets a new TPM and its guest loses what it sealed", err: err}
	}
	return st, err
}

// stateInfo inspects every blob of a state and checks they agree on their
// encryption (swtpm uses one key for all of a TPM's blobs).
func stateInfo(st *vtpm.State) (vtpm.Info, error) {
	var first vtpm.Info
	for i, n := range st.Names() {
		info, err := vtpm.Inspect(st.Blobs[n])
		if err != nil {
			return vtpm.Info{}, inFile(st.Path, fmt.Errorf("%s: %w", n, err))
		}
		if i == 0 {
			first = info
		} else if info.Encrypted != first.Encrypted || info.KeyBits != first.KeyBits {
			return vtpm.Info{}, usageError("%s: its state blobs are encrypted differently", st.Path)
		}
	}
	return first, nil
}

// stateToChange reads a state that is about to be wrapped or rewritten:
// refused while a swtpm runs on it.
func stateToChange(path, doing string) (*vtpm.State, vtpm.Info, error) {
	st, err := readState(path)
	if err != nil {
		return nil, vtpm.Info{}, err
	}
	info, err := stateInfo(st)
	if err != nil {
		return nil, vtpm.Info{}, err
	}
	if err := st.CheckNotInUse(); err != nil {
		return nil, vtpm.Info{}, withHint(fmt.Errorf("%s: %w", st.Path, err), exitFailure, "shut the VM (and its swtpm) down before "+doing+" its state")
	}
	return st, info, nil
}

// checkResultView is the JSON output of vtpm check.
type checkResultView struct {
	Path       string   `json:"path"`
	Layout     string   `json:"layout"` // dir, linear or blob
	Blobs      []string `json:"blobs"`  // permall, volatilestate, savestate
	Version    int      `json:"version"`
	Encrypted  bool     `json:"encrypted"`
	KeyBits    int      `json:"keyBits,omitempty"`
	KeyChecked bool     `json:"keyChecked"`
	KDF        string   `json:"kdf,omitempty"` // the passphrase's key derivation that opens it
	// Image is the qcow2 image the linear state is kept in, if it is.
	Image *vtpm.ImageInfo `json:"image,omitempty"`

	others   []string // the directory's other files, sorted
	volatile bool     // the state has a volatile state
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
			st, err := readState(args[0])
			if err != nil {
				return err
			}
			info, err := stateInfo(st)
			if err != nil {
				return err
			}
			res := checkResultView{Path: st.Path, Layout: string(st.Layout), Blobs: st.Names(), Version: info.Version, Encrypted: info.Encrypted, KeyBits: info.KeyBits, Image: st.Image,
				others: slices.Sorted(maps.Keys(st.Others)), volatile: st.HasVolatile()}
			if k.given() {
				// A passphrase derives a key of the state's size (AES-128
				// or AES-256), as swtpm's mode= says and wrap does.
				bits := info.KeyBits
				if bits == 0 {
					bits = 256
				}
				_, kdf, err := k.open(st, bits)
				if err != nil {
					return err
				}
				res.KeyChecked, res.KDF = true, string(kdf)
			}
			return a.print(res)
		},
	}
	k.register(cmd, "", "the state's")
	return cmd
}

// writeText writes what vtpm check found as "key: value" lines.
func (res checkResultView) writeText(w io.Writer) error {
	enc := "plain (not encrypted)"
	if res.Encrypted {
		enc = fmt.Sprintf("encrypted, AES-%d-CBC", res.KeyBits)
	}
	pairs := [][2]string{{"State", res.Path}, {"Layout", fmt.Sprintf("%s (%s), swtpm blob version %d", res.Layout, strings.Join(res.Blobs, ", "), res.Version)}, {"Encryption", enc}}
	if img := res.Image; img != nil {
		v := fmt.Sprintf("%s, virtual size %d bytes", img.Format, img.VirtualSize)
		if img.BackingFile != "" {
			v += ", backing file " + img.BackingFile
		}
		pairs = append(pairs, [2]string{"Image", v})
	}
	if len(res.others) > 0 {
		pairs = append(pairs, [2]string{"Other files", strings.Join(res.others, ", ")})
	}
	if res.volatile {
		pairs = append(pairs, [2]string{"Volatile state", "present: swtpm resumes from it at its next start"})
	}
	switch {
	case res.KeyChecked && res.KDF != "":
		pairs = append(pairs, [2]string{"Key", fmt.Sprintf("opens the state, a passphrase with kdf=%s (swtpm --key pwdfile=F,mode=aes-%d-cbc,kdf=%s)", res.KDF, res.KeyBits, res.KDF)})
	case res.KeyChecked:
		pairs = append(pairs, [2]string{"Key", "opens the state"})
	case res.Encrypted:
		pairs = append(pairs, [2]string{"Key", "not checked: give --key-file or --passphrase-file"})
	}
	return writeDetails(w, pairs)
}

// rekeyResult is the JSON output of vtpm rekey.
type rekeyResult struct {
	Path      string   `json:"path"`
	Encrypted bool     `json:"encrypted"`
	KeyBits   int      `json:"keyBits,omitempty"`
	KDF       string   `json:"kdf,omitempty"` // the new passphrase's key derivation
	Backups   []string `json:"backups"`
	// BackupsOpenWith says what still opens the backups kept by
	// --keep-backup: the previous key or passphrase, or nothing (plaintext).
	BackupsOpenWith string `json:"backupsOpenWith,omitempty"`
	// RemovedBackups are the backups earlier runs kept of this state,
	// which open without the new key: removed (or, with --dry-run, that
	// would be) unless --keep-backup.
	RemovedBackups []string `json:"removedBackups"`
	outcome
	noText // the notes say it
}

func newVTPMRekeyCmd(a *app) *cobra.Command {
	var old, next stateKeyFlags
	var toPlain, keepBackup bool
	var cipherName, backupDir string
	cmd := &cobra.Command{
		Use:   "rekey STATE [--key-file F | --passphrase-file F] (--new-key-file F | --new-passphrase-file F | --to-plain)",
		Short: "Re-encrypt swtpm state under a new key or passphrase, or to or from plaintext",
		Long: `Re-encrypt a swtpm state offline: decrypt it in memory with its current key or
passphrase (none for plain state), encrypt it under the new one (or not, with
--to-plain), check that it reads back, and replace the file atomically. No
plaintext copy is written to disk. The file keeps its mode and owner. No copy
of the previous file is kept (it would still open with the old key, or be the
plaintext) unless --keep-backup; with --to-plain the previous file is kept as a
.bak (0600). Under a new key or passphrase, the backups earlier runs kept of
this state (PATH.TIME-XXXXXX.bak, or in --backup-dir for a block device or
qcow2 image), which open without the new key, are removed unless --keep-backup;
the summary, -o json and --dry-run name them. Refused while a swtpm (or, for a
qcow2 image, a qemu-storage-daemon) is using the state. A qcow2 image is
rewritten through qemu-img and keeps its format, size and backing file.

Start swtpm afterwards with the new key: --key file=F[,mode=aes-256-cbc], or
--key pwdfile=F,mode=…,kdf=… (for libvirt, set the new value of the vTPM secret;
libvirt uses swtpm's default key derivation, pbkdf2). The current passphrase is
tried with both of swtpm's key derivations unless --kdf names one.`,
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
			st, info, err := stateToChange(args[0], "re-keying")
			if err != nil {
				return err
			}
			newKey, newKDF, err := next.key(bits)
			if err != nil {
				return err
			}
			// A state already under the new key (or already plain, for
			// --to-plain) is left as it is.
			if st.IsUnder(info, newKey) {
				a.setChanged(false)
				res := rekeyResult{Path: st.Path, Encrypted: info.Encrypted, KeyBits: info.KeyBits, KDF: string(newKDF), Backups: []string{}, RemovedBackups: []string{}, outcome: a.outcome}
				a.note("%s is already %s; unchanged", st.Path, map[bool]string{true: "encrypted under the new key", false: "plaintext"}[info.Encrypted])
				return a.print(res)
			}
			oldKey, _, err := old.open(st, max(info.KeyBits, 128))
			if err != nil {
				return err
			}
			r, err := vtpm.Rekey(st, oldKey, newKey, vtpm.RekeyOptions{KeepBackup: keepBackup, BackupDir: backupDir, DryRun: a.dryRun})
			if err != nil {
				return err
			}
			a.setChanged(true)
			backup, earlier, keep := r.Backups, r.RemovedBackups, toPlain || keepBackup
			res := rekeyResult{Path: st.Path, Encrypted: newKey != nil, KeyBits: len(newKey) * 8, KDF: string(newKDF), Backups: backup, RemovedBackups: earlier, outcome: a.outcome}
			switch {
			case len(backup) == 0:
			case info.Encrypted:
				res.BackupsOpenWith = "the previous key or passphrase"
			default:
				res.BackupsOpenWith = "nothing: they are the plaintext state"
			}
			for _, b := range earlier {
				a.note("%s the earlier backup %s, which opens without the new key (--keep-backup keeps it)", map[bool]string{true: "would remove", false: "removed"}[a.dryRun], b)
			}
			if a.dryRun {
				a.note("would re-encrypt %s", st.Path)
				return a.print(res)
			}
			what := "plaintext"
			if newKey != nil {
				what = fmt.Sprintf("AES-%d-CBC under the new key", len(newKey)*8)
			}
			switch {
			case !keep:
				a.note("re-encrypted %s as %s; no copy of the previous files was kept", st.Path, what)
			case toPlain:
				a.note("re-encrypted %s as %s; the previous files are kept as %s", st.Path, what, strings.Join(backup, ", "))
			case info.Encrypted:
				a.note("re-encrypted %s as %s; the backup %s still opens with the previous key or passphrase: delete it once it is not needed", st.Path, what, strings.Join(backup, ", "))
			default:
				a.note("re-encrypted %s as %s; the backup %s is the state in plaintext: delete it once it is not needed", st.Path, what, strings.Join(backup, ", "))
			}
			if newKDF != "" {
				a.note("start swtpm with --key pwdfile=%s,mode=aes-%d-cbc,kdf=%s", next.passphraseFile, len(newKey)*8, newKDF)
			}
			return a.print(res)
		},
	}
	old.register(cmd, "", "the current")
	next.register(cmd, "new-", "the new")
	cmd.Flags().BoolVar(&toPlain, "to-plain", false, "write the state unencrypted")
	cmd.Flags().BoolVar(&keepBackup, "keep-backup", false, "keep the previous files as .bak (0600), which still open with the old key (or are plaintext)")
	cmd.Flags().StringVar(&backupDir, "backup-dir", ".", "for a state on a block device or in a qcow2 image: where its old contents are kept (0600) while it is rewritten")
	a.addDryRun(cmd)
	// aes-cbc is swtpm's own name for AES-128-CBC.
	choiceVar(cmd, &cipherName, "cipher", "aes-256-cbc", "cipher for a new passphrase: aes-128-cbc or aes-256-cbc (a new key file's length decides for itself)", "aes-128-cbc", "aes-256-cbc", "aes-cbc")
	return cmd
}
