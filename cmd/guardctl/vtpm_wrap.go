package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/guardctl/guardctl/vtpm"
	"github.com/spf13/cobra"
)

// payloadNames are the bundle names of a state's files in each layout.
func payloadFileName(layout vtpm.Layout, diskName string) string {
	switch layout {
	case vtpm.LayoutLinear:
		return "state.img"
	case vtpm.LayoutBlob:
		return "state.blob"
	}
	return diskName
}

var libvirtStatePath = regexp.MustCompile(`/swtpm/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})/tpm2/?$`)

// swtpmVersion is this host's swtpm version ("0.7.1"), or "" when there is
// no swtpm here.
func swtpmVersion() string {
	out, err := exec.Command("swtpm", "--version").Output()
	if err != nil {
		return ""
	}
	m := regexp.MustCompile(`version (\d+(?:\.\d+)+)`).FindSubmatch(out)
	if m == nil {
		return ""
	}
	return string(m[1])
}

func newVTPMWrapCmd(a *app) *cobra.Command {
	var kf kpCreateFlags
	var k stateKeyFlags
	var vmUUID, vmName, volatile string
	cmd := &cobra.Command{
		Use:   "wrap STATE --owner G [--guardian H]... --out FILE",
		Short: "Wrap a swtpm state into a bundle for the guardians of the hosts that may run it",
		Long: `Wrap a swtpm TPM 2.0 state (a state directory as libvirt keeps under
/var/lib/libvirt/swtpm/UUID/tpm2, a linear state file, block device or qcow2 image
as Proxmox keeps tpmstate0) into one bundle: a key protector for the owner and the
guardians, and the state files encrypted under its transport key. A directory is
carried whole: swtpm's tpm2-00.* files, libvirt's EK certificates (ek-*.crt) and
any other regular file, each with its name and mode; a subdirectory, link, FIFO,
socket or device in it is refused by name (swtpm's .lock stays out). A qcow2
image is read with qemu-img (qemu-utils). The bundle can travel over any channel; it
reveals nothing, and any change to it is detected.

State that swtpm encrypts travels with its key (--key-file) or passphrase
(--passphrase-file, e.g. libvirt's vTPM secret value), which must open it. A
passphrase is tried with both of swtpm's key derivations (kdf=pbkdf2, the
default, and kdf=sha512) unless --kdf names one; the bundle records which, so
that unwrap tells the new host's swtpm the same options.
Refused while a swtpm holds the state, for a missing or empty state, and for TPM
1.2 state. Volatile state (from a suspend) is refused unless --volatile include
(swtpm resumes from it on the new host) or --volatile drop (a cold boot).`,
		Example: `  guardctl vtpm wrap /var/lib/libvirt/swtpm/$UUID/tpm2 --owner UntrustedGuardian --guardian host-b \
      --passphrase-file secret.bin --out vm1.vtpm
  guardctl vtpm wrap /var/lib/vz/images/100/vm-100-disk-1.raw --owner pve1 --guardian pve2 --out vm100.vtpm`,
		Args: exactArgs("STATE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if vmUUID != "" && !vtpm.IsUUID(vmUUID) {
				return usageError("--vm-uuid %q is not a UUID (libvirt's <uuid>, like 7c9e6679-7425-40de-944b-e07fc1f90ae7)", vmUUID)
			}
			if volatile != "refuse" && volatile != "include" && volatile != "drop" {
				return usageError("--volatile is refuse, include or drop, not %q", volatile)
			}
			if kf.out == "-" {
				if err := a.stdoutFor("--out"); err != nil {
					return err
				}
			}
			st, info, err := stateToChange(args[0], "wrapping")
			if err != nil {
				return err
			}
			blobs := st.Blobs
			if st.HasVolatile() {
				switch volatile {
				case "refuse":
					return withHint(fmt.Errorf("%s holds volatile state (from a suspend or swtpm_ioctl -v) that swtpm would resume from", st.Path), exitUsage,
						"pass --volatile include to carry it (the VM resumes), or --volatile drop to leave it (the VM boots cold)")
				case "drop":
					blobs = map[string][]byte{}
					for n, b := range st.Blobs {
						if n != "volatilestate" {
							blobs[n] = b
						}
					}
				}
			}
			m := vtpm.Manifest{CreatedAt: time.Now().UTC(), TPMVersion: "2.0", Layout: st.Layout, SwtpmVersion: swtpmVersion()}
			if vmUUID != "" || vmName != "" {
				m.VM = &vtpm.VM{UUID: vmUUID, Name: vmName}
			} else if abs, err := filepath.Abs(st.Path); err == nil {
				if u := libvirtStatePath.FindStringSubmatch(abs); u != nil {
					m.VM = &vtpm.VM{UUID: strings.ToLower(u[1])}
				}
			}
			files, modes := map[string][]byte{}, map[string]uint32{}
			for disk, data := range st.Files(blobs) {
				name := payloadFileName(st.Layout, disk)
				files[name], modes[name] = data, uint32(st.Modes[disk])
			}
			switch {
			case info.Encrypted && !k.given():
				return withHint(fmt.Errorf("%s is encrypted (AES-%d-CBC)", st.Path, info.KeyBits), exitUsage,
					"give its key with --key-file or its passphrase with --passphrase-file (for libvirt, the vTPM secret's value)")
			case !info.Encrypted && k.given():
				return usageError("%s is not encrypted; it takes no --key-file or --passphrase-file", st.Path)
			case info.Encrypted:
				_, kdf, err := k.open(st, info.KeyBits)
				if err != nil {
					return err
				}
				enc := &vtpm.StateEncryption{Cipher: fmt.Sprintf("aes-%d-cbc", info.KeyBits), Secret: "key", KeyFormat: k.keyFormat}
				if k.passphraseFile != "" {
					// The new host's swtpm needs the same kdf=.
					enc = &vtpm.StateEncryption{Cipher: fmt.Sprintf("aes-%d-cbc", info.KeyBits), Secret: "passphrase", KDF: kdf}
				}
				files[vtpm.SecretFile], modes[vtpm.SecretFile] = k.secret, 0o600
				m.StateEncryption = enc
			}
			owner, gs, err := kf.guardians(a)
			if err != nil {
				return err
			}
			if _, err := os.Lstat(kf.out); err == nil && kf.out != "-" {
				if b, p := a.sameBundle(kf.out, owner, gs, kf.allowExpired, m, files, modes); b != nil {
					a.setChanged(false)
					a.note("%s already holds this state for these guardians; unchanged", kf.out)
					_, err := a.showBundle(kf.out, b, p, nil)
					return err
				}
				if err := refuseExisting(kf.out, kf.force); err != nil {
					return err
				}
			}
			tk := keyprotector.NewTransportKey()
			kp, kpXML, err := keyprotector.New(tk, owner, gs)
			if err != nil {
				return err
			}
			if err := a.checkEscrow(kp, nil, kf.noEscrow); err != nil {
				return fmt.Errorf("refusing to write %s: %w", kf.out, err)
			}
			b, err := vtpm.Seal(m, files, modes, keyprotector.EncodeFile(kpXML), tk)
			if err != nil {
				return err
			}
			return a.writeBundle(kf.out, b, kf.force)
		},
	}
	kf.register(cmd, a)
	cmd.Flags().Lookup("out").Usage = "bundle file to write (- for standard output)"
	k.register(cmd, "", "the state's")
	f := cmd.Flags()
	f.StringVar(&vmUUID, "vm-uuid", "", "the VM's UUID, recorded in the manifest (found in a libvirt state path); must be a UUID")
	f.StringVar(&vmName, "vm-name", "", "the VM's name, recorded in the manifest")
	f.StringVar(&volatile, "volatile", "refuse", "volatile state: refuse, include or drop")
	a.addDryRun(cmd)
	return cmd
}

