package main

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/vtpm"
	"github.com/spf13/cobra"
)

// unwrapBundleResult is the JSON output of vtpm unwrap.
type unwrapBundleResult struct {
	File   string `json:"file"`
	To     string `json:"to"`
	Target string `json:"target"`           // directory, file, device or qcow2
	Device string `json:"device,omitempty"` // the block device written in place, when --to is one or links to one
	// Image is the qcow2 image's format, virtual size and backing file, kept.
	Image      *vtpm.ImageInfo `json:"image,omitempty"`
	Layout     string          `json:"layout"`
	Files      []string        `json:"files"`
	Writes     []writeView     `json:"writes"` // what is (or would be) written where, with its mode
	SecretOut  string          `json:"secretOut,omitempty"`
	SwtpmKey   string          `json:"swtpmKey,omitempty"` // swtpm's --key value for the state, with the secret in secretOut`
	Backup     string          `json:"backup,omitempty"`
	BackupDir  string          `json:"backupDir,omitempty"` // where a device's or qcow2 image's old contents are (or would be) kept
	UnwrapWith string          `json:"unwrapWith"`
	// Fixed lists what, the state being in place already, only had its
	// owner or mode set (or would have, with --dry-run).
	Fixed []string `json:"fixed,omitempty"`
	// Removed lists what earlier guardctl runs that were stopped left
	// beside the target, removed (or that would be).
	Removed []string `json:"removed,omitempty"`
	outcome
	noText // noteUnwrap says it
}

// writeView is one file a plan writes.
type writeView struct {
	Path string `json:"path"`
	Mode string `json:"mode,omitempty"` // octal; none for a block device
}

// parseChown resolves a --chown USER[:GROUP].
func parseChown(spec string) (*vtpm.Owner, error) {
	if spec == "" {
		return nil, nil
	}
	u, g, _ := strings.Cut(spec, ":")
	o := &vtpm.Owner{UID: -1, GID: -1}
	if id, err := strconv.Atoi(u); err == nil {
		o.UID = id
	} else if uu, err := user.Lookup(u); err == nil {
		o.UID, _ = strconv.Atoi(uu.Uid)
		if g == "" {
			o.GID, _ = strconv.Atoi(uu.Gid)
		}
	} else {
		return nil, usageError("--chown: no user %q on this host", u)
	}
	if g != "" {
		if id, err := strconv.Atoi(g); err == nil {
			o.GID = id
		} else if gg, err := user.LookupGroup(g); err == nil {
			o.GID, _ = strconv.Atoi(gg.Gid)
		} else {
			return nil, usageError("--chown: no group %q on this host", g)
		}
	}
	return o, nil
}

