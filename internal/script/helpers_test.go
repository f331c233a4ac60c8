package script

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/testenv/procs"
	"github.com/keyturn/keyturn/internal/vault"
)

// fld builds a field whose values are JSON texts.
func fld(typ, label string, values ...string) vault.Field {
	f := vault.Field{Type: typ, Label: label, Value: []json.RawMessage{}}
	for _, v := range values {
		f.Value = append(f.Value, json.RawMessage(v))
	}
	return f
}

// q quotes s as a JSON string.
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// newTestRunner returns a Runner whose private directories are under a test directory.
func newTestRunner(t testing.TB, o Options) *Runner {
	t.Helper()
	if o.TempDir == "" {
		o.TempDir = t.TempDir()
	}
	return NewRunner(o)
}

// run runs content with p's line and SecretsOf(p), failing the test on a setup error.
func run(t *testing.T, r *Runner, s Script, p Params) (Result, error) {
	t.Helper()
	line, err := p.Line()
	if err != nil {
		t.Fatal(err)
	}
	return r.Run(context.Background(), s, line, NewRedactor(SecretsOf(p)...))
}

// faultCode returns the code of err's *fault.Error, or "".
func faultCode(err error) string {
	if fe, ok := fault.As(err); ok {
		return fe.Code
	}
	return ""
}

// decodeLine decodes a stdin line into the params JSON and the records JSON.
func decodeLine(t *testing.T, line string) (params, records []byte) {
	t.Helper()
	params, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		t.Fatalf("line is not std base64: %v", err)
	}
	var obj struct {
		Records string `json:"records"`
	}
	if err := json.Unmarshal(params, &obj); err != nil {
		t.Fatalf("params are not JSON: %v\n%s", err, params)
	}
	records, err = base64.StdEncoding.DecodeString(obj.Records)
	if err != nil {
		t.Fatalf("records are not std base64: %v", err)
	}
	return params, records
}

// waitFile waits until path exists and has content, and returns it.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", path)
	return ""
}

// dead reports whether pid has gone, or is a zombie: either way it runs no more.
func dead(pid int) bool { return !procs.Alive(pid) }

// eventuallyDead waits a little for pid to die.
func eventuallyDead(pid int) bool {
	for range 200 {
		if dead(pid) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// need skips the test when a tool is missing.
func need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
}

// modes runs f with a runner of each isolation mode: the sandbox (root only, as in CI) and
// the unsandboxed process group.
func modes(t *testing.T, f func(t *testing.T, o Options)) {
	t.Helper()
	sb, err := NewSandbox(Sandboxed, "")
	if err != nil {
		t.Fatalf("the tests run as root, as CI does: %v", err)
	}
	unsb, _ := NewSandbox(Unsandboxed, "")
	t.Run(Sandboxed, func(t *testing.T) { f(t, Options{Sandbox: &sb}) })
	t.Run(Unsandboxed, func(t *testing.T) { f(t, Options{Sandbox: &unsb}) })
}

// sharedDir returns a directory that a sandboxed script can write and the test can read.
func sharedDir(t testing.TB) string { return procs.SharedDir(t) }

// withMarker returns a unique argument that tags a test's processes in their command lines.
func withMarker(testing.TB) string { return procs.Marker() }

// waitPids waits until n processes hold marker, and returns them; it may run in a goroutine
// of its own, so it reports a failure with Errorf and returns n zero pids (which are not
// alive, so every check on them fails too).
func waitPids(t *testing.T, marker string, n int) []int {
	t.Helper()
	if pids := procs.Wait(marker, n, 10*time.Second); len(pids) >= n {
		return pids
	}
	t.Errorf("no %d processes with %s", n, marker)
	return make([]int, n)
}

// parentOf returns pid's parent (host pids).
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