// writeBundle writes b to path atomically (replacing a file only with
// overwrite, and then keeping the old one), or with --dry-run does not, and
// shows it as changed.
func (a *app) writeBundle(path string, b *vtpm.Bundle, overwrite bool) error {
	data, err := b.Marshal()
	if err != nil {
		return err
	}
	a.setChanged(true)
	switch {
	case a.dryRun:
		a.note("would write %s", path)
		if path == "-" {
			return nil
		}
	case path == "-":
		_, err := a.stdout.Write(data)
		return err
	default:
		backup, err := atomicfile.WriteFile(path, data, 0o644, atomicfile.Options{Overwrite: overwrite, Backup: true})
		if err != nil {
			return err
		}
		if backup != "" {
			a.note("%s written; the previous version is %s", path, backup)
		}
	}
	p, err := keyprotector.Parse(b.KeyProtector)
	if err != nil {
		return err
	}
	_, err = a.showBundle(path, b, p, p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: true}))
	return err
}

// sameBundle returns the bundle at path (and its key protector) when it
// verifies, is owner's for exactly gs, and holds what sealing files under m
// would; else nil.
func (a *app) sameBundle(path string, owner *guardian.Guardian, gs []*guardian.Guardian, allowExpired bool, m vtpm.Manifest, files map[string][]byte, modes map[string]uint32) (*vtpm.Bundle, *keyprotector.Protector) {
	b, p, err := readBundle(path)
	if err != nil || p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: allowExpired}) != nil || !p.HasExactly(owner, gs) {
		return nil, nil
	}
	tk, _, err := p.Unwrap([]*guardian.Guardian{owner})
	if err != nil {
		return nil, nil
	}
	opened, err := b.Open(tk)
	if err != nil || !b.Holds(opened, m, files, modes) {
		return nil, nil
	}
	return b, p
}