// versionLess compares dotted versions numerically.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func newVTPMUnwrapCmd(a *app) *cobra.Command {
	var to, keyOut, passOut, chown, backupDir string
	var force, allowDowngrade bool
	var trust trustFlags
	cmd := &cobra.Command{
		Use:   "unwrap FILE --to PATH [--key-out F | --passphrase-out F]",
		Short: "Unwrap a bundle with a local guardian into a state directory, file, block device or qcow2 image",
		Long: `Unwrap a bundle with a guardian of this store and put the state in place: a state
directory (PATH, as libvirt keeps /var/lib/libvirt/swtpm/UUID/tpm2), a linear
state file, a block device or a qcow2 image. The bundle's owner must be a
guardian this store knows (its public guardian is enough: import it with
'guardctl guardian import NAME --public FILE'; --allow-unknown-owner accepts any
owner), since anyone holding this host's public guardian can make a bundle it
opens. Everything is verified and decrypted in memory first; a directory is
written in a temporary directory beside PATH and renamed into place, with every
file the bundle holds (swtpm's tpm2-00.* files, libvirt's ek-*.crt, any other).
Each file is written 0640 when its group could read it on the source (as swtpm
and libvirt write them), else 0600. An existing, non-empty PATH is replaced
only with --force, and then kept as PATH.TIME-XXXXXX.bak; never while a process
(a swtpm, a qemu-storage-daemon) has it open or locked, as it would write its
old state over the new one. A state already in place is left as it is, but for
the owner --chown asks for and the modes guardctl writes, which are set. What
an earlier guardctl that was stopped left beside PATH is removed. --dry-run
says what would be written where, what would be kept, and what removed.

State that swtpm encrypts comes out as it went in, and its key (--key-out) or
passphrase (--passphrase-out) is written 0600 for swtpm --key or virsh
secret-set-value. --chown USER[:GROUP] gives the state to the user swtpm runs as
(libvirt's tss).

A linear state may go onto a block device, as Proxmox keeps a tpmstate volume
on LVM, ZFS or Ceph storage: --to names the device, or the symbolic link 'pvesm
path' gives (only that one link is followed, and only to a block device). The
device is written in place: refused while it is in use or when it is smaller
than the state, and for a state directory (a device takes a linear
state); a fresh volume (all zeros) is written without --force, and
anything else only with --force, after its contents are kept in --backup-dir
(0600). The device is synced, read back and compared. Everything on it outside
swtpm's sections becomes zeros.

A linear state may also go into a qcow2 image, as Proxmox VE 9 keeps tpmstate0
on directory storage (and on LVM with snapshot-as-volume-chain, a block device
holding qcow2): the image keeps its format, virtual size and backing file;
qemu-img (qemu-utils) writes it. A file is written as a copy beside it that is
renamed into place. The same rules hold as for a device (fresh without
--force, else --force and the old image in --backup-dir), and it is refused
while qemu's image lock is held (a qemu-storage-daemon or QEMU has it open) or
a process has it open.`,
		Example: `  guardctl vtpm unwrap vm1.vtpm --to /var/lib/libvirt/swtpm/$UUID/tpm2 --passphrase-out secret.bin --chown tss:tss
  guardctl vtpm unwrap vm100.vtpm --to "$(pvesm path local-lvm:vm-100-disk-1)"
  guardctl vtpm unwrap vm100.vtpm --to "$(pvesm path local:100/vm-100-disk-1.qcow2)" --force --backup-dir /root/tpm-backups`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageError("--to PATH is required")
			}
			if to == "-" {
				return usageError("--to is where the state goes, a directory or a file; standard output (-) is not one")
			}
			// "out/" names the directory out: its parent is where the new
			// state is made and the old one kept.
			to = filepath.Clean(to)
			if keyOut != "" && passOut != "" {
				return usageError("give --key-out or --passphrase-out, not both")
			}
			own, err := parseChown(chown)
			if err != nil {
				return err
			}
			b, p, err := readBundle(args[0])
			if err != nil {
				return err
			}
			// The manifest is authenticated (every payload file's tag
			// covers it) before any of its fields decides anything: a
			// changed byte is a tampered bundle, not a usage error.
			tk, by, err := a.unwrapProtector(args[0], p, trust)
			if err != nil {
				return err
			}
			files, err := b.Open(tk)
			if err != nil {
				return inFile(args[0], err)
			}
			m := b.Manifest
			secretOut := keyOut + passOut
			switch {
			case m.StateEncryption == nil && secretOut != "":
				return usageError("the state in %s is not encrypted by swtpm; it has no key or passphrase to write", args[0])
			case m.StateEncryption != nil && m.StateEncryption.Secret == "key" && keyOut == "":
				return usageError("the state is encrypted with a key (%s); say where it goes with --key-out F (0600), for swtpm --key file=F", m.StateEncryption.Cipher)
			case m.StateEncryption != nil && m.StateEncryption.Secret == "passphrase" && passOut == "":
				return usageError("the state is encrypted with a passphrase (%s); say where it goes with --passphrase-out F (0600), for swtpm --key pwdfile=F or virsh secret-set-value", m.StateEncryption.Cipher)
			}
			if local := swtpmVersion(); m.SwtpmVersion != "" && local != "" && versionLess(local, m.SwtpmVersion) && !allowDowngrade {
				return withHint(fmt.Errorf("the state comes from swtpm %s and this host has swtpm %s: libtpms state moves to the same or a newer version", m.SwtpmVersion, local), exitUsage,
					"upgrade swtpm and libtpms here, or pass --allow-downgrade if the source used a profile this libtpms supports")
			}
			// The target is looked at before anything is written: one
			// that cannot take this state is refused first.
			if _, err := vtpm.OpenTarget(to, m.Layout, "the state in "+args[0]); err != nil {
				return err
			}
			// An output that cannot be written is refused before the
			// state is put in place, so that a failed unwrap leaves
			// nothing it made.
			if secretOut != "" && secretOut != "-" {
				if err := checkOutputDir(secretOut); err != nil {
					return err
				}
			}
			if secretOut == "-" {
				if err := a.stdoutFor(map[bool]string{true: "--key-out", false: "--passphrase-out"}[keyOut != ""]); err != nil {
					return err
				}
			}
			res := unwrapBundleResult{File: args[0], To: to, Layout: string(m.Layout), UnwrapWith: by.Name, Writes: []writeView{}}
			img := vtpm.Image{Source: "the state in " + args[0], Layout: m.Layout, Files: map[string][]byte{}, Modes: map[string]fs.FileMode{}}
			for _, f := range m.Files {
				if f.Name == vtpm.SecretFile {
					continue
				}
				res.Files = append(res.Files, f.Name)
				disk := f.Name
				if m.Layout != vtpm.LayoutDir {
					disk = ""
				}
				img.Files[disk], img.Modes[disk] = files[f.Name], fs.FileMode(f.Mode).Perm()
			}
			plan, err := vtpm.PlanUnwrap(to, img, vtpm.UnwrapOptions{Force: force, BackupDir: backupDir, Owner: own})
			if err != nil {
				return err
			}
			t := plan.Target
			res.Target, res.Device, res.Image, res.BackupDir = string(t.Kind()), t.Device(), t.Info(), plan.BackupDir
			for _, w := range plan.Writes {
				v := writeView{Path: w.Path}
				if w.Mode != 0 {
					v.Mode = fmt.Sprintf("%04o", w.Mode)
				}
				res.Writes = append(res.Writes, v)
			}
			for _, f := range plan.Fixes {
				res.Fixed = append(res.Fixed, f.Path)
			}
			res.Removed = plan.Leftovers
			secret := secretSame
			if secretOut != "" && secretOut != "-" {
				secret = compareSecret(secretOut, files[vtpm.SecretFile])
				if secret == secretWrongMode {
					res.Fixed = append(res.Fixed, secretOut)
				}
			}
			if secret == secretDiffers && !force {
				if plan.InPlace {
					return fmt.Errorf("%s already holds the state of %s, and %s holds a different %s: %w", to, args[0], secretOut, m.StateEncryption.Secret, atomicfile.ErrExists)
				}
				return fmt.Errorf("%s: %w", secretOut, atomicfile.ErrExists)
			}
			changed := plan.Changes() || secret != secretSame
			a.setChanged(changed)
			res.outcome = a.outcome
			if secretOut != "" {
				res.SecretOut = secretOut
			}
			if m.StateEncryption != nil && secretOut != "" {
				f := secretOut
				if f == "-" {
					f = "FILE"
				}
				res.SwtpmKey = m.StateEncryption.SwtpmKey(f)
			}
			if !a.dryRun {
				if res.Backup, err = plan.Apply(); err != nil {
					return err
				}
				switch {
				case secretOut == "-":
					if _, err := a.stdout.Write(files[vtpm.SecretFile]); err != nil {
						return err
					}
				case secret == secretWrongMode:
					if err := os.Chmod(secretOut, 0o600); err != nil {
						return err
					}
				case secret != secretSame:
					if err := writeSecretOut(secretOut, files[vtpm.SecretFile], force); err != nil {
						return err
					}
				}
			}
			a.noteUnwrap(res, plan, m.StateEncryption, secret, changed)
			return a.print(res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "state directory, linear state file, block device or qcow2 image to write")
	f.StringVar(&keyOut, "key-out", "", "where to write the state's swtpm key (0600; - for standard output when it is not a terminal)")
	f.StringVar(&passOut, "passphrase-out", "", "where to write the state's passphrase (0600; - for standard output when it is not a terminal)")
	f.StringVar(&chown, "chown", "", "give the state to USER[:GROUP] (libvirt runs swtpm as tss)")
	f.BoolVar(&force, "force", false, "replace an existing state, keeping it as a .bak")
	f.StringVar(&backupDir, "backup-dir", ".", "where the old contents of a block device or qcow2 image --to are kept (0600) before it is written")
	trust.register(cmd)
	f.BoolVar(&allowDowngrade, "allow-downgrade", false, "unwrap state from a newer swtpm than this host's")
	a.addDryRun(cmd)
	return cmd
}

