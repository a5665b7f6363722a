package keyprotector

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/fuzzseed"
)

func gen(t testing.TB, name string) *guardian.Guardian {
	t.Helper()
	g, err := guardian.Generate(guardian.GenerateOptions{Name: name, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// parseVerifyUnwrap is what every reader does.
func parseVerifyUnwrap(data []byte, ids ...*guardian.Guardian) ([]byte, error) {
	p, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if err := p.Verify(Policy{}); err != nil {
		return nil, err
	}
	k, _, err := p.Unwrap(ids)
	return k, err
}

func TestNewUnwrapGrantRevoke(t *testing.T) {
	owner, b, c := gen(t, "owner"), gen(t, "b"), gen(t, "c")
	key := NewTransportKey()
	_, xml, err := New(key, owner, []*guardian.Guardian{b.Public()})
	if err != nil {
		t.Fatal(err)
	}
	file := EncodeFile(xml)
	for _, data := range [][]byte{file, xml} {
		for _, id := range []*guardian.Guardian{owner, b} {
			got, err := parseVerifyUnwrap(data, id)
			if err != nil || !bytes.Equal(got, key) {
				t.Fatalf("unwrap with %s: %v", id.Name, err)
			}
		}
		if _, err := parseVerifyUnwrap(data, c); kindOf(err) != KindNoAccess {
			t.Errorf("stranger: %v", err)
		}
	}
	p, _ := Parse(file)
	if _, _, err := p.Grant([]*guardian.Guardian{b}, c.Public()); kindOf(err) != KindNotOwner {
		t.Errorf("grant by a non-owner: %v", err)
	}
	changed, granted, err := p.Grant([]*guardian.Guardian{owner}, c.Public())
	if err != nil || !changed {
		t.Fatal(err)
	}
	if got, err := parseVerifyUnwrap(granted, c); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("unwrap after grant: %v", err)
	}
	p, _ = Parse(granted)
	if changed, _, err := p.Grant([]*guardian.Guardian{owner}, c.Public()); err != nil || changed {
		t.Errorf("second grant: changed=%v %v", changed, err)
	}
	if _, _, err := p.Revoke([]*guardian.Guardian{owner}, owner); kindOf(err) != KindConflict {
		t.Errorf("revoke the owner: %v", err)
	}
	changed, revoked, err := p.Revoke([]*guardian.Guardian{owner}, b.Public())
	if err != nil || !changed {
		t.Fatal(err)
	}
	if _, err := parseVerifyUnwrap(revoked, b); kindOf(err) != KindNoAccess {
		t.Errorf("revoked guardian: %v", err)
	}
	if got, err := parseVerifyUnwrap(revoked, c); err != nil || !bytes.Equal(got, key) {
		t.Errorf("remaining guardian: %v", err)
	}
}

// TestTamper flips every byte of the XML, one at a time, and requires each
// change to be refused or to leave a key protector that means the same.
func TestTamper(t *testing.T) {
	owner, b := gen(t, "owner"), gen(t, "b")
	key := NewTransportKey()
	_, xml, err := New(key, owner, []*guardian.Guardian{b.Public()})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := Parse(xml)
	accepted := 0
	for i := range xml {
		mut := bytes.Clone(xml)
		mut[i] ^= 0x01
		got, err := parseVerifyUnwrap(mut, b)
		if err != nil {
			continue
		}
		accepted++
		p, _ := Parse(mut)
		if !bytes.Equal(got, key) || !bytes.Equal(p.canonicalWrappings, base.canonicalWrappings) {
			t.Fatalf("byte %d (%q→%q) changed what the key protector means and was accepted", i, xml[i], mut[i])
		}
	}
	t.Logf("%d of %d single-bit changes were accepted, all outside what the signatures cover (whitespace, prolog)", accepted, len(xml))
}

func TestStructureRefused(t *testing.T) {
	owner, b, c := gen(t, "owner"), gen(t, "b"), gen(t, "c")
	_, xml, _ := New(NewTransportKey(), owner, []*guardian.Guardian{b.Public()})
	_, other, _ := New(NewTransportKey(), owner, []*guardian.Guardian{c.Public()})
	s := string(xml)
	wrap := func(x string, n int) string {
		parts := strings.Split(x, "<Wrapping>")
		return "<Wrapping>" + strings.Split(parts[n], "</Wrapping>")[0] + "</Wrapping>"
	}
	w1, w2 := wrap(s, 1), wrap(s, 2)
	otherW2 := wrap(string(other), 2)
	cases := map[string]string{
		"reordered":        strings.Replace(strings.Replace(s, w1, "@@", 1), w2, w1, 1),
		"duplicated":       strings.Replace(s, w2, w2+w2, 1),
		"second Wrappings": strings.Replace(s, "</Wrappings>", "</Wrappings><Wrappings/>", 1),
		"swapped in":       strings.Replace(s, w2, otherW2, 1),
		"DTD":              strings.Replace(s, "<Protector", "<!DOCTYPE Protector [<!ENTITY x 'y'>]><Protector", 1),
		"wrong namespace":  strings.Replace(s, Namespace, "urn:other", 1),
		"unknown element":  strings.Replace(s, "</Wrappings>", "</Wrappings><Extra/>", 1),
		"owner removed":    strings.Replace(s, w1, "", 1),
		"truncated":        s[:len(s)/2],
		"empty":            "",
		"Hyper-V empty":    "\x00\x00\x00\x04",
		"wrong length":     string(EncodeFile(xml)[:len(xml)]),
	}
	cases["reordered"] = strings.Replace(cases["reordered"], "@@", w2, 1)
	for name, in := range cases {
		if _, err := parseVerifyUnwrap([]byte(in), b); err == nil {
			t.Errorf("%s: accepted", name)
		} else if kindOf(err) == 0 {
			t.Errorf("%s: error without a kind: %v", name, err)
		}
	}
}

func TestUnknownAlgorithmStillLists(t *testing.T) {
	owner := gen(t, "owner")
	_, xml, _ := New(NewTransportKey(), owner, nil)
	mut := bytes.ReplaceAll(xml, []byte(AlgRSAOAEP), []byte("http://schemas.microsoft.com/kps/2014/07#unpublished"))
	p, err := Parse(mut)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Wrappings) != 1 || !p.Owner().Matches(owner) {
		t.Error("the guardians are not listed")
	}
	if err := p.Verify(Policy{}); kindOf(err) != KindUnsupported || !strings.Contains(err.Error(), "unpublished") {
		t.Errorf("Verify: %v", err)
	}
}

// TestWriteFuzzSeeds writes FuzzParse's committed seeds when
// GUARDCTL_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if !fuzzseed.Requested() {
		return
	}
	owner, b := gen(t, "owner"), gen(t, "b")
	_, xml, err := New(NewTransportKey(), owner, []*guardian.Guardian{b.Public()})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range [][]byte{xml, EncodeFile(xml)} {
		if err := fuzzseed.Write("FuzzParse", d); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzParse feeds hostile bytes to the key protector reader. Its seeds are
// committed (testdata/fuzz/FuzzParse): real key protectors.
func FuzzParse(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if kindOf(err) == 0 {
				t.Fatalf("error without a kind: %v", err)
			}
			return
		}
		if p.Owner() == nil {
			t.Fatal("parsed without an owner")
		}
		p.Verify(Policy{AllowExpired: true})
	})
}

// TestRevokeByThumbprint revokes a guardian known only by its signing
// thumbprint, as kp show prints it, with no store entry for it.
func TestRevokeByThumbprint(t *testing.T) {
	owner, gone := gen(t, "owner"), gen(t, "gone")
	_, xml, err := New(NewTransportKey(), owner, []*guardian.Guardian{gone.Public()})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := Parse(xml)
	tp := guardian.Thumbprint(gone.Signing)
	if p.FindThumbprint(strings.Repeat("0", 40)) != nil {
		t.Error("an unknown thumbprint was found")
	}
	w := p.FindThumbprint(strings.ToLower(tp))
	if w == nil {
		t.Fatal("the thumbprint kp show prints was not found")
	}
	changed, out, err := p.Revoke([]*guardian.Guardian{owner}, w.Guardian(tp))
	if err != nil || !changed {
		t.Fatalf("revoke by thumbprint: changed=%v %v", changed, err)
	}
	if _, err := parseVerifyUnwrap(out, gone); kindOf(err) != KindNoAccess {
		t.Errorf("the revoked guardian still unwraps: %v", err)
	}
}
