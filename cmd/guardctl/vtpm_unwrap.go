package main

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/vtpm"
	"github.com/spf13/cobra"
)

// unwrapBundleResult is the JSON output of vtpm unwrap.
type unwrapBundleResult struct {
	File       string   `json:"file"`
	To         string   `json:"to"`
	Device     string   `json:"device,omitempty"` // the block device written in place, when --to is one or links to one
	Layout     string   `json:"layout"`
	Files      []string `json:"files"`
	SecretOut  string   `json:"secretOut,omitempty"`
	SwtpmKey   string   `json:"swtpmKey,omitempty"` // swtpm's --key value for the state, with the secret in secretOut`
	Backup     string   `json:"backup,omitempty"`
	UnwrapWith string   `json:"unwrapWith"`
	// Fixed lists what, the state being in place already, only had its
	// owner or mode set (or would have, with --dry-run).
	Fixed []string `json:"fixed,omitempty"`
	outcome
}

// owner is a --chown USER[:GROUP], resolved.
type owner struct{ uid, gid int }

func parseChown(spec string) (*owner, error) {
	if spec == "" {
		return nil, nil
	}
	u, g, _ := strings.Cut(spec, ":")
	o := &owner{uid: -1, gid: -1}
	if id, err := strconv.Atoi(u); err == nil {
		o.uid = id
	} else if uu, err := user.Lookup(u); err == nil {
		o.uid, _ = strconv.Atoi(uu.Uid)
		if g == "" {
			o.gid, _ = strconv.Atoi(uu.Gid)
		}
	} else {
		return nil, usageError("--chown: no user %q on this host", u)
	}
	if g != "" {
		if id, err := strconv.Atoi(g); err == nil {
			o.gid = id
		} else if gg, err := user.LookupGroup(g); err == nil {
			o.gid, _ = strconv.Atoi(gg.Gid)
		} else {
			return nil, usageError("--chown: no group %q on this host", g)
		}
	}
	return o, nil
}

