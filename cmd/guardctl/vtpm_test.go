package main

import "testing"

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{{"0.7.1", "0.8.0", true}, {"0.10.0", "0.9.2", false}, {"0.7.1", "0.7.1", false}, {"0.7", "0.7.1", true}, {"1.0", "0.10.2", false}} {
		if got := versionLess(c.a, c.b); got != c.less {
			t.Errorf("versionLess(%s, %s) = %v", c.a, c.b, got)
		}
	}
}
