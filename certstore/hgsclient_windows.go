//go:build windows

package certstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// GuardianRegistry over HgsClient's documented WMI class MSFT_HgsGuardian
// (namespace root\Microsoft\Windows\Hgs), reached through Windows
// PowerShell's CIM cmdlets: Get-CimInstance lists the guardians,
// NewByCertificateThumbprints registers a pair already in the store and
// Remove unregisters a name. The script goes to powershell.exe on standard
// input and its inputs in environment variables, so nothing is quoted into
// a command line; no secret is ever involved. Its answer is one marked
// line of base64 (of UTF-8 JSON), whatever the console's code page.

// hgsTimeout bounds one PowerShell run (it starts in a few seconds).
const hgsTimeout = 2 * time.Minute

const (
	hgsMarkAnswer = "GUARDCTL-HGS-ANSWER:"
	hgsMarkAbsent = "GUARDCTL-HGS-ABSENT"
	hgsMarkError  = "GUARDCTL-HGS-ERROR:"
)

// hgsPrologue stops the script, with the absent mark, where
// MSFT_HgsGuardian does not exist (no HgsClient: no Hyper-V, or Wine), and
// turns any later error into the error mark. Each line is one statement:
// runHgs joins them into one script block, since PowerShell runs what it
// reads from standard input line by line, each on its own (a trap would
// cover only its own line).
const hgsPrologue = `$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
function Out-Guardctl($mark, $text) { [Console]::Out.WriteLine($mark + [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes([string]$text))) }
$ns = 'root/Microsoft/Windows/Hgs'; $class = 'MSFT_HgsGuardian'
function B64($der) { if ($der) { [Convert]::ToBase64String([byte[]]$der) } else { '' } }
try { $null = Get-CimClass -Namespace $ns -ClassName $class } catch { if ("$($_.Exception.NativeErrorCode)" -match '^(InvalidNamespace|InvalidClass|NotFound)$') { [Console]::Out.WriteLine('` + hgsMarkAbsent + `'); exit 0 }; Out-Guardctl '` + hgsMarkError + `' $_.Exception.Message; exit 1 }
trap { Out-Guardctl '` + hgsMarkError + `' $_.Exception.Message; exit 1 }
`

const hgsListScript = hgsPrologue + `$list = @(Get-CimInstance -Namespace $ns -ClassName $class | ForEach-Object { [pscustomobject]@{ Name = [string]$_.Name; Signing = B64 $_.SigningCertificate; Encryption = B64 $_.EncryptionCertificate; HasPrivateSigningKey = [bool]$_.HasPrivateSigningKey } })
Out-Guardctl '` + hgsMarkAnswer + `' (ConvertTo-Json -InputObject $list -Compress -Depth 3)
`

const hgsRegisterScript = hgsPrologue + `$r = Invoke-CimMethod -Namespace $ns -ClassName $class -MethodName NewByCertificateThumbprints -Arguments @{ Name = $env:GUARDCTL_HGS_NAME; SigningCertificateThumbprint = $env:GUARDCTL_HGS_SIGNING; EncryptionCertificateThumbprint = $env:GUARDCTL_HGS_ENCRYPTION; AllowExpired = $true; AllowUntrustedRoot = $true }
if ($r.ReturnValue -ne 0) { Out-Guardctl '` + hgsMarkError + `' ('NewByCertificateThumbprints returned ' + $r.ReturnValue); exit 1 }
Out-Guardctl '` + hgsMarkAnswer + `' '{}'
`

const hgsUnregisterScript = hgsPrologue + `$r = Invoke-CimMethod -Namespace $ns -ClassName $class -MethodName Remove -Arguments @{ Name = $env:GUARDCTL_HGS_NAME }
if ($r.ReturnValue -ne 0) { Out-Guardctl '` + hgsMarkError + `' ('Remove returned ' + $r.ReturnValue); exit 1 }
Out-Guardctl '` + hgsMarkAnswer + `' '{}'
`

type hgsRegistry struct{}

func newHgsRegistry() GuardianRegistry { return hgsRegistry{} }

// powershellPath is where runHgs finds PowerShell (tests point it at a
// fake).
var powershellPath = powershell

