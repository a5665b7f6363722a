package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exampleLines returns the logical lines of an example (continuations
// joined, comments dropped).
func exampleLines(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	cur := ""
	for _, l := range strings.Split(string(data), "\n") {
		if i := strings.Index(l, " #"); i >= 0 {
			l = l[:i]
		}
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") || strings.HasSuffix(l, "`") {
			cur += strings.TrimRight(l, "\\`") + " "
			continue
		}
		out = append(out, cur+l)
		cur = ""
	}
	return out
}

var shellValue = regexp.MustCompile(`"[^"]*"|'[^']*'|\$\([^)]*\)|\$\{[^}]*\}|\$[A-Za-z_][A-Za-z_0-9.()]*|\S+`)

// TestExamplesUseRealCommands parses every guardctl invocation in examples/
// with the real command tree: the subcommand exists and its flags parse.
func TestExamplesUseRealCommands(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*")
	if len(files) < 3 {
		t.Fatalf("examples/ holds %d files", len(files))
	}
	seen := 0
	for _, f := range files {
		for _, line := range exampleLines(t, f) {
			i := strings.Index(line, "guardctl ")
			j := strings.Index(line, "$GUARDCTL ")
			start := -1
			switch {
			case j >= 0:
				start = j + len("$GUARDCTL ")
			case i >= 0 && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
				start = i + len("guardctl ")
			}
			if start < 0 {
				continue
			}
			var args []string
			for _, tok := range shellValue.FindAllString(line[start:], -1) {
				if tok == "|" || tok == ";" || tok == "&&" {
					break
				}
				if strings.ContainsAny(tok[:1], `"'$`) {
					tok = "VALUE"
				}
				args = append(args, tok)
			}
			a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
			root := newRootCmd(a)
			cmd, rest, err := root.Find(args)
			if err != nil || cmd == root || cmd.HasSubCommands() {
				t.Errorf("%s: %q is not a guardctl command (%v)", filepath.Base(f), strings.Join(args, " "), err)
				continue
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Errorf("%s: %q: %v", filepath.Base(f), strings.Join(args, " "), err)
			}
			seen++
		}
	}
	if seen < 8 {
		t.Errorf("only %d guardctl invocations found in examples/", seen)
	}
}

// psParameters are the documented parameters of the cmdlets the Hyper-V
// example uses (Microsoft's PowerShell reference for the HgsClient, Hyper-V,
// PKI and Microsoft.PowerShell modules).
var psParameters = map[string][]string{
	"Get-HgsGuardian":       {"Name"},
	"New-HgsGuardian":       {"Name", "GenerateCertificates", "SigningCertificate", "SigningCertificatePassword", "EncryptionCertificate", "EncryptionCertificatePassword", "SigningCertificateThumbprint", "EncryptionCertificateThumbprint", "AllowExpired", "AllowUntrustedRoot"},
	"Export-PfxCertificate": {"Cert", "FilePath", "Password", "ProtectTo", "ChainOption", "NoProperties", "NoClobber", "Force", "CryptoAlgorithmOption"},
	"Get-ChildItem":         {"Path", "LiteralPath", "Filter", "Include", "Exclude", "Recurse", "Depth", "Force", "Name"},
	"Where-Object":          {},
	"Read-Host":             {"Prompt", "AsSecureString", "MaskInput"},
	"Get-VM":                {"Name", "Id", "ComputerName"},
	"Get-VMKeyProtector":    {"VMName", "VM", "ComputerName"},
	"Set-VMKeyProtector":    {"VMName", "VM", "KeyProtector", "NewLocalKeyProtector", "RestoreLastKnownGoodKeyProtector"},
	"Import-VM":             {"Path", "Copy", "GenerateNewId", "VirtualMachinePath", "SnapshotFilePath", "SmartPagingFilePath", "VhdDestinationPath", "Register"},
}

// TestHyperVExampleSyntax checks every cmdlet and parameter the Hyper-V
// example uses against the published syntax (PowerShell cannot run here).
func TestHyperVExampleSyntax(t *testing.T) {
	cmdlet := regexp.MustCompile(`\b([A-Z][a-z]+-[A-Z][A-Za-z]+)\b`)
	param := regexp.MustCompile(`\s-([A-Za-z]+)`)
	used := 0
	for _, line := range exampleLines(t, "../../examples/hyperv-host-reinstall.ps1") {
		for _, seg := range regexp.MustCompile(`[|{};]`).Split(line, -1) {
			m := cmdlet.FindStringSubmatchIndex(seg)
			if m == nil {
				continue
			}
			name := seg[m[2]:m[3]]
			if strings.HasPrefix(name, "Shielded") {
				continue
			}
			allowed, known := psParameters[name]
			if !known {
				t.Errorf("cmdlet %s is not in the table of checked cmdlets", name)
				continue
			}
			used++
			for _, p := range param.FindAllStringSubmatch(seg[m[3]:], -1) {
				if strings.EqualFold(p[1], "like") || strings.EqualFold(p[1], "gt") {
					continue // comparison operators
				}
				if !slices.Contains(allowed, p[1]) {
					t.Errorf("%s has no parameter -%s", name, p[1])
				}
			}
		}
	}
	// guardctl does the guardian work itself; the example still uses
	// Hyper-V's cmdlets for the VMs (Get-VM, Get-VMKeyProtector, Import-VM)
	// and Get-ChildItem.
	if used < 4 {
		t.Errorf("only %d cmdlet invocations found", used)
	}
}