// noteUnwrap says in notes what vtpm unwrap did, or would do.
func (a *app) noteUnwrap(res unwrapBundleResult, plan *vtpm.Plan, enc *vtpm.StateEncryption, secret int, changed bool) {
	dry := a.dryRun
	verb := func(past, future string) string {
		if dry {
			return "would " + future
		}
		return past
	}
	for _, l := range res.Removed {
		a.note("%s %s, left by an earlier guardctl that was stopped", verb("removed", "remove"), l)
	}
	if plan.InPlace {
		if !changed {
			a.note("%s already holds the state of %s; unchanged", res.To, res.File)
			return
		}
		a.note("%s already holds the state of %s", res.To, res.File)
		for _, f := range plan.Fixes {
			a.note("%s the owner and mode of %s", verb("set", "set"), f.Path)
		}
	} else {
		a.note("%s %s with guardian %q into %s", verb("unwrapped", "unwrap"), res.File, res.UnwrapWith, res.To)
		if dry {
			for _, w := range res.Writes {
				if w.Mode != "" {
					a.note("would write %s (mode %s)", w.Path, w.Mode)
				} else {
					a.note("would write %s in place", w.Path)
				}
			}
			switch {
			case plan.Fresh:
			case plan.BackupDir != "":
				a.note("would keep what %s holds in %s (0600) first", res.To, plan.BackupDir)
			default:
				a.note("would keep what %s holds as a .bak beside it", res.To)
			}
		}
		if img := res.Image; img != nil {
			backing := ""
			if img.BackingFile != "" {
				backing = ", backing file " + img.BackingFile
			}
			a.note("%s the state into the %s image (virtual size %d bytes%s), which keeps its format, size and backing file", verb("wrote", "would write"), img.Format, img.VirtualSize, backing)
		}
		if res.Device != "" && !dry {
			a.note("wrote %s in place, synced, and read it back", res.Device)
		}
		if res.Backup != "" {
			a.note("the state that was there is kept as %s", res.Backup)
		}
	}
	switch {
	case res.SecretOut == "-":
		a.note("the state's %s %s standard output", enc.Secret, verb("went to", "would go to"))
	case res.SecretOut == "" || secret == secretSame:
	case secret == secretWrongMode:
		a.note("%s the mode of %s to 0600", verb("set", "set"), res.SecretOut)
	default:
		a.note("the state's %s %s %s (0600)", enc.Secret, verb("is in", "would be written to"), res.SecretOut)
	}
	if res.SwtpmKey != "" && !dry {
		a.note("start swtpm with --key %s", res.SwtpmKey)
	}
}