func (o *owner) apply(path string) error {
	if o == nil {
		return nil
	}
	return os.Lchown(path, o.uid, o.gid)
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
		Short: "Unwrap a bundle with a local guardian into a state directory or file",
		Long: `Unwrap a bundle with a guardian of this store and put the state in place: a state
directory (PATH, as libvirt keeps /var/lib/libvirt/swtpm/UUID/tpm2) or a linear
state file. The bundle's owner must be a guardian this store knows (its public
guardian is enough: import it with 'guardctl guardian import NAME --public FILE';
--allow-unknown-owner accepts any owner), since anyone holding this host's public
guardian can make a bundle it opens. Everything is verified and decrypted in
memory first; a directory is
written in a temporary directory beside PATH and renamed into place. An existing,
non-empty PATH is replaced only with --force, and then kept as
PATH.TIME-XXXXXX.bak; never while a process (a swtpm) has it open or locked,
as a running swtpm would write its old state over the new one. A state
already in place is left as it is, but for the owner --chown asks for and
the modes guardctl writes, which are set.

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
swtpm's sections becomes zeros.`,
		Example: `  guardctl vtpm unwrap vm1.vtpm --to /var/lib/libvirt/swtpm/$UUID/tpm2 --passphrase-out secret.bin --chown tss:tss
  guardctl vtpm unwrap vm100.vtpm --to "$(pvesm path local-lvm:vm-100-disk-1)"`,
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
			dirLayout := m.Layout == vtpm.LayoutDir
			dev, isDev, err := vtpm.ResolveDevice(to)
			switch {
			case !dirLayout && err != nil:
				return err // a link, but not to a block device
			case !isDev:
				// A symbolic link to a directory is refused below.
			case dirLayout:
				return withHint(fmt.Errorf("%s is a block device, and the state in %s is a state directory; a block device takes a linear state", to, args[0]), exitUsage,
					"unwrap it into a directory (--to DIR) for swtpm --tpmstate dir=DIR; a volume takes a bundle wrapped from a linear state (swtpm's backend-uri=file://)")
			case m.Layout != vtpm.LayoutLinear:
				return usageError("%s is a block device, and the state in %s is a single blob file; swtpm reads a linear state from a block device", to, args[0])
			case own != nil:
				return usageError("%s is a block device: it keeps its owner, --chown does not apply", to)
			}
			if secretOut == "-" {
				if err := a.stdoutFor(map[bool]string{true: "--key-out", false: "--passphrase-out"}[keyOut != ""]); err != nil {
					return err
				}
			}
			res := unwrapBundleResult{File: args[0], To: to, Layout: string(m.Layout), UnwrapWith: by.Name}
			modes := map[string]fs.FileMode{}
			for _, f := range m.Files {
				modes[f.Name] = fs.FileMode(f.Mode).Perm()
				if f.Name != vtpm.SecretFile {
					res.Files = append(res.Files, f.Name)
				}
			}
			place := checkPlace(to, m.Layout, isDev, files, modes, own, secretOut)
			if place.state && place.secret == secretDiffers && !force {
				return fmt.Errorf("%s already holds the state of %s, and %s holds a different %s: %w", to, args[0], secretOut, m.StateEncryption.Secret, atomicfile.ErrExists)
			}
			if place.state && place.secret != secretDiffers {
				// The state is in place: only what is around it may be
				// left to do (an owner, a mode, a missing secret file).
				res.SecretOut = secretOut
				if m.StateEncryption != nil && secretOut != "" {
					res.SwtpmKey = m.StateEncryption.SwtpmKey(secretOut)
				}
				for _, f := range place.fixes {
					res.Fixed = append(res.Fixed, f.path)
				}
				if len(place.fixes) == 0 && place.secret == secretSame {
					a.setChanged(false)
					res.outcome = a.outcome
					if a.output == "json" {
						return writeJSON(a.stdout, res)
					}
					a.note("guardctl: %s already holds the state of %s; unchanged", to, args[0])
					return nil
				}
				if err := targetNotInUse(to, dev, isDev); err != nil {
					return err
				}
				a.setChanged(true)
				res.outcome = a.outcome
				if !a.dryRun {
					for _, f := range place.fixes {
						if err := f.apply(); err != nil {
							return err
						}
					}
					if place.secret == secretMissing {
						if err := writeSecretOut(secretOut, files[vtpm.SecretFile], false); err != nil {
							return err
						}
					}
				}
				if a.output == "json" {
					return writeJSON(a.stdout, res)
				}
				would := map[bool]string{true: "would set", false: "set"}[a.dryRun]
				a.note("guardctl: %s already holds the state of %s", to, args[0])
				for _, f := range place.fixes {
					a.note("guardctl: %s the owner and mode of %s", would, f.path)
				}
				if place.secret == secretMissing {
					a.note("guardctl: %s the state's %s in %s (0600)", map[bool]string{true: "would write", false: "wrote"}[a.dryRun], m.StateEncryption.Secret, secretOut)
				}
				return nil
			}
			fresh := false
			if !isDev {
				if fresh, err = checkTarget(to, dirLayout, force); err != nil {
					return err
				}
			} else if !force {
				// WriteDevice checks again as it writes; this refuses
				// before anything else is done (and for --dry-run).
				if fresh, err = vtpm.DeviceFresh(dev); err != nil {
					return err
				} else if !fresh {
					return fmt.Errorf("%s: %w", to, errors.Join(vtpm.ErrDeviceHoldsData, atomicfile.ErrExists))
				}
			}
			// A state a running swtpm uses would be written over by it.
			if err := targetNotInUse(to, dev, isDev); err != nil {
				return err
			}
			if secretOut != "" && secretOut != "-" {
				if err := refuseExisting(secretOut, force); err != nil {
					return err
				}
			}
			a.setChanged(true)
			res.outcome = a.outcome
			if a.dryRun {
				res.SecretOut = secretOut
				if a.output == "json" {
					return writeJSON(a.stdout, res)
				}
				a.note("guardctl: would unwrap %s with guardian %q into %s", args[0], by.Name, to)
				return nil
			}
			if dirLayout {
				res.Backup, err = writeStateDir(to, files, modes, own, force)
			} else if isDev {
				// Written in place, its old contents kept first.
				res.Device = dev
				res.Backup, err = vtpm.WriteDevice(dev, files[res.Files[0]], vtpm.DeviceOptions{Force: force, BackupDir: backupDir, BackupName: filepath.Base(to), KeepBackup: true})
			} else {
				// A fresh, all-zero volume holds no state: replaced
				// without --force, and with no backup.
				name := res.Files[0]
				err = atomicfile.MkdirAll(filepath.Dir(to))
				if err == nil {
					res.Backup, err = atomicfile.WriteFile(to, files[name], fileMode(modes[name]), atomicfile.Options{Overwrite: force || fresh, Backup: !fresh})
				}
				if err == nil {
					err = own.apply(to)
				}
			}
			if err != nil {
				return err
			}
			if secretOut == "-" {
				if _, err := a.stdout.Write(files[vtpm.SecretFile]); err != nil {
					return err
				}
				res.SecretOut = secretOut
			} else if secretOut != "" {
				if err := writeSecretOut(secretOut, files[vtpm.SecretFile], force); err != nil {
					return err
				}
				res.SecretOut = secretOut
			}
			if m.StateEncryption != nil && secretOut != "" {
				f := secretOut
				if f == "-" {
					f = "FILE"
				}
				res.SwtpmKey = m.StateEncryption.SwtpmKey(f)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, res)
			}
			a.note("guardctl: unwrapped %s with guardian %q into %s", args[0], by.Name, to)
			if res.Device != "" {
				a.note("guardctl: wrote %s in place, synced, and read it back", res.Device)
			}
			if res.Backup != "" {
				a.note("guardctl: the state that was there is kept as %s", res.Backup)
			}
			switch secretOut {
			case "":
			case "-":
				a.note("guardctl: the state's %s went to standard output", m.StateEncryption.Secret)
			default:
				a.note("guardctl: the state's %s is in %s (0600)", m.StateEncryption.Secret, secretOut)
			}
			if res.SwtpmKey != "" {
				a.note("guardctl: start swtpm with --key %s", res.SwtpmKey)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "state directory (or linear state file) to create")
	f.StringVar(&keyOut, "key-out", "", "where to write the state's swtpm key (0600; - for standard output when it is not a terminal)")
	f.StringVar(&passOut, "passphrase-out", "", "where to write the state's passphrase (0600; - for standard output when it is not a terminal)")
	f.StringVar(&chown, "chown", "", "give the state to USER[:GROUP] (libvirt runs swtpm as tss)")
	f.BoolVar(&force, "force", false, "replace an existing state, keeping it as a .bak")
	f.StringVar(&backupDir, "backup-dir", ".", "where the old contents of a block device --to are kept (0600) before it is written")
	trust.register(cmd)
	f.BoolVar(&allowDowngrade, "allow-downgrade", false, "unwrap state from a newer swtpm than this host's")
	a.addDryRun(cmd)
	return cmd
}