// powershell is Windows PowerShell's full path, so that nothing on PATH
// stands in for it.
func powershell() string {
	root := os.Getenv("SystemRoot")
	if root == "" {
		root = `C:\Windows`
	}
	return filepath.Join(root, "System32", "WindowsPowerShell", "v1.0", "powershell.exe")
}

// runHgs runs script with env added and returns its answer.
func runHgs(script string, env ...string) ([]byte, error) {
	exe := powershellPath()
	if _, err := os.Stat(exe); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (there is no Windows PowerShell at %s)", ErrNoHgsClient, exe)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hgsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command", "-")
	cmd.Env = append(os.Environ(), env...)
	lines := strings.Split(strings.TrimSpace(script), "\n")
	cmd.Stdin = strings.NewReader("& { " + strings.Join(lines, "; ") + " }\r\n\r\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("HgsClient: PowerShell did not answer within %v", hgsTimeout)
	}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == hgsMarkAbsent:
			return nil, fmt.Errorf("%w (no MSFT_HgsGuardian in root\\Microsoft\\Windows\\Hgs)", ErrNoHgsClient)
		case strings.HasPrefix(line, hgsMarkAnswer):
			return base64.StdEncoding.DecodeString(strings.TrimPrefix(line, hgsMarkAnswer))
		case strings.HasPrefix(line, hgsMarkError):
			msg, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, hgsMarkError))
			if err != nil {
				return nil, fmt.Errorf("HgsClient: an unreadable error from PowerShell: %q", line)
			}
			return nil, fmt.Errorf("HgsClient: %s", strings.TrimSpace(string(msg)))
		}
	}
	if runErr != nil {
		return nil, fmt.Errorf("HgsClient: PowerShell failed: %v: %s", runErr, firstLine(stderr.String()))
	}
	// A PowerShell that runs no script (Wine's is a stub) has no HgsClient
	// either.
	return nil, fmt.Errorf("%w (PowerShell gave no answer)", ErrNoHgsClient)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

type hgsGuardian struct {
	Name                 string
	Signing              string
	Encryption           string
	HasPrivateSigningKey bool
}

func derThumbprint(b64 string) (string, error) {
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", err
	}
	if len(der) == 0 {
		return "", nil
	}
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:])), nil
}

func (hgsRegistry) List() ([]Registration, error) {
	answer, err := runHgs(hgsListScript)
	if err != nil {
		return nil, err
	}
	var gs []hgsGuardian
	if err := json.Unmarshal(answer, &gs); err != nil {
		return nil, fmt.Errorf("HgsClient: reading the guardians PowerShell listed: %w", err)
	}
	out := make([]Registration, 0, len(gs))
	for _, g := range gs {
		sig, err := derThumbprint(g.Signing)
		if err != nil {
			return nil, fmt.Errorf("HgsClient: guardian %q: signing certificate: %w", g.Name, err)
		}
		enc, err := derThumbprint(g.Encryption)
		if err != nil {
			return nil, fmt.Errorf("HgsClient: guardian %q: encryption certificate: %w", g.Name, err)
		}
		out = append(out, Registration{Name: g.Name, SigningThumbprint: sig, EncryptionThumbprint: enc, HasPrivateSigningKey: g.HasPrivateSigningKey})
	}
	return out, nil
}

// Register registers name with AllowExpired and AllowUntrustedRoot:
// guardians are self-signed, and whether an expired one may be used is
// decided above this interface.
func (hgsRegistry) Register(name, signingThumbprint, encryptionThumbprint string) error {
	_, err := runHgs(hgsRegisterScript, "GUARDCTL_HGS_NAME="+name, "GUARDCTL_HGS_SIGNING="+signingThumbprint, "GUARDCTL_HGS_ENCRYPTION="+encryptionThumbprint)
	if err != nil && !errors.Is(err, ErrNoHgsClient) {
		return fmt.Errorf("registering guardian %q: %w", name, err)
	}
	return err
}

func (hgsRegistry) Unregister(name string) error {
	_, err := runHgs(hgsUnregisterScript, "GUARDCTL_HGS_NAME="+name)
	if err != nil && !errors.Is(err, ErrNoHgsClient) {
		return fmt.Errorf("unregistering guardian %q: %w", name, err)
	}
	return err
}