// checkOutputDir refuses path when what would be its directory is not one.
func checkOutputDir(path string) error {
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return usageError("%s cannot be written: %s is not a directory", path, d)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) || d == filepath.Dir(d) {
			return err
		}
	}
}

// writeSecretOut writes the state's key or passphrase to path, 0600.
func writeSecretOut(path string, secret []byte, force bool) error {
	if err := atomicfile.MkdirAll(filepath.Dir(path)); err != nil {
		return err
	}
	_, err := atomicfile.WriteFile(path, secret, 0o600, atomicfile.Options{Overwrite: force, Backup: true})
	return err
}

// How a --key-out or --passphrase-out file compares with the bundle's secret.
const (
	secretSame      = iota // the same secret, 0600 (or no file asked for)
	secretWrongMode        // the same secret, another mode
	secretMissing          // no file there yet
	secretDiffers          // another secret, or not a regular file
)

// compareSecret compares the file at path with the bundle's secret.
func compareSecret(path string, secret []byte) int {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return secretMissing
	case err != nil || !fi.Mode().IsRegular():
		return secretDiffers
	}
	have, err := os.ReadFile(path)
	if err != nil || subtle.ConstantTimeCompare(have, secret) != 1 {
		return secretDiffers
	}
	if fi.Mode().Perm() != 0o600 {
		return secretWrongMode
	}
	return secretSame
}
