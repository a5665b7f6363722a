package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/spf13/cobra"
)

// exportedFile is one file in the JSON output of guardian export.
type exportedFile struct {
	Path       string `json:"path"`
	Role       string `json:"role"` // signing, encryption or public
	Thumbprint string `json:"thumbprint,omitempty"`
	Backup     string `json:"backup,omitempty"`
}

// exportResult is the JSON output of guardian export.
type exportResult struct {
	Name          string         `json:"name"`
	PFXEncryption string         `json:"pfxEncryption,omitempty"` // how the PFX files are protected
	Files         []exportedFile `json:"files"`
}

func newGuardianExportCmd(a *app) *cobra.Command {
	var dir string
	var legacy, force, public bool
	var pw passwordSource
	cmd := &cobra.Command{
		Use:   "export NAME",
		Short: "Export a guardian as a PFX pair, or its public guardian file",
		Long: `Export a guardian with its private keys as DIR/NAME-signing.pfx and
DIR/NAME-encryption.pfx (mode 0600), both under one password: the pair that
New-HgsGuardian -SigningCertificate … -EncryptionCertificate … imports on
Windows, and 'guardctl guardian import' imports anywhere. Do this before you
reinstall a host.

The PFX files use AES-256-CBC with PBKDF2 and an HMAC-SHA256 MAC; --legacy uses
3DES and SHA-1 instead, for Windows Server 2016 and Windows 10 before 1709. Each
file is decoded again before it is left in place.

With --public, write DIR/NAME.guardian.xml instead: the two certificates without
private keys, the encryption certificate signed by the signing key. Another host
imports it with 'guardctl guardian import NAME --public FILE' to grant this
guardian access to key protectors.

Existing files are not overwritten without --force; with it, the old file is
kept as a .bak backup.`,
		Example: `  guardctl guardian export UntrustedGuardian --dir /media/usb --password-file pw.txt
  guardctl guardian export UntrustedGuardian --legacy --dir . < /dev/tty
  guardctl guardian export host-b --public --dir /srv/share`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeGuardianNames(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := validName(name); err != nil {
				return err
			}
			if dir == "-" {
				return usageError("--dir is the directory the files go to; standard output (-) is not one")
			}
			if public && (legacy || flagSet(cmd.Flags(), "password-file")) {
				return usageError("--public writes no private keys, so it takes neither --legacy nor --password-file")
			}
			st, err := a.store()
			if err != nil {
				return err
			}
			e, err := st.Get(name)
			if err != nil {
				return err
			}
			if e.Broken() {
				return withHint(fmt.Errorf("guardian %q is broken: %s", name, e.Problem), exitFailure,
					"'guardctl store check' shows what is wrong; restore the guardian from a backup")
			}
			// A public-only guardian re-exports its public file with the
			// signature it was imported with; a PFX pair needs private keys.
			if public {
				if e.KeyErr != nil && e.Guardian.EncryptionCertSignature == nil {
					return withHint(e.KeyErr, exitFailure, "the public guardian file is signed with the signing key, which Windows will not give out")
				}
				return a.exportPublic(e.Guardian, dir, force)
			}
			if !e.Meta.HasPrivateKeys {
				return withHint(fmt.Errorf("guardian %q has no private keys in this store", name), exitFailure,
					"export it on the host that holds its private keys")
			}
			if e.Meta.Keys == guardian.KeysTPM {
				return withHint(fmt.Errorf("guardian %q keeps its private keys in this host's TPM, which never lets them out: it cannot be exported as a PFX pair", name), exitFailure,
					"'guardctl guardian export "+name+" --public' writes its public guardian file; keep an escrow file guardian granted on every key protector as the backup (README, \"Escrow\")")
			}
			if e.KeyErr != nil {
				return withHint(e.KeyErr, exitFailure,
					"Windows keeps this key as not exportable (or cannot open it): guardctl cannot write a PFX pair for it; create a new guardian and grant it to the VMs while this host can still start them")
			}
			return a.exportPFX(e, dir, legacy, force, &pw)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".", "directory to write the files to")
	f.BoolVar(&legacy, "legacy", false, "3DES/SHA-1 PFX encryption for Windows Server 2016 and Windows 10 before 1709")
	f.BoolVar(&force, "force", false, "overwrite existing files, keeping a .bak backup of each")
	f.BoolVar(&public, "public", false, "write the public guardian file NAME.guardian.xml instead of the PFX pair")
	f.StringVar(&pw.file, "password-file", "", "read the PFX password from FILE (- for standard input)")
	cmd.MarkFlagDirname("dir")
	return cmd
}

// pfxNames are the file names the Windows export and import scripts use.
func pfxNames(dir, name string) (signing, encryption string) {
	return filepath.Join(dir, name+"-signing.pfx"), filepath.Join(dir, name+"-encryption.pfx")
}

// minExportPassword is the export password length below which guardctl
// warns: a PFX's password is all that protects the private keys in it.
const minExportPassword = 12

func (a *app) exportPFX(e *certstore.Entry, dir string, legacy, force bool, pw *passwordSource) error {
	g := e.Guardian
	sigPath, encPath := pfxNames(dir, g.Name)
	// Refuse before asking for a password, and before writing either file.
	// One file of the pair alone may be the half a killed export left
	// (the two are renamed into place one after the other): it is looked
	// at once the password is known.
	var half string
	if !force {
		var present []string
		for _, p := range []string{sigPath, encPath} {
			if _, err := os.Lstat(p); err == nil {
				present = append(present, p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		switch len(present) {
		case 2:
			return fmt.Errorf("%s: %w", present[0], atomicfile.ErrExists)
		case 1:
			half = present[0]
		}
	}
	password, err := pw.read(a, fmt.Sprintf("Password for %s-signing.pfx and %s-encryption.pfx", g.Name, g.Name), true)
	if err != nil {
		return err
	}
	if password == "" {
		return usageError("the PFX password is empty; private keys are never exported without one")
	}
	if n := utf8.RuneCountInString(password); n < minExportPassword {
		// On standard error in every output mode: the files are written,
		// but whoever gets them can guess the password offline.
		a.warn("the export password is %d characters long; anyone who gets the files can guess a short password offline: use %d or more", n, minExportPassword)
	}
	sk, ek, err := g.SoftwareKeys()
	if err != nil {
		return err
	}
	sigPFX, err := guardian.EncodePFX(sk, g.Signing, password, legacy)
	if err != nil {
		return err
	}
	encPFX, err := guardian.EncodePFX(ek, g.Encryption, password, legacy)
	if err != nil {
		return err
	}
	res := exportResult{Name: g.Name, PFXEncryption: "AES-256-CBC/PBKDF2-SHA256, MAC HMAC-SHA256"}
	if legacy {
		res.PFXEncryption = "3DES/SHA-1 (legacy), MAC HMAC-SHA1"
	}
	overwrite := force
	if half != "" {
		// The half a killed export of this guardian left, under this
		// password, is finished: replacing it loses nothing (the same
		// certificate and key under the same password), so it needs
		// neither --force nor a backup. Anything else is not replaced.
		if !exportedHalf(half, password, g) {
			return withHint(fmt.Errorf("%s: %w", half, atomicfile.ErrExists), exitFailure,
				"it is not the half of an export of this guardian under this password that an interrupted export left; move it away, or pass --force to replace it (keeping a .bak)")
		}
		a.note("%s is the half of this pair an interrupted export left; writing the pair whole", half)
		overwrite = true
	}
	// The directory is made only now, when there is something to put in
	// it: a refusal or a wrong password leaves no empty directory, and a
	// write that fails (a full disk) removes what it made.
	undoDir, err := atomicfile.MkdirNew(dir)
	if err != nil {
		return err
	}
	// Both files are written in full before either is put in place: a
	// full disk leaves neither.
	backups, err := atomicfile.WriteFiles([]atomicfile.File{{Path: sigPath, Data: sigPFX, Perm: 0o600}, {Path: encPath, Data: encPFX, Perm: 0o600}},
		atomicfile.Options{Overwrite: overwrite, Backup: force})
	if err != nil {
		undoDir()
		return err
	}
	res.Files = []exportedFile{
		{Path: sigPath, Role: "signing", Thumbprint: guardian.Thumbprint(g.Signing), Backup: backups[0]},
		{Path: encPath, Role: "encryption", Thumbprint: guardian.Thumbprint(g.Encryption), Backup: backups[1]},
	}
	return a.reportExport(res)
}

// exportedHalf reports whether the file at path is a PFX that opens with
// password to g's signing or encryption certificate and key: what an export
// of g killed between its two renames left.
func exportedHalf(path, password string, g *guardian.Guardian) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > guardian.MaxPFXSize {
		return false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	pfx, err := guardian.DecodePFX(data, password)
	if err != nil {
		return false
	}
	return (pfx.Cert.Equal(g.Signing) && pfx.Key.Equal(g.SigningKey)) ||
		(pfx.Cert.Equal(g.Encryption) && pfx.Key.Equal(g.EncryptionKey))
}

func (a *app) exportPublic(g *guardian.Guardian, dir string, force bool) error {
	data, err := g.MarshalPublic()
	if err != nil {
		return err
	}
	undoDir, err := atomicfile.MkdirNew(dir)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, g.Name+".guardian.xml")
	backup, err := atomicfile.WriteFile(path, data, 0o644, atomicfile.Options{Overwrite: force, Backup: true})
	if err != nil {
		undoDir()
		return err
	}
	return a.reportExport(exportResult{Name: g.Name, Files: []exportedFile{{Path: path, Role: "public", Backup: backup}}})
}

func (a *app) reportExport(res exportResult) error {
	for _, f := range res.Files {
		if f.Backup != "" {
			a.note("kept the previous %s as %s", f.Path, f.Backup)
		}
	}
	return a.print(res)
}

// writeText lists the files written, one path a line.
func (res exportResult) writeText(w io.Writer) error {
	for _, f := range res.Files {
		if _, err := fmt.Fprintln(w, f.Path); err != nil {
			return err
		}
	}
	return nil
}
