package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
)

const (
	okScript   = "#!/bin/sh\necho rotated-fine\necho a-warning >&2\nexit 0\n"
	failScript = "#!/bin/sh\necho cannot-reach-target >&2\nexit 1\n"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fastEnv is an env that polls quickly, for the harness.
func (h *harness) fastEnv() *env {
	return &env{getenv: func(k string) string { return h.env[k] }, pollMin: 10 * time.Millisecond,
		pollMax: 50 * time.Millisecond, auditPoll: 20 * time.Millisecond}
}

// runEnv executes a command line with the commands of e, under ctx, writing to out and errOut.
func runEnv(ctx context.Context, e *env, out, errOut io.Writer, args ...string) error {
	root := &cobra.Command{Use: "keyturn", SilenceUsage: true, SilenceErrors: true, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	root.AddCommand(e.commands()...)
	MarkUsageErrors(root)
	root.SetOut(out)
	root.SetErr(errOut)
	root.SetIn(strings.NewReader(""))
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// runFast executes a command line with quick polling.
func (h *harness) runFast(args ...string) result {
	return h.runIn(h.fastEnv(), args...)
}

func (h *harness) runIn(e *env, args ...string) result {
	var out, errOut syncBuffer
	err := runEnv(context.Background(), e, &out, &errOut, args...)
	return result{out: out.String(), errOut: errOut.String(), err: err, code: ExitCode(err)}
}

// pamUser creates a pamUser record with a login and a password and returns its UID.
func (h *harness) pamUser(title, folder, password string) string {
	h.t.Helper()
	args := []string{"record", "create", "--type", "pamUser", "--title", title,
		"--field", "login=" + strings.ToLower(strings.ReplaceAll(title, " ", ".")) + "@example.com", "--field", "password=-"}
	if folder != "" {
		args = append(args, "--folder", folder)
	}
	return strings.TrimSpace(h.ok(password, args...))
}

// scriptFile writes a script to a temporary file and returns its path.
func scriptFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// rotatable makes uid rotate by method scripts_only with one script of content.
func (h *harness) rotatable(uid, content string) {
	h.t.Helper()
	h.ok("", "rotation", "set", "--method", "scripts_only", "--", uid)
	h.ok("", "script", "add", "--file", scriptFile(h.t, "rotate.sh", content), "--", uid)
}

// failCode fails the test unless the command exited with code, and returns the result.
func (h *harness) failCode(code int, args ...string) result {
	h.t.Helper()
	r := h.runFast(args...)
	if r.code != code {
		h.t.Fatalf("keyturn %s: exit %d (%v), want %d\nstdout:\n%s", strings.Join(args, " "), r.code, r.err, code, r.out)
	}
	return r
}

// password returns a record's password, from the API.
func (h *harness) password(uid string) string {
	h.t.Helper()
	rec := h.getRecord(uid)
	pw, ok := rec.Password()
	if !ok {
		h.t.Fatalf("record %s has no password", uid)
	}
	return pw
}

func TestRotationSetAndInfo(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	uid := h.pamUser("Okta admin", "Shared/Okta", pw1)

	// before any settings: info fails with the server's message
	r := h.failCode(ExitFailed, "rotation", "info", "--", uid)
	if !strings.Contains(r.err.Error(), "has no rotation settings") {
		t.Errorf("info without settings: %v", r.err)
	}

	// set: a cron schedule in a time zone, a complexity; -o json is the API's answer
	out := h.ok("", "rotation", "set", "--method", "scripts_only", "--schedule", "0 0 3 * * ?",
		"--tz", "Europe/Berlin", "--complexity", "32,2,3,4,5,!@#", "--verify-with", "okta", "-o", "json", "--", uid)
	var set struct {
		Method     string          `json:"method"`
		Schedule   json.RawMessage `json:"schedule"`
		Complexity map[string]any  `json:"complexity"`
		VerifyWith string          `json:"verify_with"`
		Enabled    *bool           `json:"enabled"`
	}
	if err := json.Unmarshal([]byte(out), &set); err != nil {
		t.Fatalf("set -o json: %v\n%s", err, out)
	}
	var sched map[string]string
	if err := json.Unmarshal(set.Schedule, &sched); err != nil {
		t.Fatal(err)
	}
	if set.Method != "scripts_only" || set.VerifyWith != "okta" || set.Enabled == nil || !*set.Enabled ||
		sched["type"] != "CRON" || sched["cron"] != "0 0 3 * * ?" || sched["tz"] != "Europe/Berlin" {
		t.Fatalf("set -o json: %s", out)
	}
	if set.Complexity["length"] != 32.0 || set.Complexity["caps"] != 2.0 || set.Complexity["lowercase"] != 3.0 ||
		set.Complexity["digits"] != 4.0 || set.Complexity["special"] != 5.0 || set.Complexity["specialChars"] != "!@#" {
		t.Fatalf("set -o json complexity: %v", set.Complexity)
	}

	// info: the settings and the state, as text and as JSON
	out = h.ok("", "rotation", "info", "--", uid)
	for _, want := range []string{
		`(?m)^Record:\s+` + regexp.QuoteMeta(uid) + `$`,
		`(?m)^Method:\s+scripts_only$`,
		`(?m)^Connector:\s+-$`,
		`(?m)^Schedule:\s+cron 0 0 3 \* \* \? \(Europe/Berlin\)$`,
		`(?m)^Complexity:\s+32,2,3,4,5,!@#$`,
		`(?m)^Verify with:\s+okta$`,
		`(?m)^Enabled:\s+true$`,
		`(?m)^State:\s+never_rotated$`,
		`(?m)^Last rotation:\s+-$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("info lacks %s:\n%s", want, out)
		}
	}
	if regexp.MustCompile(`(?m) $`).MatchString(out) {
		t.Errorf("info has trailing spaces:\n%q", out)
	}
	var info RotationInfo
	if err := json.Unmarshal([]byte(h.ok("", "rotation", "info", "-o", "json", "--", uid)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Method != "scripts_only" || info.State != "never_rotated" || info.Complexity == nil || info.Complexity.Length != 32 {
		t.Fatalf("info -o json: %+v", info)
	}

	// set changes what its flags give; an empty value or "default" removes a setting
	out = h.ok("", "rotation", "set", "--schedule", "on-demand", "--disable", "--verify-with", "", "--complexity", "default", "--", uid)
	for _, want := range []string{`(?m)^Schedule:\s+on-demand$`, `(?m)^Enabled:\s+false$`, `(?m)^Verify with:\s+-$`,
		`(?m)^Complexity:\s+default \(20,1,1,1,1,`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("set output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "State:") {
		t.Errorf("set shows a state:\n%s", out)
	}
	info = RotationInfo{}
	_ = json.Unmarshal([]byte(h.ok("", "rotation", "info", "-o", "json", "--", uid)), &info)
	sched = nil
	_ = json.Unmarshal(info.Schedule, &sched)
	if len(sched) != 1 || sched["type"] != "ON_DEMAND" || info.IsEnabled() || info.Complexity != nil || info.VerifyWith != "" {
		t.Fatalf("after set on-demand --disable: %+v (schedule %s)", info, info.Schedule)
	}

	// a cron schedule without --tz is in Etc/UTC; --enable undoes --disable
	h.ok("", "rotation", "set", "--method", "scripts_only", "--schedule", "0 30 2 * * ?", "--enable", "--", uid)
	if out := h.ok("", "rotation", "info", "--", uid); !regexp.MustCompile(`(?m)^Schedule:\s+cron 0 30 2 \* \* \? \(Etc/UTC\)$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^Enabled:\s+true$`).MatchString(out) {
		t.Errorf("cron without --tz, --enable:\n%s", out)
	}

	// usage errors: exit 2, nothing stored
	for _, args := range [][]string{
		{"--method", "scripts_only", "--complexity", "7,1,1,1,1"},    // too short
		{"--method", "scripts_only", "--complexity", "20,1,1"},       // too few parts
		{"--method", "scripts_only", "--complexity", "20,x,1,1,1"},   // not a number
		{"--method", "scripts_only", "--complexity", "20,1,1,1,1,é"}, // not a special character
		{"--method", "scripts_only", "--complexity", "10,5,5,5,5"},   // classes exceed the length
		{"--method", "scripts_only", "--tz", "Europe/Berlin"},        // tz without schedule
		{"--method", "scripts_only", "--schedule", ""},               // empty schedule
		{"--method", "scripts_only", "--schedule", "on-demand", "--tz", "UTC"},
		{"--method", ""},                         // empty method
		{"--pause", "--resume"},                  // contradiction
		{"--disable", "--enable"},                // contradiction
		{"--window", "soon"},                     // not a duration
		{"--window", "-1h"},                      // not positive
		{"--catch-up", "twice"},                  // no such policy
		{"--schedule", `{"type":"DAILY"`},        // not JSON
		{"--schedule", "default", "--tz", "UTC"}, // tz of a default schedule
		{"--schedule", `{"type":"DAILY","time":"03:00"}`, "--tz", "UTC"},
		{"--next-run-at", "tomorrow"},
	} {
		r := h.runFast(append(append([]string{"rotation", "set"}, args...), "--", uid)...)
		if r.code != ExitBadUsage {
			t.Errorf("rotation set %v: exit %d (%v), want %d", args, r.code, r.err, ExitBadUsage)
		}
		if strings.Contains(strings.Join(args, " "), "complexity") && !strings.Contains(r.err.Error(), "--complexity") {
			t.Errorf("rotation set %v: message %q does not name --complexity", args, r.err)
		}
	}
	if out := h.ok("", "rotation", "info", "--", uid); !strings.Contains(out, "Etc/UTC") {
		t.Errorf("a refused set changed the settings:\n%s", out)
	}

	// a record without settings needs --method: exit 2, nothing stored
	fresh := h.pamUser("Fresh user", "", pw1)
	if r := h.failCode(ExitBadUsage, "rotation", "set", "--connector", "okta", "--", fresh); !strings.Contains(r.err.Error(), "--method is required") {
		t.Errorf("set without --method on a record without settings: %v", r.err)
	}
	h.failCode(ExitFailed, "rotation", "info", "--", fresh)

	// the server refuses: exit 1 with its message
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--method", "general", "--connector", "kerberos"}, `needs connector ` + strings.Join(rotation.ConnectorNames, ", ") + `, not "kerberos"`},
		{[]string{"--method", "scripts_only", "--connector", "okta"}, "takes no connector"},
		{[]string{"--method", "scripts_only", "--verify-with", "kerberos"}, `verify_with must be one of ` + strings.Join(rotation.ConnectorNames, ", ") + ` or empty, not "kerberos"`},
		{[]string{"--method", "sometimes"}, "method must be general or scripts_only"},
		{[]string{"--method", "scripts_only", "--config", "no-such-record"}, `configuration_uid: no record "no-such-record"`},
	} {
		r := h.failCode(ExitFailed, append(append([]string{"rotation", "set"}, c.args...), "--", uid)...)
		var ae *APIError
		if !errors.As(r.err, &ae) || ae.Status != 400 || !strings.Contains(r.err.Error(), c.msg) {
			t.Errorf("rotation set %v: %v, want HTTP 400 saying %q", c.args, r.err, c.msg)
		}
	}

	// rotation settings belong on pamUser records
	login := strings.TrimSpace(h.ok("", "record", "create", "--type", "login", "--title", "Wiki", "--field", "login=bob"))
	if r := h.failCode(ExitFailed, "rotation", "set", "--method", "scripts_only", "--", login); !strings.Contains(r.err.Error(), "pamUser") {
		t.Errorf("set on a login record: %v", r.err)
	}
	h.failCode(ExitFailed, "rotation", "info", "no-such-record")
	h.failCode(ExitBadUsage, "rotation", "info")
	h.failCode(ExitBadUsage, "rotation", "info", "-o", "xml", "--", uid)
}

func TestScriptCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	uid := h.pamUser("Okta admin", "", pw1)
	cred := strings.TrimSpace(h.ok("tok-123", "record", "create", "--type", "login", "--title", "API token",
		"--field", "login=svc", "--field", "password=-", "--field", "url=https://okta.example"))
	h.ok("", "rotation", "set", "--method", "scripts_only", "--", uid)

	// add: named after the file, with a command, a credential record and a timeout
	file := scriptFile(t, "okta-rotate.sh", okScript)
	out := h.ok("", "script", "add", "--file", file, "--command", "/bin/sh", "--credential", cred, "--timeout", "30s", "--", uid)
	for _, want := range []string{`(?m)^ID:\s+\S+$`, `(?m)^Record:\s+` + regexp.QuoteMeta(uid) + `$`, `(?m)^Name:\s+okta-rotate\.sh$`,
		`(?m)^Command:\s+/bin/sh$`, `(?m)^Credentials:\s+` + regexp.QuoteMeta(cred) + `$`, `(?m)^Timeout:\s+30s$`,
		`(?m)^Size:\s+` + strconv.Itoa(len(okScript)) + ` bytes$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("script add lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "rotated-fine") {
		t.Errorf("script add shows the content:\n%s", out)
	}
	// -o json, another name, the server's default timeout
	var second ScriptInfo
	if err := json.Unmarshal([]byte(h.ok("", "script", "add", "--file", file, "--name", "second.sh", "-o", "json", "--", uid)), &second); err != nil {
		t.Fatal(err)
	}
	if second.ID == "" || second.Name != "second.sh" || second.TimeoutS != 120 || second.Size != len(okScript) ||
		len(second.CredentialUIDs) != 0 || second.Command != "" || len(second.SHA256) != 64 {
		t.Fatalf("script add -o json: %+v", second)
	}

	// list: in the order attached
	rows := tableRows(t, h.ok("", "script", "list", "--", uid), `ID\s+NAME\s+COMMAND\s+CREDENTIALS\s+TIMEOUT\s+SIZE\s+SHA256`)
	if len(rows) != 2 || !regexp.MustCompile(`^\S+\s+okta-rotate\.sh\s+/bin/sh\s+`+regexp.QuoteMeta(cred)+`\s+30s\s+`+strconv.Itoa(len(okScript))+`\s+[0-9a-f]{64}$`).MatchString(rows[0]) ||
		!regexp.MustCompile(`^`+regexp.QuoteMeta(second.ID)+`\s+second\.sh\s+-\s+-\s+120s\s+`).MatchString(rows[1]) {
		t.Fatalf("script list:\n%s", strings.Join(rows, "\n"))
	}
	var listed struct {
		List []ScriptInfo `json:"list"`
	}
	if err := json.Unmarshal([]byte(h.ok("", "script", "list", "-o", "json", "--", uid)), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.List) != 2 || listed.List[1].ID != second.ID || listed.List[0].Name != "okta-rotate.sh" {
		t.Fatalf("script list -o json: %+v", listed)
	}

	// params: masked, then revealed
	out = h.ok("", "script", "params", "--", uid)
	var params map[string]any
	if err := json.Unmarshal([]byte(out), &params); err != nil {
		t.Fatalf("params is not JSON: %v\n%s", err, out)
	}
	if !strings.Contains(out, "\n  \"") {
		t.Errorf("params is not indented:\n%s", out)
	}
	// {stdin, params, records}: what the script reads, layer by layer
	inner, _ := params["params"].(map[string]any)
	if inner["userRecordUid"] != uid || inner["oldPassword"] != script.Masked || inner["user"] != "okta.admin@example.com" {
		t.Errorf("params: %v", params)
	}
	if strings.Contains(out, pw1) {
		t.Errorf("params without --reveal shows the password:\n%s", out)
	}
	out = h.ok("", "script", "params", "--reveal", "--", uid)
	params = nil
	if err := json.Unmarshal([]byte(out), &params); err != nil {
		t.Fatal(err)
	}
	if inner, _ := params["params"].(map[string]any); inner["oldPassword"] != pw1 || !strings.Contains(out, pw1) {
		t.Errorf("params --reveal does not show the password:\n%s", out)
	}
	if out2 := h.ok("", "script", "params", "-o", "json", "--", uid); !json.Valid([]byte(out2)) || strings.Contains(out2, pw1) {
		t.Errorf("params -o json:\n%s", out2)
	}

	// delete: gone from the list; deleting it again fails with the server's message
	if out := h.ok("", "script", "delete", "--", uid, second.ID); !strings.Contains(out, "deleted script "+second.ID) {
		t.Errorf("script delete: %q", out)
	}
	rows = tableRows(t, h.ok("", "script", "list", "--", uid), `ID\s+NAME\s+COMMAND\s+CREDENTIALS\s+TIMEOUT\s+SIZE\s+SHA256`)
	if len(rows) != 1 || strings.Contains(rows[0], second.ID) {
		t.Fatalf("list after delete:\n%s", strings.Join(rows, "\n"))
	}
	r := h.failCode(ExitFailed, "script", "delete", "--", uid, second.ID)
	if !strings.Contains(r.err.Error(), "has no script") {
		t.Errorf("delete again: %v", r.err)
	}
	var del map[string]any
	first := strings.Fields(rows[0])[0]
	if err := json.Unmarshal([]byte(h.ok("", "script", "delete", "-o", "json", "--", uid, first)), &del); err != nil ||
		del["deleted"] != true || del["script_id"] != first || del["uid"] != uid {
		t.Fatalf("delete -o json: %v %v", del, err)
	}

	// errors
	h.failCode(ExitBadUsage, "script", "add", "--", uid)                                                   // no --file
	h.failCode(ExitBadUsage, "script", "add", "--file", file, "--timeout", "1500ms", "--", uid)            // not whole seconds
	h.failCode(ExitBadUsage, "script", "add", "--file", file, "--timeout", "2h", "--", uid)                // too long
	h.failCode(ExitBadUsage, "script", "add", "--file", "-", "--", uid)                                    // stdin needs a name
	h.failCode(ExitFailed, "script", "add", "--file", filepath.Join(t.TempDir(), "missing.sh"), "--", uid) // no such file
	h.failCode(ExitFailed, "script", "add", "--file", scriptFile(t, "empty.sh", ""), "--", uid)
	if r := h.failCode(ExitFailed, "script", "add", "--file", file, "--credential", "no-such-record", "--", uid); !strings.Contains(r.err.Error(), "credential_uids") {
		t.Errorf("unknown credential: %v", r.err)
	}
	if r := h.failCode(ExitFailed, "script", "add", "no-such-record", "--file", file); !strings.Contains(r.err.Error(), "404") {
		t.Errorf("unknown record: %v", r.err)
	}
	// from standard input, named
	if out := h.ok(okScript, "script", "add", "--file", "-", "--name", "stdin.sh", "--", uid); !regexp.MustCompile(`(?m)^Name:\s+stdin\.sh$`).MatchString(out) {
		t.Errorf("script add from stdin:\n%s", out)
	}
}

// rotationIDOf returns the ROTATION cell of a record's row in rotate's table.
func rotationIDOf(t *testing.T, out, uid string) (id, status string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(uid) + `\s+(\S+)\s+(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no row of %s in:\n%s", uid, out)
	}
	return m[1], m[2]
}

func TestRotateByUIDAndTitleAndJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	uid := h.pamUser("Svc A", "Shared/Apps", pw1)
	h.rotatable(uid, okScript)

	// by UID, waiting, with the harness's default polling
	out := h.ok("", "rotate", "--wait", "--", uid)
	rows := tableRows(t, out, `RECORD\s+ROTATION\s+STATUS`)
	if len(rows) != 1 {
		t.Fatalf("rotate --wait:\n%s", out)
	}
	id, status := rotationIDOf(t, out, uid)
	if status != "succeeded" {
		t.Fatalf("rotate --wait:\n%s", out)
	}
	pw := h.password(uid)
	if pw == pw1 || len(pw) != 20 {
		t.Fatalf("the password after the rotation is %q", pw)
	}

	// job: the run and its exec log
	out = h.ok("", "job", id)
	for _, want := range []string{
		`(?m)^ID:\s+` + regexp.QuoteMeta(id) + `$`,
		`(?m)^Record:\s+` + regexp.QuoteMeta(uid) + `$`,
		`(?m)^Trigger:\s+on_demand$`,
		`(?m)^Status:\s+succeeded$`,
		`(?m)^State:\s+succeeded$`,
		`(?m)^Attempt:\s+\d+$`,
		`(?m)^Error:\s+-$`,
		`(?m)^Created:\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`,
		`(?m)^Finished:\s+\d{4}-`,
		`(?m)^Exec log:$`,
		`(?m)^  \[1\] rotate\.sh$`,
		`(?m)^      return code: 0$`,
		`(?m)^      duration:    \S+$`,
		`(?m)^      stdout:\n        rotated-fine$`,
		`(?m)^      stderr:\n        a-warning$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("job lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, pw) || strings.Contains(out, pw1) {
		t.Errorf("job shows a password:\n%s", out)
	}
	var run Run
	if err := json.Unmarshal([]byte(h.ok("", "job", id, "-o", "json")), &run); err != nil {
		t.Fatal(err)
	}
	if run.ID != id || run.Status != "succeeded" || len(run.ExecLog) != 1 || run.ExecLog[0].Stdout != "rotated-fine\n" {
		t.Fatalf("job -o json: %+v", run)
	}
	if r := h.failCode(ExitFailed, "job", "no-such-rotation"); !strings.Contains(r.err.Error(), "404") {
		t.Errorf("job of an unknown id: %v", r.err)
	}
	h.failCode(ExitBadUsage, "job")
	h.failCode(ExitBadUsage, "job", " ")

	// rotation info shows the last rotation
	if out := h.ok("", "rotation", "info", "--", uid); !regexp.MustCompile(`(?m)^State:\s+succeeded$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^Last rotation:\s+`+regexp.QuoteMeta(id)+`$`).MatchString(out) {
		t.Errorf("info after the rotation:\n%s", out)
	}

	// by title; -o json holds the finished run
	var res struct {
		List []rotateOutcome `json:"list"`
	}
	if err := json.Unmarshal([]byte(h.runFast("rotate", "Svc A", "--wait", "-o", "json").out), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.List) != 1 || res.List[0].RecordUID != uid || res.List[0].Status != "succeeded" || res.List[0].RotationID == id ||
		res.List[0].Run == nil || res.List[0].Run.Status != "succeeded" || res.List[0].Error != nil {
		t.Fatalf("rotate by title -o json: %+v", res)
	}
	if h.password(uid) == pw {
		t.Fatal("rotating by title did not change the password")
	}

	// the same record named twice (UID and title) rotates once; without --wait it only starts
	r := h.runFast("rotate", "--", uid, "Svc A")
	if r.code != ExitOK {
		t.Fatalf("rotate without --wait: exit %d: %v", r.code, r.err)
	}
	rows = tableRows(t, r.out, `RECORD\s+ROTATION\s+STATUS`)
	if len(rows) != 1 || !regexp.MustCompile(`^`+regexp.QuoteMeta(uid)+`\s+\S+\s+(queued|running)$`).MatchString(rows[0]) {
		t.Fatalf("rotate without --wait:\n%s", r.out)
	}
	if r.errOut != "" {
		t.Errorf("one record rotating shows something on stderr: %q", r.errOut)
	}
	started, _ := rotationIDOf(t, r.out, uid)
	waitFor(t, func() bool {
		var run Run
		_ = json.Unmarshal([]byte(h.ok("", "job", started, "-o", "json")), &run)
		return run.Terminal()
	})

	// a title two records share is refused, listing them
	other := h.pamUser("Svc A", "Elsewhere", pw1)
	r = h.failCode(ExitBadUsage, "rotate", "Svc A")
	if !strings.Contains(r.err.Error(), uid) || !strings.Contains(r.err.Error(), other) || !strings.Contains(r.err.Error(), "2 records") {
		t.Errorf("ambiguous title: %v", r.err)
	}
	// a title that only contains the given text does not match it
	if r := h.failCode(ExitFailed, "rotate", "Svc"); !strings.Contains(r.out, "not_started") {
		t.Errorf("rotate by a partial title:\n%s", r.out)
	}

	// records that cannot rotate: exit 1, the server's reason in the table
	r = h.failCode(ExitFailed, "rotate", "--", other, "no-such-record")
	if !strings.Contains(r.err.Error(), "2 of 2 rotations could not start") {
		t.Errorf("rotate unconfigured and unknown: %v", r.err)
	}
	rows = tableRows(t, r.out, `RECORD\s+ROTATION\s+STATUS\s+ERROR`)
	if len(rows) != 2 || !regexp.MustCompile(`^`+regexp.QuoteMeta(other)+`\s+-\s+not_started\s+not_configured: .*no rotation settings`).MatchString(rows[0]) ||
		!regexp.MustCompile(`^no-such-record\s+-\s+not_started\s+\S+`).MatchString(rows[1]) {
		t.Fatalf("rotate unconfigured and unknown:\n%s", r.out)
	}

	// usage
	h.failCode(ExitBadUsage, "rotate")
	h.failCode(ExitBadUsage, "rotate", "--timeout", "1m", "--", uid)
	h.failCode(ExitBadUsage, "rotate", "--wait", "--timeout", "0s", "--", uid)
	h.failCode(ExitBadUsage, "rotate", "")
	h.failCode(ExitBadUsage, "rotate", "--folder", "")
}

// waitFor waits until cond holds, for at most 30 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRotateFolderWait(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var uids []string
	for _, title := range []string{"Batch 1", "Batch 2", "Batch 3"} {
		uid := h.pamUser(title, "Shared/Batch", pw1)
		h.rotatable(uid, okScript)
		uids = append(uids, uid)
	}
	// below the folder: included; beside it and of another type: not
	sub := h.pamUser("Batch sub", "Shared/Batch/Deep", pw1)
	h.rotatable(sub, okScript)
	uids = append(uids, sub)
	outside := h.pamUser("Outside", "Shared/Other", pw1)
	h.rotatable(outside, okScript)
	h.ok("", "record", "create", "--type", "login", "--title", "Batch login", "--folder", "Shared/Batch", "--field", "login=x")

	// all succeed: exit 0; a progress bar on a terminal's stderr, never on stdout
	e := h.fastEnv()
	e.isTerminal = func(io.Writer) bool { return true }
	r := h.runIn(e, "rotate", "--folder", "Shared/Batch", "--wait")
	if r.code != ExitOK {
		t.Fatalf("rotate --folder --wait: exit %d: %v\n%s", r.code, r.err, r.out)
	}
	rows := tableRows(t, r.out, `RECORD\s+ROTATION\s+STATUS`)
	if len(rows) != len(uids) {
		t.Fatalf("rotate --folder rotated %d records, want %d:\n%s", len(rows), len(uids), r.out)
	}
	for _, uid := range uids {
		if _, status := rotationIDOf(t, r.out, uid); status != "succeeded" {
			t.Errorf("%s: %s", uid, status)
		}
		if h.password(uid) == pw1 {
			t.Errorf("%s: the password did not change", uid)
		}
	}
	if strings.Contains(r.out, outside) || h.password(outside) != pw1 {
		t.Errorf("a record outside the folder rotated:\n%s", r.out)
	}
	if !strings.Contains(r.errOut, "rotating") || !strings.Contains(r.errOut, "/4)") {
		t.Errorf("no progress bar on stderr: %q", r.errOut)
	}
	if strings.Contains(r.out, "rotating") || strings.Contains(r.out, "%") {
		t.Errorf("the progress bar went to stdout:\n%s", r.out)
	}
	// not a terminal: no bar
	if r := h.runFast("rotate", "--folder", "Shared/Batch", "--wait"); r.code != ExitOK || r.errOut != "" {
		t.Fatalf("rotate --folder without a terminal: exit %d (%v), stderr %q", r.code, r.err, r.errOut)
	}

	// one fails: exit 1, the others still succeed; the table says which failed and why
	bad := h.pamUser("Batch bad", "Shared/Batch", pw1)
	h.rotatable(bad, failScript)
	r = h.runFast("rotate", "--folder", "Shared/Batch", "--wait")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), "1 of 5 rotations did not succeed") {
		t.Fatalf("rotate with one failing: exit %d: %v\n%s", r.code, r.err, r.out)
	}
	rows = tableRows(t, r.out, `RECORD\s+ROTATION\s+STATUS\s+ERROR`)
	if len(rows) != 5 {
		t.Fatalf("rotate with one failing:\n%s", r.out)
	}
	for _, uid := range uids {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(uid) + `\s+\S+\s+succeeded\s+-$`).MatchString(r.out) {
			t.Errorf("%s did not succeed:\n%s", uid, r.out)
		}
	}
	badID, badStatus := rotationIDOf(t, r.out, bad)
	if badStatus != "failed" && badStatus != "needs_attention" {
		t.Errorf("the failing record's status is %s", badStatus)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(bad) + `\s+\S+\s+\S+\s+\S+: .*\S$`).MatchString(r.out) {
		t.Errorf("the failing record's row has no error:\n%s", r.out)
	}

	// its job shows the script's failure
	out := h.ok("", "job", badID)
	for _, want := range []string{`(?m)^Status:\s+(failed|needs_attention)$`, `(?m)^Error:\s+\S+: .+$`,
		`(?m)^      return code: 1$`, `(?m)^      stderr:\n        cannot-reach-target$`, `(?m)^      stdout:      \(empty\)$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("job of the failed run lacks %s:\n%s", want, out)
		}
	}

	// -o json has the error; a failed rotation alone fails too
	r = h.runFast("rotate", "--wait", "-o", "json", "--", bad)
	var res struct {
		List []rotateOutcome `json:"list"`
	}
	if err := json.Unmarshal([]byte(r.out), &res); err != nil {
		t.Fatal(err)
	}
	if r.code != ExitFailed || len(res.List) != 1 || res.List[0].Error == nil || res.List[0].Error.Message == "" || res.List[0].Run == nil {
		t.Fatalf("rotate bad --wait -o json: exit %d: %s", r.code, r.out)
	}

	// rotation list and its filters
	out = h.ok("", "rotation", "list")
	rows = tableRows(t, out, `ID\s+RECORD\s+STATUS\s+STATE\s+ATTEMPT\s+CREATED\s+FINISHED`)
	if len(rows) != 4+4+5+1 {
		t.Fatalf("rotation list has %d runs, want 14:\n%s", len(rows), out)
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(res.List[0].RotationID) + `\s+` + regexp.QuoteMeta(bad) + `\s+(failed|needs_attention)\s+\S+\s+\d+\s+\d{4}-\S+Z\s+\d{4}-\S+Z$`).MatchString(rows[0]) {
		t.Errorf("rotation list's first row is not the newest run:\n%s", out)
	}
	out = h.ok("", "rotation", "list", "--record", uids[0])
	rows = tableRows(t, out, `ID\s+RECORD\s+STATUS.*`)
	if len(rows) != 3 {
		t.Fatalf("rotation list --record has %d rows, want 3:\n%s", len(rows), out)
	}
	for _, row := range rows {
		if strings.Fields(row)[1] != uids[0] {
			t.Errorf("rotation list --record shows another record:\n%s", out)
		}
	}
	// the failed runs are the bad record's two, whichever way each ended
	var failedRuns []Run
	for _, st := range []string{"failed", "needs_attention"} {
		var runs struct {
			List []Run `json:"list"`
		}
		if err := json.Unmarshal([]byte(h.ok("", "rotation", "list", "--status", st, "-o", "json")), &runs); err != nil {
			t.Fatal(err)
		}
		for _, run := range runs.List {
			if run.Status != st {
				t.Errorf("rotation list --status %s shows a %s run", st, run.Status)
			}
		}
		failedRuns = append(failedRuns, runs.List...)
	}
	if len(failedRuns) != 2 || failedRuns[0].RecordUID != bad || failedRuns[1].RecordUID != bad {
		t.Fatalf("rotation list --status failed|needs_attention: %+v", failedRuns)
	}
	if rows := tableRows(t, h.ok("", "rotation", "list", "--status", "succeeded"), `ID.*`); len(rows) != 12 {
		t.Errorf("rotation list --status succeeded: %d runs, want 12", len(rows))
	}
	out = h.ok("", "rotation", "list", "--record", outside)
	if rows := tableRows(t, out, `ID\s+RECORD.*`); len(rows) != 0 {
		t.Errorf("rotation list of a record never rotated:\n%s", out)
	}
	if rows := tableRows(t, h.ok("", "rotation", "list", "--status", "succeeded", "--record", bad), `ID.*`); len(rows) != 0 {
		t.Errorf("rotation list --status succeeded --record bad: %v", rows)
	}

	// an empty folder is an error
	if r := h.failCode(ExitFailed, "rotate", "--folder", "Shared/Empty"); !strings.Contains(r.err.Error(), "no pamUser records") {
		t.Errorf("rotate an empty folder: %v", r.err)
	}
}

func TestRotateWaitTimesOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	uid := h.pamUser("Slow", "", pw1)
	h.rotatable(uid, "#!/bin/sh\nsleep 2\nexit 0\n")
	r := h.failCode(ExitFailed, "rotate", "--wait", "--timeout", "200ms", "--", uid)
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(uid) + `\s+\S+\s+(queued|running)\s+wait_timeout: still (queued|running) after waiting 200ms; see keyturn job \S+$`).MatchString(r.out) {
		t.Errorf("rotate --timeout:\n%s", r.out)
	}
	id, _ := rotationIDOf(t, r.out, uid)
	waitFor(t, func() bool {
		var run Run
		_ = json.Unmarshal([]byte(h.ok("", "job", id, "-o", "json")), &run)
		return run.Terminal()
	})
}

func TestAudit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	uid := h.pamUser("Svc A", "", pw1)
	h.rotatable(uid, okScript)
	h.ok("", "rotate", "--wait", "--", uid)
	// record_created is written by the batching writer within moments: let it land.
	waitFor(t, func() bool { return strings.Contains(h.ok("", "audit", "-o", "json"), `"record_created"`) })

	out := h.ok("", "audit")
	rows := tableRows(t, out, `SEQ\s+TIME\s+TYPE\s+ACTOR\s+RECORD\s+DETAILS`)
	if !regexp.MustCompile(`(?m)^\d+\s+\d{4}-\d\d-\d\dT\S+Z\s+record_rotation_on_demand_ok\s+\S+\s+` + regexp.QuoteMeta(uid) + `\s+\S`).MatchString(out) {
		t.Errorf("audit lacks the rotation:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^\d+\s+\S+\s+record_rotation_created\s+\S+\s+` + regexp.QuoteMeta(uid) + `\s+.*method=scripts_only`).MatchString(out) {
		t.Errorf("audit lacks the settings event with its details:\n%s", out)
	}
	if strings.Contains(out, pw1) {
		t.Errorf("audit shows a password:\n%s", out)
	}

	var all struct {
		List []AuditEvent `json:"list"`
	}
	if err := json.Unmarshal([]byte(h.ok("", "audit", "-o", "json")), &all); err != nil {
		t.Fatal(err)
	}
	if len(all.List) != len(rows) || len(all.List) < 2 {
		t.Fatalf("audit -o json has %d events, the table %d", len(all.List), len(rows))
	}
	// --after and --limit
	first := all.List[0].Seq
	var page struct {
		List []AuditEvent `json:"list"`
	}
	if err := json.Unmarshal([]byte(h.ok("", "audit", "--after", strconv.FormatInt(first, 10), "--limit", "1", "-o", "json")), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.List) != 1 || page.List[0].Seq != all.List[1].Seq {
		t.Fatalf("audit --after %d --limit 1: %+v", first, page.List)
	}
	last := all.List[len(all.List)-1].Seq
	if rows := tableRows(t, h.ok("", "audit", "--after", strconv.FormatInt(last, 10)), `SEQ.*`); len(rows) != 0 {
		t.Errorf("audit after the last event: %v", rows)
	}
	h.failCode(ExitBadUsage, "audit", "--limit", "0")
	h.failCode(ExitBadUsage, "audit", "--after", "-1")
	if r := h.failCode(ExitFailed, "audit", "--limit", "5000"); !strings.Contains(r.err.Error(), "limit") {
		t.Errorf("audit --limit 5000: %v", r.err)
	}
}

func TestAuditFollow(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	uid := h.pamUser("Svc A", "", pw1)
	h.ok("", "rotation", "set", "--method", "scripts_only", "--", uid)
	// Events that follow an action (record_created) are written in batches within moments;
	// let them land, so that "the events so far" are all there.
	waitFor(t, func() bool { return strings.Contains(h.ok("", "audit", "-o", "json"), `"record_created"`) })

	for _, asJSON := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errOut syncBuffer
		done := make(chan error, 1)
		args := []string{"audit", "--follow"}
		if asJSON {
			// only what comes after the events so far
			var so struct {
				List []AuditEvent `json:"list"`
			}
			if err := json.Unmarshal([]byte(h.ok("", "audit", "-o", "json")), &so); err != nil {
				t.Fatal(err)
			}
			args = append(args, "-o", "json", "--after", strconv.FormatInt(so.List[len(so.List)-1].Seq, 10))
		}
		go func() { done <- runEnv(ctx, h.fastEnv(), &out, &errOut, args...) }()

		if asJSON {
			time.Sleep(100 * time.Millisecond) // a few polls
			if got := out.String(); got != "" {
				t.Fatalf("audit --follow --after LAST shows old events:\n%s", got)
			}
		} else {
			// the events so far
			waitFor(t, func() bool { return strings.Contains(out.String(), "record_rotation_created") })
			if strings.Contains(out.String(), "record_rotation_updated") {
				t.Fatalf("an update before it happened:\n%s", out.String())
			}
		}
		// a new event shows up
		h.ok("", "rotation", "set", "--method", "scripts_only", "--schedule", "0 0 1 * * ?", "--", uid)
		waitFor(t, func() bool { return strings.Contains(out.String(), "record_rotation_updated") })
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("audit --follow ended with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("audit --follow did not stop when its context ended")
		}
		got := out.String()
		if asJSON {
			lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("audit --follow -o json --after LAST shows %d events, want the one new:\n%s", len(lines), got)
			}
			var ev AuditEvent
			if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
				t.Fatalf("audit --follow -o json line %q: %v", lines[0], err)
			}
			if ev.Type != "record_rotation_updated" || ev.RecordUID != uid || ev.Details["method"] != "scripts_only" {
				t.Errorf("audit --follow -o json: %+v", ev)
			}
		} else {
			if n := len(regexp.MustCompile(`(?m)^SEQ `).FindAllString(got, -1)); n != 1 {
				t.Errorf("audit --follow shows the header %d times:\n%s", n, got)
			}
			if n := strings.Count(got, "record_rotation_updated"); n != 1 {
				t.Errorf("the update shows %d times:\n%s", n, got)
			}
			// the rows that came later line up with the header
			lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
			col := strings.Index(lines[0], "TYPE")
			for _, l := range lines[1:] {
				if !strings.HasPrefix(l[col:], "record_") { // every event here is about the record

					t.Errorf("audit --follow rows are not aligned:\n%s", got)
				}
			}
		}
		if errOut.String() != "" {
			t.Errorf("stderr: %q", errOut.String())
		}
	}
}

