// fakepowershell stands in for powershell.exe in TestHgsRegistryProtocol
// (run under Wine, which has no HgsClient): it checks how guardctl calls
// PowerShell (flags, the script on standard input, inputs in environment
// variables) and answers as guardctl's scripts do, with HgsClient's
// documented behaviour: NewByCertificateThumbprints needs both certificates
// in the store and a free name; Remove needs a registered name and leaves
// the certificates. Its machine is a JSON file (FAKE_HGS_STATE).
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

type guardian struct {
	Name                 string
	Signing              string
	Encryption           string
	HasPrivateSigningKey bool
}

type state struct {
	Absent    bool              // no HgsClient
	Certs     map[string]string // thumbprint → base64 DER, in Shielded VM Local Certificates
	Guardians []guardian
}

func answer(mark, text string) {
	fmt.Println(mark + base64.StdEncoding.EncodeToString([]byte(text)))
}

func fail(msg string) {
	answer("GUARDCTL-HGS-ERROR:", msg)
	os.Exit(1)
}

func main() {
	want := []string{"-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command", "-"}
	if strings.Join(os.Args[1:], " ") != strings.Join(want, " ") {
		fmt.Fprintf(os.Stderr, "fakepowershell: unexpected arguments %q\n", os.Args[1:])
		os.Exit(2)
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	script := string(in)
	if !strings.HasPrefix(script, "& { ") || !strings.HasSuffix(script, " }\r\n\r\n") || strings.Count(script, "\n") != 2 {
		fmt.Fprintf(os.Stderr, "fakepowershell: the script is not one script block on one line: %q\n", script)
		os.Exit(2)
	}
	path := os.Getenv("FAKE_HGS_STATE")
	raw, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var st state
	if err := json.Unmarshal(raw, &st); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if st.Absent {
		fmt.Println("GUARDCTL-HGS-ABSENT")
		return
	}
	name := os.Getenv("GUARDCTL_HGS_NAME")
	switch {
	case strings.Contains(script, "-MethodName NewByCertificateThumbprints"):
		for _, g := range st.Guardians {
			if g.Name == name {
				fail("A guardian with the name '" + name + "' already exists.")
			}
		}
		sig, enc := st.Certs[os.Getenv("GUARDCTL_HGS_SIGNING")], st.Certs[os.Getenv("GUARDCTL_HGS_ENCRYPTION")]
		if sig == "" || enc == "" {
			fail("The certificate was not found in the Shielded VM Local Certificates store.")
		}
		st.Guardians = append(st.Guardians, guardian{Name: name, Signing: sig, Encryption: enc, HasPrivateSigningKey: true})
	case strings.Contains(script, "-MethodName Remove"):
		found := false
		for i, g := range st.Guardians {
			if g.Name == name {
				st.Guardians = append(st.Guardians[:i], st.Guardians[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			fail("No guardian named '" + name + "' was found.")
		}
	case strings.Contains(script, "Get-CimInstance"):
		if st.Guardians == nil {
			st.Guardians = []guardian{}
		}
		out, _ := json.Marshal(st.Guardians)
		answer("GUARDCTL-HGS-ANSWER:", string(out))
		return
	default:
		fmt.Fprintf(os.Stderr, "fakepowershell: unknown script %q\n", script)
		os.Exit(2)
	}
	out, _ := json.Marshal(st)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	answer("GUARDCTL-HGS-ANSWER:", "{}")
}
