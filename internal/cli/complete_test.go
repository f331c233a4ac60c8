package cli

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// allCommands lists cmd and every command below it.
func allCommands(cmd *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{cmd}
	for _, sub := range cmd.Commands() {
		out = append(out, allCommands(sub)...)
	}
	return out
}

// completions runs cobra's hidden __complete command, as a shell's completion script does,
// and returns the values offered and the directive line (":4" is "no file names").
func completions(t *testing.T, args ...string) ([]string, string) {
	t.Helper()
	r := runWith(map[string]string{}, "", append([]string{"__complete"}, args...)...)
	if r.code != ExitOK {
		t.Fatalf("__complete %s: exit %d: %v", strings.Join(args, " "), r.code, r.err)
	}
	lines := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	return lines[:len(lines)-1], lines[len(lines)-1]
}

// TestFlagValueCompletion: shell completion offers the values of flags that take one of a
// fixed list, and no file names for them.
func TestFlagValueCompletion(t *testing.T) {
	types := []string{"login", "pamUser", "pamConfiguration", "pamMachine", "pamDatabase", "pamDirectory", "general"}
	runStatuses := []string{"queued", "running", "succeeded", "failed", "needs_attention"}
	userStatuses := []string{"ACTIVE", "DISABLED", "DELETED"}
	formats := []string{"table", "json", "yaml"}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"rotation", "set", "UID", "--method", ""}, []string{"scripts_only", "general"}},
		{[]string{"rotation", "set", "UID", "--connector", ""}, []string{"okta", "opa", "rest", "ssh", "mysql", "postgresql", "ldap"}},
		{[]string{"rotation", "set", "UID", "--verify-with", ""}, []string{"okta", "opa", "rest", "ssh", "mysql", "postgresql", "ldap"}},
		{[]string{"rotation", "set", "UID", "--catch-up", ""}, []string{"run_once", "skip", "default"}},
		{[]string{"rotation", "list", "--status", ""}, runStatuses},
		{[]string{"record", "create", "--type", ""}, types},
		{[]string{"record", "list", "--type", ""}, types},
		{[]string{"service-user", "list", "--status", ""}, userStatuses},
		{[]string{"service-user", "update", "bob", "--status", ""}, userStatuses},
		{[]string{"service-user", "create", "bob", "--role", ""}, []string{"resource_admin", "pam_admin", "security_admin", "secrets_reader"}},
		{[]string{"record", "list", "-o", ""}, formats},
		{[]string{"rotate", "UID", "--output", ""}, formats},
		{[]string{"audit", "-o", ""}, formats},
	} {
		got, directive := completions(t, c.args...)
		if !slices.Equal(got, c.want) || directive != ":4" {
			t.Errorf("complete %s: %q %s, want %q :4", strings.Join(c.args, " "), got, directive, c.want)
		}
	}
}

// TestEveryOutputFlagCompletes: every client command with -o offers its values.
func TestEveryOutputFlagCompletes(t *testing.T) {
	n := 0
	for _, cmd := range allCommands(newTestRoot()) {
		if cmd.Flags().Lookup("output") == nil {
			continue
		}
		n++
		path := strings.Fields(cmd.CommandPath())[1:]
		args := append(path, "-o", "")
		got, directive := completions(t, args...)
		if !slices.Equal(got, []string{"table", "json", "yaml"}) || directive != ":4" {
			t.Errorf("complete %s: %q %s", strings.Join(args, " "), got, directive)
		}
	}
	if n < 20 {
		t.Fatalf("only %d commands take -o", n)
	}
}
