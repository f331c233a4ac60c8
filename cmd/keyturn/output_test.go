package main

import (
	"bytes"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// noOutput are the commands without -o: they serve until stopped, and print logs, not a result.
var noOutput = []string{"keyturn server", "keyturn emulator okta"}

// TestEveryCommandTakesOutput: as the README says, every command that prints a result takes
// -o json, and -o yaml, and refuses another format with exit code 2.
func TestEveryCommandTakesOutput(t *testing.T) {
	var walk func(cmd *cobra.Command)
	n := 0
	walk = func(cmd *cobra.Command) {
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
		path := cmd.CommandPath()
		// A group of commands that only prints its help takes no flag of its own; a command
		// that also does something itself (audit, beside audit verify) is checked.
		if cmd.HasSubCommands() && !cmd.HasLocalFlags() {
			return
		}
		if !cmd.Runnable() || cmd.Hidden || slices.Contains(noOutput, path) ||
			strings.HasPrefix(path, "keyturn completion") || strings.HasPrefix(path, "keyturn help") {
			return
		}
		n++
		f := cmd.Flags().Lookup("output")
		if f == nil || f.Shorthand != "o" {
			t.Errorf("%s has no -o", path)
			return
		}
		// as many arguments as the command takes, so that -o is what is wrong
		args := strings.Fields(path)[1:]
		for _, extra := range [][]string{nil, {"x"}, {"x", "y"}} {
			if cmd.ValidateArgs(extra) == nil {
				args = append(args, extra...)
				break
			}
		}
		args = append(args, "-o", "xml")
		if code, _, errOut := keyturn(t, args...); code != 2 || !strings.Contains(errOut, "use table, json or yaml") {
			t.Errorf("%s -o xml: exit %d, %q", path, code, errOut)
		}
	}
	walk(newRoot(io.Discard, io.Discard))
	if n < 25 {
		t.Fatalf("only %d commands checked", n)
	}
}

// TestInitTeamSandboxVersionYAML: init, team add, sandbox and version print as YAML the
// document they print as JSON; init and team add still print JSON by default.
func TestInitTeamSandboxVersionYAML(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	code, out, errOut := keyturn(t, "init", "--data", dir, "--team", "acme", "-o", "yaml")
	if code != 0 {
		t.Fatalf("init -o yaml: exit %d: %s", code, errOut)
	}
	var creds map[string]string
	if err := yaml.Unmarshal([]byte(out), &creds); err != nil || creds["team_name"] != "acme" || creds["key_id"] == "" || creds["key_secret"] == "" {
		t.Fatalf("init -o yaml: %v %+v\n%s", err, creds, out)
	}
	if !strings.HasPrefix(out, "team_name: acme\nservice_user: admin\nkey_id: ") {
		t.Errorf("init -o yaml:\n%s", out)
	}
	for _, c := range []struct {
		format, prefix string
	}{{"", "{\n  \"team_name\": \"beta\""}, {"json", "{\n  \"team_name\": \"beta\""}, {"yaml", "team_name: beta\n"}, {"table", "team_name: beta\n"}} {
		team := "beta"
		args := []string{"team", "add", "--data", dir, "--team", team}
		if c.format != "" {
			team = "beta-" + c.format
			args = []string{"team", "add", "--data", dir, "--team", team, "-o", c.format}
		}
		code, out, errOut := keyturn(t, args...)
		want := strings.ReplaceAll(c.prefix, "beta", team)
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Errorf("team add -o %q: exit %d %s\n%s", c.format, code, errOut, out)
		}
	}

	var js, ys bytes.Buffer
	for _, c := range []struct {
		args []string
		w    *bytes.Buffer
	}{{[]string{"sandbox", "--once", "-o", "json"}, &js}, {[]string{"sandbox", "--once", "-o", "yaml"}, &ys}} {
		code, out, errOut := keyturn(t, c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", c.args, code, out, errOut)
		}
		c.w.WriteString(out)
	}
	var fromJSON, fromYAML struct {
		Scenarios []map[string]any `json:"scenarios" yaml:"scenarios"`
	}
	if err := yaml.Unmarshal(js.Bytes(), &fromJSON); err != nil { // JSON is YAML
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(ys.Bytes(), &fromYAML); err != nil || strings.HasPrefix(ys.String(), "{") {
		t.Fatalf("sandbox -o yaml: %v\n%s", err, ys.String())
	}
	if len(fromYAML.Scenarios) != len(fromJSON.Scenarios) || len(fromYAML.Scenarios) < 5 {
		t.Fatalf("sandbox -o yaml:\n%s\n-o json:\n%s", ys.String(), js.String())
	}
	for i, s := range fromYAML.Scenarios {
		for _, k := range []string{"name", "method", "status", "expected_status", "verified"} {
			if s[k] != fromJSON.Scenarios[i][k] {
				t.Errorf("sandbox scenario %d: %s %v in YAML, %v in JSON", i, k, s[k], fromJSON.Scenarios[i][k])
			}
		}
	}
	if code, _, errOut := keyturn(t, "sandbox", "--once", "--json", "-o", "yaml"); code != 2 {
		t.Errorf("sandbox --json -o yaml: exit %d, %q", code, errOut)
	}

	code, out, errOut = keyturn(t, "version", "-o", "yaml")
	var v map[string]string
	if err := yaml.Unmarshal([]byte(out), &v); code != 0 || err != nil || v["go_version"] == "" || !strings.HasPrefix(out, "version: ") {
		t.Errorf("version -o yaml: exit %d %v %q %q", code, err, out, errOut)
	}
}

// TestOutputFlagCompletion: shell completion offers -o's values for the commands built here.
func TestOutputFlagCompletion(t *testing.T) {
	for _, args := range [][]string{{"init", "-o", ""}, {"team", "add", "-o", ""}, {"sandbox", "-o", ""}, {"version", "-o", ""}} {
		code, out, errOut := keyturn(t, append([]string{"__complete"}, args...)...)
		if code != 0 || out != "table\njson\nyaml\n:4\n" {
			t.Errorf("complete %v: exit %d %q %q", args, code, out, errOut)
		}
	}
}
