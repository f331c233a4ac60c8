package main

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// minToolchain is the oldest Go release whose standard library has none of the reachable
// vulnerabilities known to affect keyturn (go1.26.8 has ten, among them GO-2026-6617 and
// GO-2026-6603).
var minToolchain = [3]int{1, 27, 3}

// goVersion parses a runtime.Version such as "go1.27.3", "go1.28" or "go1.28rc1" (a release
// candidate counts as its release's .0); ok is false for a development build.
func goVersion(v string) (ver [3]int, ok bool) {
	rest, found := strings.CutPrefix(v, "go")
	if !found {
		return ver, false
	}
	if i := strings.IndexAny(rest, " -+"); i >= 0 {
		rest = rest[:i]
	}
	for _, pre := range []string{"rc", "beta"} {
		if i := strings.Index(rest, pre); i >= 0 {
			rest = rest[:i]
		}
	}
	parts := strings.Split(rest, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return ver, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return ver, false
		}
		ver[i] = n
	}
	return ver, true
}

func atLeast(v, min [3]int) bool {
	for i := range v {
		if v[i] != min[i] {
			return v[i] > min[i]
		}
	}
	return true
}

// TestBuiltWithPatchedToolchain fails when the binary is built by a Go older than go1.27.3,
// whose standard library has known reachable vulnerabilities.
func TestBuiltWithPatchedToolchain(t *testing.T) {
	t.Parallel()
	v, ok := goVersion(runtime.Version())
	if !ok {
		t.Fatalf("cannot read the Go version %q", runtime.Version())
	}
	if !atLeast(v, minToolchain) {
		t.Fatalf("built with %s: build with GOTOOLCHAIN=go1.27.3 or later", runtime.Version())
	}
}

func TestGoVersionParsing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want [3]int
		ok   bool
		new  bool
	}{
		{"go1.27.3", [3]int{1, 27, 3}, true, true},
		{"go1.27.10", [3]int{1, 27, 10}, true, true},
		{"go1.28", [3]int{1, 28, 0}, true, true},
		{"go1.28rc1", [3]int{1, 28, 0}, true, true},
		{"go1.26.8", [3]int{1, 26, 8}, true, false},
		{"go1.27.2", [3]int{1, 27, 2}, true, false},
		{"go1.27rc2", [3]int{1, 27, 0}, true, false},
		{"go2.0.0", [3]int{2, 0, 0}, true, true},
		{"devel go1.28-abcdef", [3]int{}, false, false},
	} {
		got, ok := goVersion(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("goVersion(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && atLeast(got, minToolchain) != tc.new {
			t.Errorf("atLeast(%q) = %v", tc.in, !tc.new)
		}
	}
}
