package main

import (
	"crypto"
	"fmt"
	"os"
	"slices"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/tpmkey"
	"github.com/spf13/cobra"
)

func newGuardianCreateCmd(a *app) *cobra.Command {
	var keySize, validYears int
	var host, keys, pcrSpec string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Generate a guardian shaped like Hyper-V's",
		Long: `Generate a guardian: two self-signed RSA certificates with SHA-256 signatures,
"CN=Shielded VM Signing Certificate (NAME) (HOST)" (digitalSignature) and
"CN=Shielded VM Encryption Certificate (NAME) (HOST)" (keyEncipherment,
dataEncipherment), with their private keys, as New-HgsGuardian
-GenerateCertificates makes them.

With --keys tpm the two RSA-2048 keys are generated inside this host's TPM 2.0
(--tpm, /dev/tpmrm0 by default) and never leave it: the store keeps the
certificates and the TPM's key blobs, which load only into that TPM. The
encryption key can be bound to the current values of some PCRs (--pcrs
sha256:0,2,4,7), so that it unwraps only while the host boots as it does now.
A PIN, read from --pin-file, protects both keys; without one they are made
with noDA, so that failed uses never lock the TPM out for other programs.
Key protectors that only TPM guardians could open are refused unless
--no-escrow: grant an escrow file guardian too (README, "Escrow").`,
		Example: `  guardctl guardian create UntrustedGuardian
  guardctl guardian create host-b --key-size 3072 --valid-years 5
  guardctl guardian create host-tpm --keys tpm --pcrs sha256:0,2,4,7`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := validName(name); err != nil {
				return err
			}
			var pcrs *tpmkey.PCRBinding
			if pcrSpec != "" {
				if keys != "tpm" {
					return usageError("--pcrs binds a TPM guardian's key; pass --keys tpm with it")
				}
				var err error
				if pcrs, err = tpmkey.ParsePCRs(pcrSpec); err != nil {
					return usageError("%v", err)
				}
			}
			if keys == "tpm" && keySize != 2048 {
				return usageError("a TPM guardian's keys are RSA 2048 bits; drop --key-size %d", keySize)
			}
			if keys == "tpm" && a.storeSpec == certstore.HyperVSpec {
				return withHint(fmt.Errorf("Hyper-V's store (--store hyperv) cannot hold a TPM guardian: %w", certstore.ErrTPMUnsupported), exitUsage,
					"create TPM guardians in a directory store (--store DIR); docs/hyperv.md says what Hyper-V's store would need")
			}
			if !slices.Contains(guardian.KeySizes, keySize) {
				return usageError("key size %d is not supported; use 2048, 3072 or 4096", keySize)
			}
			if validYears < 1 || validYears > 100 {
				return usageError("--valid-years %d is out of range; use 1 to 100", validYears)
			}
			if host == "" {
				host, _ = os.Hostname()
			}
			st, err := a.store()
			if err != nil {
				return err
			}
			// Fail before spending seconds on key generation.
			if _, err := st.Get(name); err == nil {
				return withHint(fmt.Errorf("guardian %q %w in %s", name, certstore.ErrExists, st.Location()), exitExists,
					"choose another name, or remove the guardian first ('guardctl guardian remove "+name+"')")
			}
			a.setChanged(true)
			if a.dryRun {
				// Key generation is no check: a dry run says what it
				// would make and spends no seconds on keys.
				a.note("would create guardian %q in %s", name, st.Location())
				return a.print(nameResult{Name: name, outcome: a.outcome})
			}
			o := guardian.GenerateOptions{Name: name, Host: host, KeySize: keySize, ValidYears: validYears}
			var tpmKeys []*tpmkey.Key
			if keys == "tpm" {
				dev, err := a.tpm()
				if err != nil {
					return err
				}
				var pin []byte
				if a.pinFile != "" {
					if pin, err = a.readPIN(); err != nil {
						return err
					}
				}
				o.NewKey = func(role string) (crypto.Signer, error) {
					co := tpmkey.CreateOptions{Decrypt: role == "encryption", PIN: pin, Label: fmt.Sprintf("guardian %q's %s key", name, role)}
					if role == "encryption" {
						co.PCRs = pcrs
					}
					k, err := dev.Create(co)
					if err == nil {
						tpmKeys = append(tpmKeys, k)
					}
					return k, err
				}
			}
			g, err := guardian.Generate(o)
			if err != nil {
				return err
			}
			if keys == "tpm" {
				id, err := a.tpmDev.Identity()
				if err != nil {
					return err
				}
				for _, k := range tpmKeys {
					k.Identity = id
				}
			}
			c, err := st.Add(g, certstore.OriginGenerated, false)
			if err != nil {
				return err
			}
			a.note("created guardian %q in %s", name, st.Location())
			a.notice(c)
			return a.showGuardian(c.Entry)
		},
	}
	f := cmd.Flags()
	f.IntVar(&keySize, "key-size", 2048, "RSA key size: 2048, 3072 or 4096")
	f.IntVar(&validYears, "valid-years", 10, "years the certificates are valid")
	f.StringVar(&host, "host", "", "host name in the certificate subjects (default: this host's name)")
	choiceVar(cmd, &keys, "keys", "file", "where the private keys live: file (in the store) or tpm (generated in this host's TPM, never exported)", "file", "tpm")
	f.StringVar(&pcrSpec, "pcrs", "", "with --keys tpm: bind the encryption key to the current values of these PCRs (BANK:N,N,..., such as sha256:0,2,4,7)")
	cmd.RegisterFlagCompletionFunc("key-size", cobra.FixedCompletions([]string{"2048", "3072", "4096"}, cobra.ShellCompDirectiveNoFileComp))
	a.addDryRun(cmd)
	return cmd
}