// checkTarget refuses an existing state without force. fresh reports a
// file of zeros only (a freshly allocated volume), which holds no state.
func checkTarget(to string, dir, force bool) (fresh bool, err error) {
	fi, err := os.Lstat(to)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return false, fmt.Errorf("%s is a symbolic link; refusing to write through it (only a link to a block device is followed, for a linear state)", to)
	}
	if dir != fi.IsDir() || (!dir && !fi.Mode().IsRegular()) {
		return false, usageError("%s exists and is not a %s", to, map[bool]string{true: "directory", false: "regular file or block device"}[dir])
	}
	if dir {
		if des, _ := os.ReadDir(to); len(des) == 0 {
			return false, nil
		}
	} else if fi.Size() <= vtpm.MaxDeviceSize {
		if data, err := os.ReadFile(to); err == nil && vtpm.IsZero(data) {
			return true, nil
		}
	}
	if !force {
		return false, fmt.Errorf("%s already holds a state: %w", to, atomicfile.ErrExists)
	}
	return false, nil
}

// writeStateDir writes files into a new directory beside dir and renames it
// into place, keeping what was there as dir.TIME.bak.
func writeStateDir(dir string, files map[string][]byte, modes map[string]fs.FileMode, own *owner, force bool) (string, error) {
	parent := filepath.Dir(dir)
	_, statErr := os.Stat(parent)
	if err := atomicfile.MkdirAll(parent); err != nil {
		return "", err
	}
	// libvirt keeps each VM's swtpm directory (the parent of tpm2) 0700 and
	// owned by the swtpm user too: one guardctl made goes to the same owner.
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := own.apply(parent); err != nil {
			return "", err
		}
	}
	// What a killed unwrap left beside the target was never a state in
	// place; it holds state, so it does not stay.
	prefix := atomicfile.TempNamePrefix(dir)
	if left, err := filepath.Glob(prefix + "*"); err == nil {
		for _, l := range left {
			if fi, err := os.Lstat(l); err == nil && fi.IsDir() {
				os.RemoveAll(l)
			}
		}
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	tmp := prefix + hex.EncodeToString(rnd[:])
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o700); err != nil {
		return "", err
	}
	for name, data := range files {
		if name == vtpm.SecretFile {
			continue
		}
		p := filepath.Join(tmp, name)
		if _, err := atomicfile.WriteFile(p, data, fileMode(modes[name]), atomicfile.Options{}); err != nil {
			return "", err
		}
		if err := own.apply(p); err != nil {
			return "", err
		}
	}
	if err := own.apply(tmp); err != nil {
		return "", err
	}
	var backup string
	if fi, err := os.Lstat(dir); err == nil && fi.IsDir() {
		if des, _ := os.ReadDir(dir); len(des) > 0 {
			if !force {
				return "", fmt.Errorf("%s already holds a state: %w", dir, atomicfile.ErrExists)
			}
			backup = atomicfile.BackupName(dir, time.Now())
			if err := os.Rename(dir, backup); err != nil {
				return "", err
			}
			// Like every backup: the owner's alone.
			if err := os.Chmod(backup, 0o700); err != nil {
				return "", err
			}
		} else if err := os.Remove(dir); err != nil {
			return "", err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return backup, err
	}
	ok = true
	return backup, atomicfile.SyncDir(parent)
}

