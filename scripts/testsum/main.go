// Command testsum runs `go test -json` commands one after another and prints what a reader
// needs from them: each package's ok/FAIL line, the whole output of every failed test (and of a
// package that failed outside its tests: a build error, a panic, a timeout), the reason of every
// skipped test, and every benchmark's output as it comes. It ends with one line,
// "N passed, N failed, N skipped", counting tests, subtests and benchmarks, and exits 1 when
// anything failed (a test, a package, or a command's own exit status).
//
// Usage: go run ./scripts/testsum go test -json ... \; go test -json ...
//
// Each command's stderr goes to stderr; stdout lines that are not test2json events are printed
// as they are.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
)

func main() {
	cmds := split(os.Args[1:])
	if len(cmds) == 0 {
		fmt.Fprintln(os.Stderr, `usage: testsum go test -json ... [\; go test -json ...]`)
		os.Exit(2)
	}
	r := newReport(os.Stdout)
	for _, args := range cmds {
		before := r.failed
		if err := run(r, args); err != nil && r.failed == before {
			// It failed with no failed test or package to show for it (the go command could
			// not start, or found no packages).
			r.failed++
			fmt.Fprintf(r.w, "--- FAIL: %s: %v\n", strings.Join(args, " "), err)
		}
	}
	r.finish()
	fmt.Fprintf(os.Stdout, "%d passed, %d failed, %d skipped\n", r.passed, r.failed, r.skipped)
	if r.failed > 0 {
		os.Exit(1)
	}
}

// split cuts the arguments into commands at each ";" argument.
func split(args []string) [][]string {
	var cmds [][]string
	var cur []string
	for _, a := range args {
		if a == ";" {
			if len(cur) > 0 {
				cmds = append(cmds, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, a)
	}
	if len(cur) > 0 {
		cmds = append(cmds, cur)
	}
	return cmds
}

// run runs one command, feeding its stdout to r.
func run(r *report, args []string) error {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = os.Stdin
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("run %s: %w", args[0], err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", args[0], err)
	}
	readErr := r.read(out)
	if err := cmd.Wait(); err != nil {
		return err
	}
	return readErr
}

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output, build-fail
}

type pkgState struct {
	out     strings.Builder             // package-level output not printed yet
	verdict string                      // go test's ok/FAIL line, printed when the package ends
	tests   map[string]*strings.Builder // output of tests still running
	order   []string                    // tests in the order they started
	benches bool                        // a benchmark has started: output is streamed from now on
	failed  int                         // tests of this package that failed
}

type report struct {
	w                       io.Writer
	pkgs                    map[string]*pkgState
	passed, failed, skipped int
}

func newReport(w io.Writer) *report {
	return &report{w: w, pkgs: map[string]*pkgState{}}
}

func (r *report) pkg(name string) *pkgState {
	p, ok := r.pkgs[name]
	if !ok {
		p = &pkgState{tests: map[string]*strings.Builder{}}
		r.pkgs[name] = p
	}
	return p
}

// read consumes one command's stdout.
func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil || ev.Action == "" {
			fmt.Fprintf(r.w, "%s\n", line)
			continue
		}
		r.handle(ev)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read test output: %w", err)
	}
	return nil
}

func isBenchmark(test string) bool { return strings.HasPrefix(test, "Benchmark") }

