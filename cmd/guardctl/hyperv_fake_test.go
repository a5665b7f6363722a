package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/hypervfake"
	"github.com/rogpeppe/go-internal/testscript"
)

// fakeWindowsEnv names the file that holds a fake Windows machine (its
// system stores, machine keys and HgsClient registrations). In the test
// binary, and only there, --store hyperv is Hyper-V's store over that fake,
// on any OS, so that the command tests drive the real commands over it.
const fakeWindowsEnv = "GUARDCTL_TEST_FAKE_WINDOWS"

func init() {
	openStore = func(spec string, opts ...certstore.Option) (certstore.Store, error) {
		path := os.Getenv(fakeWindowsEnv)
		if spec != certstore.HyperVSpec || path == "" {
			return certstore.Open(spec, opts...)
		}
		w, err := hypervfake.Open(path)
		if err != nil {
			return nil, err
		}
		return certstore.NewHyperV(w.Stores(), w.Registry(), filepath.Join(filepath.Dir(path), "guardctl-hyperv")), nil
	}
}

// fakewin changes or reads the fake Windows machine the way Windows' own
// tools would:
//
//	fakewin new-hgsguardian NAME HOST    New-HgsGuardian -GenerateCertificates
//	fakewin remove-hgsguardian NAME      Remove-HgsGuardian (the certificates stay)
//	fakewin delete STORE THUMBPRINT      delete a certificate in certlm.msc (its key stays)
//	fakewin dropkey THUMBPRINT           delete the key behind a certificate
//	fakewin noexport THUMBPRINT          make a key non-exportable
//	fakewin hgsclient on|off             install or remove HgsClient
//	fakewin certs STORE                  print the thumbprints in a store
//	fakewin guardians                    print the registrations (Get-HgsGuardian)
func cmdFakewin(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: fakewin VERB ...")
	}
	w, err := hypervfake.Open(ts.Getenv(fakeWindowsEnv))
	ts.Check(err)
	want := func(n int) {
		if len(args) != n+1 {
			ts.Fatalf("fakewin %s: want %d arguments", args[0], n)
		}
	}
	err = nil
	switch args[0] {
	case "new-hgsguardian":
		want(2)
		var g *guardian.Guardian
		g, err = guardian.Generate(guardian.GenerateOptions{Name: args[1], Host: args[2]})
		if err == nil {
			err = w.Install(args[1], g)
		}
	case "remove-hgsguardian":
		want(1)
		err = w.Registry().Unregister(args[1])
	case "delete":
		want(2)
		err = w.Stores().Delete(args[1], args[2], false)
	case "dropkey":
		want(1)
		err = w.DropKey(certstore.ShieldedVMStore, args[1])
	case "noexport":
		want(1)
		err = w.SetExportable(certstore.ShieldedVMStore, args[1], false)
	case "hgsclient":
		want(1)
		err = w.SetNoHgsClient(args[1] == "off")
	case "certs":
		want(1)
		out := ts.Stdout() // even when there is nothing to print
		for _, tp := range w.Certificates(args[1]) {
			fmt.Fprintln(out, tp)
		}
	case "guardians":
		want(0)
		out := ts.Stdout()
		for _, r := range w.Registrations() {
			fmt.Fprintln(out, strings.Join([]string{r.Name, r.SigningThumbprint, r.EncryptionThumbprint}, " "))
		}
	default:
		ts.Fatalf("fakewin: unknown verb %q", args[0])
	}
	if (err != nil) != neg {
		ts.Fatalf("fakewin %s: %v", args[0], err)
	}
}