func TestDetailsText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   map[string]any
		want string
	}{
		{nil, "-"},
		{map[string]any{"connector": "", "verify_with": nil}, "-"},
		{map[string]any{"status": "failed", "method": "scripts_only"}, "method=scripts_only status=failed"},
		{map[string]any{"msg": "two words", "n": 3.0, "list": []any{"a"}}, `list=["a"] msg="two words" n=3`},
		{map[string]any{"x": "line\nbreak"}, `x="line\nbreak"`},
	} {
		if got := detailsText(c.in); got != c.want {
			t.Errorf("detailsText(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestScheduleText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{``, "on-demand"},
		{`{"type":"ON_DEMAND"}`, "on-demand"},
		{`{"type":"CRON","cron":"0 0 3 * * ?","tz":"Europe/Berlin"}`, "cron 0 0 3 * * ? (Europe/Berlin)"},
		{`{"type":"CRON","cron":"0 0 3 * * ?"}`, "cron 0 0 3 * * ? (Etc/UTC)"},
		{`{"type":"DAILY","time":"03:00"}`, `{"type":"DAILY","time":"03:00"}`},
	} {
		if got := scheduleText(json.RawMessage(c.in)); got != c.want {
			t.Errorf("scheduleText(%s) = %q, want %q", c.in, got, c.want)
		}
	}
}

// rotation set reads the settings, applies its flags and writes them whole. When someone else
// changes them in between, the write is refused (stale revision) and the flags are applied
// again to what they hold now: neither change is lost.
func TestRotationSetKeepsAConcurrentChange(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	uid := h.pamUser("Shared User", "", "pw-1")
	h.ok("", "rotation", "set", "--method", "scripts_only", "--", uid)

	var fired bool
	h.setAfter(func(r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v1/teams/acme/records/"+uid+"/rotation" || fired {
			return
		}
		fired = true
		h.ok("", "rotation", "set", "--window", "2h", "--", uid) // another admin, right after our read
	})
	h.ok("", "rotation", "set", "--complexity", "32,2,2,2,2", "--", uid)
	h.setAfter(nil)
	if !fired {
		t.Fatal("the concurrent change did not run")
	}
	info := h.rotationInfo(uid)
	if info.Window != "2h" || info.Complexity == nil || info.Complexity.Length != 32 {
		t.Fatalf("settings %+v: want both the concurrent window 2h and our complexity 32", info.Settings)
	}
	if info.Revision != 3 { // the first set, the concurrent one, ours (the refused write saved nothing)
		t.Fatalf("revision %d, want 3", info.Revision)
	}
}