// isFrame reports whether a line is one of the test framework's progress lines, which the
// reader of a failure does not need.
func isFrame(line string) bool {
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// isPackageLine reports whether a package-level line is go test's verdict on the package.
func isPackageLine(line string) bool {
	return strings.HasPrefix(line, "ok  \t") || strings.HasPrefix(line, "FAIL\t") || strings.HasPrefix(line, "?   \t")
}

func (r *report) handle(ev event) {
	switch ev.Action {
	case "build-output":
		fmt.Fprint(r.w, ev.Output)
		return
	case "build-fail":
		return // the package's own fail event follows
	}
	p := r.pkg(ev.Package)
	if ev.Test == "" {
		switch ev.Action {
		case "output":
			switch {
			case isPackageLine(ev.Output):
				p.verdict += ev.Output
			case p.benches:
				if ev.Output != "PASS\n" {
					fmt.Fprint(r.w, ev.Output)
				}
			default:
				p.out.WriteString(ev.Output)
			}
		case "fail":
			r.packageFailed(ev.Package, p)
		case "pass", "skip":
			r.packageDone(p, true)
		}
		if ev.Action != "output" {
			fmt.Fprint(r.w, p.verdict)
			p.verdict = ""
		}
		return
	}
	switch ev.Action {
	case "run":
		if _, ok := p.tests[ev.Test]; !ok {
			p.tests[ev.Test] = &strings.Builder{}
			p.order = append(p.order, ev.Test)
		}
		if isBenchmark(ev.Test) && !p.benches {
			p.benches = true
			fmt.Fprint(r.w, p.out.String()) // goos, goarch, pkg, cpu
			p.out.Reset()
		}
	case "output":
		if isBenchmark(ev.Test) {
			if !isFrame(ev.Output) {
				fmt.Fprint(r.w, ev.Output)
			}
			return
		}
		b, ok := p.tests[ev.Test]
		if !ok {
			b = &strings.Builder{}
			p.tests[ev.Test] = b
			p.order = append(p.order, ev.Test)
		}
		if !isFrame(ev.Output) {
			b.WriteString(ev.Output)
		}
	case "pass":
		r.passed++
		delete(p.tests, ev.Test)
	case "skip":
		r.skipped++
		if b, ok := p.tests[ev.Test]; ok && !isBenchmark(ev.Test) {
			fmt.Fprint(r.w, b.String())
		}
		delete(p.tests, ev.Test)
	case "fail":
		r.failed++
		p.failed++
		if b, ok := p.tests[ev.Test]; ok && !isBenchmark(ev.Test) {
			fmt.Fprint(r.w, b.String())
		}
		delete(p.tests, ev.Test)
	}
}

// packageFailed prints what a failed package left unsaid: the output of tests that never
// ended (a timeout, a panic), counted as failed, and the package's own output.
func (r *report) packageFailed(name string, p *pkgState) {
	unfinished := r.packageDone(p, false)
	if p.failed == 0 && unfinished == 0 {
		r.failed++ // it failed outside any test: a build error, TestMain, a race after the tests
		fmt.Fprintf(r.w, "--- FAIL: package %s (outside any test)\n", name)
	}
	for _, line := range strings.SplitAfter(p.out.String(), "\n") {
		if line != "PASS\n" && line != "FAIL\n" && !strings.HasPrefix(line, "exit status ") {
			fmt.Fprint(r.w, line)
		}
	}
	p.out.Reset()
}

// packageDone settles the tests of a package that has ended: when it passed, its benchmarks
// (which have no verdict of their own) passed; when it failed, every test still running failed.
func (r *report) packageDone(p *pkgState, passed bool) (unfinished int) {
	for _, test := range p.order {
		b, ok := p.tests[test]
		if !ok {
			continue
		}
		switch {
		case passed:
			r.passed++
		default:
			unfinished++
			r.failed++
			fmt.Fprintf(r.w, "--- FAIL: %s (did not finish)\n%s", test, b.String())
		}
		delete(p.tests, test)
	}
	p.order = nil
	if passed {
		p.out.Reset()
	}
	return unfinished
}

// finish settles packages whose stream ended without a verdict (the command was killed).
func (r *report) finish() {
	names := make([]string, 0, len(r.pkgs))
	for name := range r.pkgs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if p := r.pkgs[name]; len(p.order) > 0 {
			r.packageFailed(name, p)
			fmt.Fprintf(r.w, "FAIL\t%s [no verdict]\n", name)
		}
	}
}