// fileMode is a state file's recorded mode, 0600 when none was recorded.
func fileMode(m fs.FileMode) fs.FileMode {
	if m == 0 {
		return 0o600
	}
	return m
}

// writeSecretOut writes the state's key or passphrase to path, 0600.
func writeSecretOut(path string, secret []byte, force bool) error {
	if err := atomicfile.MkdirAll(filepath.Dir(path)); err != nil {
		return err
	}
	_, err := atomicfile.WriteFile(path, secret, 0o600, atomicfile.Options{Overwrite: force, Backup: true})
	return err
}

// targetNotInUse refuses a target a process has open or a swtpm has
// locked: a running swtpm writes its own state over a new one.
func targetNotInUse(to, dev string, isDev bool) error {
	if isDev {
		// Its own errors name the device.
		return vtpm.CheckDeviceNotInUse(dev)
	}
	if err := vtpm.CheckPathNotInUse(to); err != nil {
		return fmt.Errorf("%s: %w", to, err)
	}
	return nil
}

// How a --key-out or --passphrase-out file compares with the bundle's secret.
const (
	secretSame    = iota // the same secret, 0600 (or no file asked for)
	secretMissing        // no file there yet
	secretDiffers        // another secret, or not a regular file
)

// metaFix is an owner and mode to set on a file or directory in place.
type metaFix struct {
	path string
	mode fs.FileMode
	own  *owner
}

func (f metaFix) apply() error {
	if err := f.own.apply(f.path); err != nil {
		return err
	}
	return os.Chmod(f.path, f.mode)
}

// placement is what an unwrap asked again finds at its target.
type placement struct {
	state  bool // the target holds the bundle's swtpm blobs
	secret int  // secretSame, secretMissing or secretDiffers
	fixes  []metaFix
}

// checkPlace compares the state at to with what the bundle's payload files
// hold (the same swtpm blobs), with the modes guardctl writes and the owner
// --chown asks for, and secretOut, when given, with the same secret (0600).
func checkPlace(to string, layout vtpm.Layout, isDev bool, files map[string][]byte, modes map[string]fs.FileMode, own *owner, secretOut string) placement {
	var p placement
	if secretOut == "-" {
		return p
	}
	if !isDev {
		// Nothing is written through a link but to a block device.
		if fi, err := os.Lstat(to); err != nil || fi.Mode()&fs.ModeSymlink != 0 {
			return p
		}
	}
	st, err := vtpm.ReadState(to)
	if err != nil {
		return p
	}
	disk := map[string][]byte{}
	for name, data := range files {
		switch {
		case name == vtpm.SecretFile:
		case layout == vtpm.LayoutDir:
			disk[name] = data
		default:
			disk[""] = data
		}
	}
	blobs, err := vtpm.BlobsOf(layout, disk)
	if err != nil || !st.HoldsBlobs(layout, blobs) {
		return p
	}
	p.state = true
	want := func(path string, mode fs.FileMode, own *owner) {
		fi, err := os.Lstat(path)
		if err != nil {
			return
		}
		ok := fi.Mode().Perm() == mode
		if uid, gid, known := vtpm.OwnerOf(fi); known && own != nil {
			ok = ok && (own.uid < 0 || own.uid == uid) && (own.gid < 0 || own.gid == gid)
		}
		if !ok {
			p.fixes = append(p.fixes, metaFix{path: path, mode: mode, own: own})
		}
	}
	switch {
	case isDev:
		// A device keeps its owner and mode.
	case layout == vtpm.LayoutDir:
		want(to, 0o700, own)
		for _, name := range slices.Sorted(maps.Keys(files)) {
			if name != vtpm.SecretFile {
				want(filepath.Join(to, name), fileMode(modes[name]), own)
			}
		}
	default:
		for name := range files {
			if name != vtpm.SecretFile {
				want(to, fileMode(modes[name]), own)
			}
		}
	}
	if secretOut != "" {
		fi, err := os.Lstat(secretOut)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			p.secret = secretMissing
		case err != nil || !fi.Mode().IsRegular():
			p.secret = secretDiffers
		default:
			have, err := os.ReadFile(secretOut)
			if err != nil || subtle.ConstantTimeCompare(have, files[vtpm.SecretFile]) != 1 {
				p.secret = secretDiffers
			} else {
				want(secretOut, 0o600, nil)
			}
		}
	}
	return p
}
