package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/spf13/cobra"
)

func newGuardianImportCmd(a *app) *cobra.Command {
	var signingFile, encryptionFile, dir, publicFile string
	var allowExpired, allowUntrusted, force bool
	var pw passwordSource
	cmd := &cobra.Command{
		Use:   "import NAME (--signing FILE --encryption FILE | --dir DIR | --public FILE)",
		Short: "Import a guardian from a PFX pair or a public guardian file",
		Long: `Import a guardian with its private keys from a PFX pair (the files 'guardctl
guardian export' or the Windows export scripts write, or any PKCS#12 files, DER
or BER, modern or legacy encryption), or a public-only guardian from the file
'guardctl guardian export --public' writes.

With --dir, the pair is DIR/NAME-signing.pfx and DIR/NAME-encryption.pfx. Both
files are opened with one password. In each, the certificate that matches the
private key is used, whatever the order of the chain.

As New-HgsGuardian does, an expired certificate is refused without
--allow-expired, and a certificate issued by a CA that does not chain to a root
this system trusts is refused without --allow-untrusted-root. Self-signed
certificates (every guardian Hyper-V or guardctl generates) are accepted when
their self-signature verifies. Keys must be RSA of at least 2048 bits.

An existing guardian of the same name is replaced only with --force, and then
kept in the trash. Importing what the store already holds changes nothing. The
PFX pair of a guardian the store holds public only, with the same certificates,
adds its private keys without --force (the public-only entry goes to the trash).

In Hyper-V's store (--store hyperv, the default on Windows), import does what
New-HgsGuardian does with a PFX pair: it puts both certificates, with their keys
as exportable machine keys, in Shielded VM Local Certificates (creating that
store if it is missing) and registers the name with HgsClient. On a Windows
without HgsClient the certificates are stored and a notice says the name was
not registered.`,
		Example: `  guardctl guardian import UntrustedGuardian --dir /media/usb --password-file pw.txt
  guardctl guardian import old-host --signing a.pfx --encryption b.pfx --allow-expired
  guardctl guardian import host-b --public host-b.guardian.xml`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := validName(name); err != nil {
				return err
			}
			fs := cmd.Flags()
			pair := flagSet(fs, "signing") || flagSet(fs, "encryption")
			modes := 0
			for _, m := range []bool{pair, dir != "", publicFile != ""} {
				if m {
					modes++
				}
			}
			switch {
			case modes != 1:
				return usageError("give exactly one of --signing/--encryption, --dir or --public")
			case pair && (signingFile == "" || encryptionFile == ""):
				return usageError("--signing and --encryption go together")
			case publicFile != "" && flagSet(fs, "password-file"):
				return usageError("--public reads no private keys, so it takes no --password-file")
			}
			policy := guardian.Policy{Now: time.Now(), AllowExpired: allowExpired, AllowUntrustedRoot: allowUntrusted}
			st, err := a.store()
			if err != nil {
				return err
			}
			var g *guardian.Guardian
			var origin certstore.Origin
			if publicFile != "" {
				g, err = readPublicGuardian(publicFile, name, policy)
				origin = certstore.OriginPublic
			} else {
				if dir != "" {
					signingFile, encryptionFile = pfxNames(dir, name)
				}
				g, err = a.readPFXPair(name, signingFile, encryptionFile, policy, &pw)
				var ce *cliError
				if dir != "" && errors.As(err, &ce) && ce.code == exitNotFound && (ce.path == signingFile || ce.path == encryptionFile) {
					ce.hint = fmt.Sprintf("with --dir, guardctl reads %s and %s, as 'guardian export' names them; give other names with --signing and --encryption", signingFile, encryptionFile)
				}
				origin = certstore.OriginPFX
			}
			if err != nil {
				return err
			}
			// The same certificates under the same name: nothing to do.
			plan, err := certstore.PlanAdd(st, g, force)
			if err != nil {
				return err
			}
			a.setChanged(plan.Changed)
			switch {
			case !plan.Changed:
				a.note("%s already holds guardian %q with these certificates; unchanged", st.Location(), name)
				return a.showGuardian(plan.Existing)
			case a.dryRun:
				switch {
				case plan.AddsKeys:
					a.note("would add the private keys to guardian %q, which %s holds public only with these certificates", name, st.Location())
				default:
					a.note("would import guardian %q into %s", name, st.Location())
					if plan.Existing != nil {
						a.note("the guardian %q there now would go to the trash", name)
					}
				}
				return a.showGuardian(&certstore.Entry{Name: name, Guardian: g, Meta: certstore.Meta{Name: name, HasPrivateKeys: g.HasPrivateKeys(), Origin: origin}})
			}
			// Adding the private keys to the same certificates loses
			// nothing (the public-only entry is kept in the trash), so it
			// needs no --force.
			c, err := st.Add(g, origin, force || plan.AddsKeys)
			if err != nil {
				return err
			}
			if plan.AddsKeys {
				a.note("added the private keys to guardian %q in %s (the same certificates; its public-only entry is in the trash)", name, st.Location())
			} else {
				if c.ReplacedID != "" {
					a.note("the guardian %q it replaced is in the trash ('guardctl guardian list --removed')", name)
				}
				a.note("imported guardian %q into %s", name, st.Location())
			}
			a.notice(c)
			return a.showGuardian(c.Entry)
		},
	}
	f := cmd.Flags()
	f.StringVar(&signingFile, "signing", "", "PFX file with the signing certificate and its private key")
	f.StringVar(&encryptionFile, "encryption", "", "PFX file with the encryption certificate and its private key")
	f.StringVar(&dir, "dir", "", "read DIR/NAME-signing.pfx and DIR/NAME-encryption.pfx")
	f.StringVar(&publicFile, "public", "", "import a public-only guardian from a NAME.guardian.xml file")
	f.BoolVar(&allowExpired, "allow-expired", false, "accept expired (or not yet valid) certificates")
	f.BoolVar(&allowUntrusted, "allow-untrusted-root", false, "accept certificates that do not chain to a trusted root")
	f.BoolVar(&force, "force", false, "replace an existing guardian of the same name (it goes to the trash)")
	f.StringVar(&pw.file, "password-file", "", "read the PFX password from FILE (- for standard input)")
	cmd.MarkFlagFilename("signing", "pfx", "p12")
	cmd.MarkFlagFilename("encryption", "pfx", "p12")
	cmd.MarkFlagFilename("public", "xml")
	cmd.MarkFlagDirname("dir")
	a.addDryRun(cmd)
	return cmd
}

