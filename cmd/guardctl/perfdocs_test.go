package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestBatchRatioUsesTheBoundOfTheWorkDone (issue 20, item 11): a batch grant
// makes two private-key operations per key protector, so the figures
// docs/performance.md and the README give, and the bound bench/compare.sh
// (make bench) prints, are against two operations, not three; and each
// ratio written down is the rate over the bound written beside it.
func TestBatchRatioUsesTheBoundOfTheWorkDone(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	num := func(s string) float64 {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	perf := read("../../docs/performance.md")
	m := regexp.MustCompile(`\| Go RSA-2048 bound[^|]*: (\d+) cores / \((\d) x ([0-9.]+) ms[^|]*\| (\d+) \|`).FindStringSubmatch(perf)
	if m == nil {
		t.Fatal("docs/performance.md has no Go bound row")
	}
	cores, ops, sign, bound := num(m[1]), num(m[2]), num(m[3]), num(m[4])
	if ops != 2 {
		t.Errorf("docs/performance.md's Go bound counts %v private-key operations per key protector; a batch does 2", ops)
	}
	if want := cores * 1000 / (ops * sign); bound < want-1 || bound > want+1 {
		t.Errorf("docs/performance.md's Go bound is %v; %v cores / (%v x %v ms) is %.0f", bound, cores, ops, sign, want)
	}
	rate := num(regexp.MustCompile(`\| guardctl kp grant FILE\.\.\. --yes \(a backup of each file kept\), median of 3 \| (\d+) \|`).FindStringSubmatch(perf)[1])
	ratio := num(regexp.MustCompile(`\| kp grant --yes / Go bound[^|]*\| ([0-9.]+) \|`).FindStringSubmatch(perf)[1])
	if r := rate / bound; ratio < r-0.01 || ratio > r+0.01 {
		t.Errorf("docs/performance.md gives kp grant --yes / Go bound as %v; %v / %v is %.3f", ratio, rate, bound, r)
	}
	readme := strings.Join(strings.Fields(read("../../README.md")), " ")
	rm := regexp.MustCompile(`([0-9.]+) of the bound of Go's RSA-2048 for the two private-key operations a batch does`).FindStringSubmatch(readme)
	if rm == nil {
		t.Fatal("the README does not give the batch's ratio against the two-operation bound")
	}
	if r := num(rm[1]); r < ratio-0.01 || r > ratio+0.01 {
		t.Errorf("the README gives %v, docs/performance.md %v", r, ratio)
	}
	script := read("../../bench/compare.sh")
	if !strings.Contains(script, "bound=c*1000/(2*t)") || strings.Contains(script, "(3*t)") || !strings.Contains(script, "s / 2 }") {
		t.Error("bench/compare.sh does not print the bound of two private-key operations per key protector")
	}
}
