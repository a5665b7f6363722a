//go:build windows

package atomicfile

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"

	"golang.org/x/sys/windows"
)

// TestRestrict: a private file written on Windows (an exported PFX, a
// backup, a store's key) lets in only its owner, Administrators and
// SYSTEM, whatever its directory would have given it; a public one keeps
// what it inherits.
func TestRestrict(t *testing.T) {
	// Not t.TempDir: under Wine, Go's RemoveAll fails ("Invalid
	// function"), and a failed cleanup fails the test.
	dir, err := os.MkdirTemp("", "restrict-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	private := filepath.Join(dir, "secret.pfx")
	if _, err := WriteFile(private, []byte("secret"), 0o600, Options{}); err != nil {
		t.Fatal(err)
	}
	user, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(private); err != nil || string(got) != "secret" {
		t.Fatalf("reading the private file back: %q %v", got, err)
	}
	if underWine() {
		t.Skip("Wine does not keep the DACL a file is created with; the Windows runner checks it")
	}
	protected, sids := daclOf(t, private)
	want := []string{user.User.Sid.String(), "S-1-5-32-544", "S-1-5-18"}
	slices.Sort(want)
	slices.Sort(sids)
	if !protected || !slices.Equal(sids, want) {
		t.Errorf("private file: protected %v, allowed %v; want protected, %v", protected, sids, want)
	}
	// A directory MkdirAll makes is private, and what is made in it
	// inherits that.
	store := filepath.Join(dir, "sub", "store")
	if err := MkdirAll(store); err != nil {
		t.Fatal(err)
	}
	if protected, sids := daclOf(t, store); !protected || !slices.Equal(sorted(sids), want) {
		t.Errorf("directory: protected %v, allowed %v; want protected, %v", protected, sids, want)
	}
	f, err := os.Create(filepath.Join(store, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, sids := daclOf(t, f.Name()); !slices.Equal(sorted(sids), want) {
		t.Errorf("a file in it allows %v; want %v", sids, want)
	}
	public := filepath.Join(dir, "host.guardian.xml")
	if _, err := WriteFile(public, []byte("<Guardian/>"), 0o644, Options{}); err != nil {
		t.Fatal(err)
	}
	if protected, _ := daclOf(t, public); protected {
		t.Error("a public file got a protected DACL")
	}
}

// daclOf reads path's DACL: whether it is protected from inheritance, and
// the SIDs its entries allow.
func daclOf(t *testing.T, path string) (protected bool, sids []string) {
	t.Helper()
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatal(err)
	}
	control, _, err := sd.Control()
	if err != nil {
		t.Fatal(err)
	}
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		t.Fatalf("no DACL: %v", err)
	}
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			t.Fatal(err)
		}
		if ace.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE {
			t.Fatalf("entry %d is of type %d", i, ace.Header.AceType)
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		sids = append(sids, sid.String())
	}
	return control&windows.SE_DACL_PROTECTED != 0, sids
}

// underWine reports whether this runs under Wine (whose ntdll has
// wine_get_version).
func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
