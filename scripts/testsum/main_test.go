package main

import (
	"strings"
	"testing"
)

// ev writes one test2json line.
func ev(action, pkg, test, output string) string {
	s := `{"Action":"` + action + `","Package":"` + pkg + `"`
	if test != "" {
		s += `,"Test":"` + test + `"`
	}
	if output != "" {
		s += `,"Output":` + quote(output)
	}
	return s + "}\n"
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`"`, `\"`, "\n", `\n`, "\t", `\t`).Replace(s) + `"`
}

// A stream of every kind of outcome is counted, and only what a reader needs is printed: the
// output of failed and skipped tests (not of passed ones), benchmarks as they come, each
// package's verdict, the output of a package that failed outside its tests, and the tests a
// crash or timeout left unfinished.
func TestReport(t *testing.T) {
	t.Parallel()
	in := ev("run", "a", "TestOK", "") +
		ev("output", "a", "TestOK", "=== RUN   TestOK\n") +
		ev("output", "a", "TestOK", "    a_test.go:1: quiet when passing\n") +
		ev("output", "a", "TestOK", "--- PASS: TestOK (0.00s)\n") +
		ev("pass", "a", "TestOK", "") +
		ev("run", "a", "TestBad", "") +
		ev("output", "a", "TestBad", "    a_test.go:2: the reason it failed\n") +
		ev("output", "a", "TestBad", "--- FAIL: TestBad (0.00s)\n") +
		ev("fail", "a", "TestBad", "") +
		ev("run", "a", "TestSkip", "") +
		ev("output", "a", "TestSkip", "    a_test.go:3: why skipped\n") +
		ev("skip", "a", "TestSkip", "") +
		ev("output", "a", "", "FAIL\n") +
		ev("output", "a", "", "FAIL\ta\t0.1s\n") +
		ev("fail", "a", "", "") +
		// benchmarks: a header, streamed results, no verdict of their own
		ev("output", "b", "", "goos: linux\n") +
		ev("run", "b", "BenchmarkX", "") +
		ev("output", "b", "BenchmarkX", "BenchmarkX-2   \t") +
		ev("output", "b", "BenchmarkX", "      50\t  12 ns/op\n") +
		ev("output", "b", "", "PASS\n") +
		ev("output", "b", "", "ok  \tb\t0.2s\n") +
		ev("pass", "b", "", "") +
		// a package that failed outside any test
		ev("output", "c", "", "panic in TestMain\n") +
		ev("output", "c", "", "FAIL\tc\t0.1s\n") +
		ev("fail", "c", "", "") +
		// a test that never ended: the package timed out
		ev("run", "d", "TestHang", "") +
		ev("output", "d", "TestHang", "panic: test timed out after 1s\n") +
		ev("output", "d", "", "FAIL\td\t1.0s\n") +
		ev("fail", "d", "", "") +
		"a line that is not JSON\n"
	var out strings.Builder
	r := newReport(&out)
	if err := r.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	r.finish()
	if r.passed != 2 || r.failed != 3 || r.skipped != 1 { // TestOK, BenchmarkX; TestBad, c, TestHang; TestSkip
		t.Errorf("passed %d, failed %d, skipped %d; want 2, 3, 1", r.passed, r.failed, r.skipped)
	}
	got := out.String()
	for _, want := range []string{
		"the reason it failed\n--- FAIL: TestBad", "why skipped", "FAIL\ta\t0.1s",
		"goos: linux\nBenchmarkX-2   \t      50\t  12 ns/op\nok  \tb\t0.2s",
		"--- FAIL: package c (outside any test)\npanic in TestMain\nFAIL\tc\t0.1s",
		"--- FAIL: TestHang (did not finish)\npanic: test timed out", "a line that is not JSON",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the report lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"quiet when passing", "=== RUN", "--- PASS"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("the report shows %q:\n%s", unwanted, got)
		}
	}
}

// Commands are separated by ";" arguments.
func TestSplit(t *testing.T) {
	t.Parallel()
	got := split([]string{"go", "test", ";", "go", "vet", ";"})
	if len(got) != 2 || strings.Join(got[0], " ") != "go test" || strings.Join(got[1], " ") != "go vet" {
		t.Fatalf("split: %q", got)
	}
}