// readInput reads an artifact named on the command line (a key protector,
// bundle, PFX or guardian file), bounded; - is standard input. It reads a
// regular file or a block device, refusing one larger than limit by its
// size before reading a byte, and reads into a buffer of that size (memory
// about the file's size, not twice the limit); it refuses a FIFO, a
// character device or a socket before it could block on one or read it
// without end (/dev/zero). Secrets come through readSecretInput.
func readInput(path string, limit int64) ([]byte, error) {
	return readPath(path, limit, false)
}

// readSecretInput reads a secret file (--password-file, --key-file,
// --passphrase-file, --pin-file), bounded; - is standard input. A FIFO is
// accepted, since --password-file <(pass show x) keeps a secret off the
// disk.
func readSecretInput(path string, limit int64) ([]byte, error) {
	return readPath(path, limit, true)
}

func readPath(path string, limit int64, secret bool) ([]byte, error) {
	if path == "-" {
		return readStdin(limit)
	}
	var f *os.File
	var err error
	if secret {
		f, err = os.Open(path)
	} else {
		// O_NONBLOCK: opening a FIFO does not wait for a writer, so that
		// it is refused below instead of hanging.
		f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	}
	if err != nil {
		return nil, openError(path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	mode := fi.Mode()
	fileLike := mode.IsRegular() || (mode&fs.ModeDevice != 0 && mode&fs.ModeCharDevice == 0) // a block device
	switch {
	case mode.IsDir():
		return nil, &cliError{code: exitUsage, msg: fmt.Sprintf("%s is a directory, not a file", path), path: path}
	case !secret && !fileLike:
		return nil, &cliError{code: exitUsage, msg: fmt.Sprintf("%s is %s, not a file", path, specialKind(mode)),
			hint: "give the path of a regular file, or - and the data on standard input (< FILE)", path: path}
	}
	data, err := atomicfile.ReadBounded(f, limit)
	if tl := (*atomicfile.TooLargeError)(nil); errors.As(err, &tl) {
		return nil, tooLarge(path, limit)
	}
	return data, err
}

// specialKind names a file that is neither regular nor a directory.
func specialKind(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeNamedPipe != 0:
		return "a FIFO (named pipe)"
	case mode&fs.ModeCharDevice != 0:
		return "a character device"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// openError is the error for a file given on the command line that cannot
// be opened: a missing one is "not found", with a hint.
func openError(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &cliError{code: exitNotFound, msg: fmt.Sprintf("%s: no such file", path), hint: "check the path (relative paths start from the current directory)", path: path, err: err}
	}
	return &cliError{code: exitNotFound, msg: err.Error(), path: path, err: err}
}

// inFile says which file an error is about, keeping the kind of the
// libraries' errors (guardian, keyprotector and vtpm all have About).
func inFile(path string, err error) error {
	var about interface{ About(string) error }
	var ce *cliError
	if !errors.As(err, &ce) && errors.As(err, &about) {
		return about.About(path)
	}
	return fmt.Errorf("%s: %w", path, err)
}

func (a *app) readPFXPair(name, signingFile, encryptionFile string, policy guardian.Policy, pw *passwordSource) (*guardian.Guardian, error) {
	sigData, err := readInput(signingFile, guardian.MaxPFXSize)
	if err != nil {
		return nil, err
	}
	encData, err := readInput(encryptionFile, guardian.MaxPFXSize)
	if err != nil {
		return nil, err
	}
	password, err := pw.read(a, fmt.Sprintf("Password for %s", signingFile), false)
	if err != nil {
		return nil, err
	}
	sig, err := guardian.DecodePFX(sigData, password)
	if err != nil {
		return nil, inFile(signingFile, err)
	}
	enc, err := guardian.DecodePFX(encData, password)
	var ge *guardian.Error
	if errors.As(err, &ge) && ge.Kind == guardian.KindPassword {
		// Say which file: the password did open the other one.
		return nil, &guardian.Error{Kind: guardian.KindPassword, Msg: fmt.Sprintf("%s: %s, although it opened %s; both files of a pair are exported under one password", encryptionFile, ge.Msg, signingFile)}
	}
	if err != nil {
		return nil, inFile(encryptionFile, err)
	}
	if swapped(sig.Cert, enc.Cert) {
		return nil, &guardian.Error{Kind: guardian.KindMismatch, Msg: fmt.Sprintf("%s holds an encryption certificate and %s a signing certificate; swap --signing and --encryption", signingFile, encryptionFile)}
	}
	g := &guardian.Guardian{Name: name, Signing: sig.Cert, SigningKey: sig.Key, Encryption: enc.Cert, EncryptionKey: enc.Key}
	policy.Intermediates = append(append([]*x509.Certificate{}, sig.Chain...), enc.Chain...)
	if err := g.Validate(policy); err != nil {
		return nil, err
	}
	return g, nil
}

// swapped reports whether the key usages say the two files were given the
// wrong way round.
func swapped(sig, enc *x509.Certificate) bool {
	encUsage := x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment
	return sig.KeyUsage != 0 && enc.KeyUsage != 0 &&
		sig.KeyUsage&x509.KeyUsageDigitalSignature == 0 && sig.KeyUsage&encUsage != 0 &&
		enc.KeyUsage&encUsage == 0 && enc.KeyUsage&x509.KeyUsageDigitalSignature != 0
}

func readPublicGuardian(path, name string, policy guardian.Policy) (*guardian.Guardian, error) {
	data, err := readInput(path, 1<<20)
	if err != nil {
		return nil, err
	}
	g, err := guardian.ParsePublic(data)
	if err != nil {
		return nil, inFile(path, err)
	}
	g.Name = name
	if err := g.Validate(policy); err != nil {
		return nil, inFile(path, err)
	}
	return g, nil
}
