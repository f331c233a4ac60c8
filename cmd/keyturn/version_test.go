package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: `keyturn version`, `-o json` and `--version` say the module version and the Go
// version that built the binary (commit and build date when the build recorded them).
func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, errOut := keyturn(t, "version", "-o", "json")
	if code != 0 {
		t.Fatalf("version -o json: exit %d: %s", code, errOut)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if v.GoVersion != runtime.Version() || v.Version == "" {
		t.Errorf("version: %+v", v)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, _ := keyturn(t, args...)
		if code != 0 || !strings.HasPrefix(out, "keyturn "+v.Version+" ("+runtime.Version()) {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
	if code, _, _ := keyturn(t, "version", "-o", "xml"); code != 2 {
		t.Errorf("version -o xml: exit %d, want 2", code)
	}
}
