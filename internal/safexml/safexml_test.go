package safexml

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	l := Limits{MaxBytes: 1000, MaxDepth: 3, MaxElements: 5}
	ok := `<?xml version="1.0"?><a><b>x</b><b/></a>`
	if err := Check([]byte(ok), l); err != nil {
		t.Errorf("%s: %v", ok, err)
	}
	for _, bad := range []string{
		"",
		"text only",
		`<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>`,
		`<?xml-stylesheet href="x"?><a/>`,
		`<a><b><c><d/></c></b></a>`,
		`<a><b/><b/><b/><b/><b/></a>`,
		`<a/><b/>`,
		`<a>`,
		`<a></b>`,
		`<a/>trailing`,
		"<a>" + strings.Repeat("x", 1000) + "</a>",
	} {
		if err := Check([]byte(bad), l); err == nil {
			t.Errorf("accepted %.60q", bad)
		}
	}
}
