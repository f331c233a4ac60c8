package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

const pw1 = "s3cret-One!"

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	// create, the password from stdin
	out := h.ok(pw1+"\n", "record", "create", "--type", "pamUser", "--title", "Okta admin",
		"--folder", "Shared/Okta", "--notes", "first line\nsecond line",
		"--field", "login=admin@example.com", "--field", "password=-", "--field", "url.console=https://a.example",
		"--custom", "env=prod")
	uid := strings.TrimSpace(out)
	if !regexp.MustCompile(`^\S+$`).MatchString(uid) {
		t.Fatalf("create printed %q, want the UID alone", out)
	}
	rec := h.getRecord(uid)
	if rec.Type != "pamUser" || rec.Title != "Okta admin" || rec.Folder != "Shared/Okta" || rec.Notes != "first line\nsecond line" || rec.Revision != 1 {
		t.Fatalf("stored record: %+v", rec)
	}
	if len(rec.Fields) != 3 || rec.Fields[0].Type != "login" || rec.Fields[1].Type != "password" ||
		rec.Fields[2].Type != "url" || rec.Fields[2].Label != "console" {
		t.Fatalf("stored fields: %+v", rec.Fields)
	}
	if got := fieldValue(t, rec.Fields[1]); got != pw1 {
		t.Fatalf("password from stdin stored as %q, want %q (trailing newline dropped)", got, pw1)
	}
	if len(rec.Custom) != 1 || rec.Custom[0].Type != "text" || rec.Custom[0].Label != "env" || fieldValue(t, rec.Custom[0]) != "prod" {
		t.Fatalf("stored custom fields: %+v", rec.Custom)
	}

	// get: masked, then revealed
	out = h.ok("", "record", "get", uid)
	if strings.Contains(out, pw1) {
		t.Fatalf("get shows the password without --reveal:\n%s", out)
	}
	for _, want := range []string{"UID:", uid, "Okta admin", "Shared/Okta", "admin@example.com", "url.console", "https://a.example", "env", "prod", "second line"} {
		if !strings.Contains(out, want) {
			t.Errorf("get output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^\s+password\s+\*{8}$`).MatchString(out) {
		t.Errorf("get output has no masked password line:\n%s", out)
	}
	if regexp.MustCompile(`(?m) $`).MatchString(out) {
		t.Errorf("get output has trailing spaces:\n%q", out)
	}
	// fields and custom fields line up in one column
	loginAt := regexp.MustCompile(`(?m)^  login +`).FindString(out)
	envAt := regexp.MustCompile(`(?m)^  env +`).FindString(out)
	if loginAt == "" || len(loginAt) != len(envAt) {
		t.Errorf("fields and custom fields are not aligned:\n%s", out)
	}
	out = h.ok("", "record", "get", uid, "--reveal")
	if !regexp.MustCompile(`(?m)^\s+password\s+` + regexp.QuoteMeta(pw1) + `$`).MatchString(out) {
		t.Errorf("get --reveal does not show the password:\n%s", out)
	}

	// get -o json: the API's record, unmasked
	var got Record
	if err := json.Unmarshal([]byte(h.ok("", "record", "get", uid, "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if got.UID != uid || got.Revision != 1 || fieldValue(t, got.Fields[1]) != pw1 || got.CreatedAt.IsZero() {
		t.Fatalf("get -o json: %+v", got)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal([]byte(h.ok("", "record", "get", uid, "--output", "json")), &keys)
	for _, k := range []string{"uid", "type", "title", "folder", "fields", "custom", "notes", "revision", "created_at", "updated_at"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("get -o json lacks %q", k)
		}
	}

	// a second record, to see list and its filters
	uid2 := strings.TrimSpace(h.ok("", "record", "create", "--type", "login", "--title", "Wiki", "--field", "login=bob"))

	out = h.ok("", "record", "list")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^UID\s+TYPE\s+TITLE\s+FOLDER\s+REVISION$`).MatchString(lines[0]) {
		t.Fatalf("list:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(uid) + `\s+pamUser\s+Okta admin\s+Shared/Okta\s+1$`).MatchString(out) {
		t.Errorf("list lacks the first record's row:\n%s", out)
	}
	// columns are aligned: every row's TYPE starts where the header's does
	col := strings.Index(lines[0], "TYPE")
	for _, l := range lines[1:] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("list is not aligned at column %d:\n%s", col, out)
		}
	}
	var listed struct {
		List []Summary `json:"list"`
	}
	if err := json.Unmarshal([]byte(h.ok("", "record", "list", "--type", "login", "-o", "json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.List) != 1 || listed.List[0].UID != uid2 || listed.List[0].Title != "Wiki" {
		t.Fatalf("list --type login -o json: %+v", listed)
	}
	if out := h.ok("", "record", "list", "--folder", "Shared/Okta"); !strings.Contains(out, uid) || strings.Contains(out, uid2) {
		t.Errorf("list --folder:\n%s", out)
	}
	if out := h.ok("", "record", "list", "--title", "Wiki"); strings.Contains(out, uid+" ") || !strings.Contains(out, uid2) {
		t.Errorf("list --title:\n%s", out)
	}

	// update: a new password from stdin, a new title; nothing else changes
	const pw2 = "s3cret-Two!"
	out = h.ok(pw2, "record", "update", uid, "--title", "Okta admin (prod)", "--field", "password=-")
	if out != "updated "+uid+" (revision 2)\n" {
		t.Fatalf("update printed %q", out)
	}
	rec = h.getRecord(uid)
	if rec.Title != "Okta admin (prod)" || rec.Revision != 2 || rec.Folder != "Shared/Okta" || rec.Notes != "first line\nsecond line" {
		t.Fatalf("after update: %+v", rec)
	}
	if len(rec.Fields) != 3 || fieldValue(t, rec.Fields[1]) != pw2 || fieldValue(t, rec.Fields[0]) != "admin@example.com" || fieldValue(t, rec.Fields[2]) != "https://a.example" {
		t.Fatalf("fields after update: %+v", rec.Fields)
	}
	if len(rec.Custom) != 1 || fieldValue(t, rec.Custom[0]) != "prod" {
		t.Fatalf("custom after update: %+v", rec.Custom)
	}

	// history: two versions, the new one current; values only with --reveal
	out = h.ok("", "record", "history", uid)
	if strings.Contains(out, pw1) || strings.Contains(out, pw2) {
		t.Fatalf("history shows values without --reveal:\n%s", out)
	}
	if !regexp.MustCompile(`^VERSION\s+STATE\s+CREATED\s+UPDATED\n2\s+current\s+\S+\s+\S+\n1\s+previous\s+\S+\s+\S+\n$`).MatchString(out) {
		t.Fatalf("history:\n%s", out)
	}
	out = h.ok("", "record", "history", uid, "--reveal")
	if !regexp.MustCompile(`^VERSION\s+STATE\s+CREATED\s+UPDATED\s+VALUE\n2\s+current\s+\S+\s+\S+\s+` + regexp.QuoteMeta(pw2) + `\n1\s+previous\s+\S+\s+\S+\s+` + regexp.QuoteMeta(pw1) + `\n$`).MatchString(out) {
		t.Fatalf("history --reveal:\n%s", out)
	}
	var versions struct {
		List []Version `json:"list"`
	}
	if err := json.Unmarshal([]byte(h.ok("", "record", "history", uid, "-o", "json")), &versions); err != nil {
		t.Fatal(err)
	}
	if len(versions.List) != 2 || versions.List[0].Version != 2 || versions.List[0].State != "current" || versions.List[0].Value != nil {
		t.Fatalf("history -o json: %+v", versions.List)
	}

	// get by notation: a string raw, anything else as JSON
	if out := h.ok("", "get", "keeper://"+uid+"/field/password"); out != pw2+"\n" {
		t.Fatalf("get notation password: %q", out)
	}
	if out := h.ok("", "get", "keeper://Okta admin (prod)/custom_field/env"); out != "prod\n" {
		t.Fatalf("get notation by title: %q", out)
	}
	var arr []string
	if err := json.Unmarshal([]byte(h.ok("", "get", "keeper://"+uid+"/field/login[]")), &arr); err != nil || len(arr) != 1 || arr[0] != "admin@example.com" {
		t.Fatalf("get notation array: %v %v", arr, err)
	}
	var wrapped map[string]string
	if err := json.Unmarshal([]byte(h.ok("", "get", "keeper://"+uid+"/title", "-o", "json")), &wrapped); err != nil || wrapped["value"] != "Okta admin (prod)" {
		t.Fatalf("get -o json: %v %v", wrapped, err)
	}

	// delete, then the record is gone
	if out := h.ok("", "record", "delete", uid); out != "deleted "+uid+"\n" {
		t.Fatalf("delete printed %q", out)
	}
	r := h.run("", "record", "get", uid)
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), "no record") || !strings.Contains(r.err.Error(), "HTTP 404") {
		t.Fatalf("get after delete: exit %d, %v", r.code, r.err)
	}
	var del map[string]any
	if err := json.Unmarshal([]byte(h.ok("", "record", "delete", uid2, "-o", "json")), &del); err != nil || del["uid"] != uid2 || del["deleted"] != true {
		t.Fatalf("delete -o json: %v %v", del, err)
	}
	if out := h.ok("", "record", "list"); strings.Count(out, "\n") != 1 {
		t.Fatalf("list after deleting all:\n%s", out)
	}
	if out := h.ok("", "record", "list", "-o", "json"); strings.TrimSpace(out) != "{\n  \"list\": []\n}" {
		t.Fatalf("empty list -o json: %q", out)
	}
}

func TestUpdateFieldMatching(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	uid := strings.TrimSpace(h.ok("", "record", "create", "--type", "login", "--title", "T",
		"--field", "url=a", "--field", "url.admin=b", "--field", "url=c", "--custom", "env=prod"))

	h.ok("", "record", "update", uid, "--field", "url.admin=B", "--field", "url=A", "--field", "url=C", "--field", "url=D",
		"--field", "login=new", "--custom", "env=staging", "--custom", "team=ops")
	rec := h.getRecord(uid)
	want := []struct{ typ, label, val string }{
		{"url", "", "A"}, {"url", "admin", "B"}, {"url", "", "C"}, {"url", "", "D"}, {"login", "", "new"},
	}
	if len(rec.Fields) != len(want) {
		t.Fatalf("fields: %+v", rec.Fields)
	}
	for i, w := range want {
		f := rec.Fields[i]
		if f.Type != w.typ || f.Label != w.label || fieldValue(t, f) != w.val {
			t.Errorf("field %d = %s.%s=%s, want %s.%s=%s", i, f.Type, f.Label, fieldValue(t, f), w.typ, w.label, w.val)
		}
	}
	if len(rec.Custom) != 2 || rec.Custom[0].Label != "env" || fieldValue(t, rec.Custom[0]) != "staging" ||
		rec.Custom[1].Label != "team" || rec.Custom[1].Type != "text" || fieldValue(t, rec.Custom[1]) != "ops" {
		t.Fatalf("custom: %+v", rec.Custom)
	}

	// --notes "" clears the notes; an unchanged --title is kept
	h.ok("", "record", "update", uid, "--notes", "n")
	h.ok("", "record", "update", uid, "--notes", "")
	if rec := h.getRecord(uid); rec.Notes != "" || rec.Title != "T" || rec.Revision != 4 {
		t.Fatalf("after clearing notes: %+v", rec)
	}

	var upd Record
	if err := json.Unmarshal([]byte(h.ok("", "record", "update", uid, "--folder", "A/B", "-o", "json")), &upd); err != nil {
		t.Fatal(err)
	}
	if upd.UID != uid || upd.Folder != "A/B" || upd.Revision != 5 || len(upd.Fields) != 5 {
		t.Fatalf("update -o json: %+v", upd)
	}
}

func TestStaleUpdateReports409(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	uid := strings.TrimSpace(h.ok("", "record", "create", "--type", "login", "--title", "Original", "--field", "password=p1"))

	// Right after the CLI's GET of the record, someone else updates it.
	var fired bool
	h.setAfter(func(r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v1/teams/acme/records/"+uid || fired {
			return
		}
		fired = true
		h.ok("", "record", "update", uid, "--title", "Concurrent")
	})
	r := h.run("p2", "record", "update", uid, "--title", "Mine", "--field", "password=-")
	h.setAfter(nil)
	if !fired {
		t.Fatal("the concurrent update did not run")
	}
	if r.code != ExitFailed {
		t.Fatalf("stale update: exit %d (%v), want 1", r.code, r.err)
	}
	msg := r.err.Error()
	if !strings.Contains(msg, "HTTP 409") || !strings.Contains(msg, "is at revision 2, not 1") || !strings.Contains(msg, "not updated") {
		t.Fatalf("stale update message: %q", msg)
	}
	if strings.Contains(msg, "p2") {
		t.Fatalf("the message holds the password: %q", msg)
	}
	rec := h.getRecord(uid)
	if rec.Title != "Concurrent" || rec.Revision != 2 || fieldValue(t, rec.Fields[0]) != "p1" {
		t.Fatalf("the stale update changed the record: %+v", rec)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	without := func(keys ...string) map[string]string {
		env := map[string]string{}
		for k, v := range h.env {
			env[k] = v
		}
		for _, k := range keys {
			delete(env, k)
		}
		return env
	}
	secret := h.env[EnvKeySecret]
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no team", without(EnvTeam), []string{"record", "list"}, "KEYTURN_TEAM is not set"},
		{"no credentials", without(EnvKeyID, EnvKeySecret), []string{"record", "get", "x"}, "no credentials"},
		{"key id without secret", without(EnvKeySecret), []string{"get", "keeper://x/title"}, "KEYTURN_KEY_SECRET is not"},
		{"secret without key id", without(EnvKeyID), []string{"record", "list"}, "KEYTURN_KEY_ID is not"},
		{"key id not a uuid", func() map[string]string { e := without(); e[EnvKeyID] = secret; return e }(), []string{"record", "list"}, "KEYTURN_KEY_ID is not an API key id"},
		{"bad address", func() map[string]string { e := without(); e[EnvAddr] = "ftp://x"; return e }(), []string{"record", "list"}, "KEYTURN_ADDR"},
		{"missing --type", h.env, []string{"record", "create", "--title", "T"}, "--type is required"},
		{"list unknown type", h.env, []string{"record", "list", "--type", "nope"}, `--type "nope": want one of login, pamUser`},
		{"list unknown status", h.env, []string{"rotation", "list", "--status", "bogus"}, `--status "bogus": want one of queued, running, succeeded, failed, needs_attention`},
		{"missing --title", h.env, []string{"record", "create", "--type", "login"}, "--title is required"},
		{"field without =", h.env, []string{"record", "create", "--type", "login", "--title", "T", "--field", "password:hunter2"}, "type[.label]=value"},
		{"field bad type", h.env, []string{"record", "create", "--type", "login", "--title", "T", "--field", "9x=hunter2"}, "not a field type"},
		{"field empty type", h.env, []string{"record", "create", "--type", "login", "--title", "T", "--field", "=hunter2"}, "type is empty"},
		{"field empty label", h.env, []string{"record", "create", "--type", "login", "--title", "T", "--field", "url.=hunter2"}, "label after '.' is empty"},
		{"custom without label", h.env, []string{"record", "create", "--type", "login", "--title", "T", "--custom", "=hunter2"}, "label is empty"},
		{"two stdin values", h.env, []string{"record", "create", "--type", "login", "--title", "T", "--field", "password=-", "--custom", "pin=-"}, "only one"},
		{"empty stdin", h.env, []string{"record", "create", "--type", "login", "--title", "T", "--field", "password=-"}, "standard input is empty"},
		{"update bad field", h.env, []string{"record", "update", "x", "--field", "hunter2"}, "type[.label]=value"},
		{"update nothing", h.env, []string{"record", "update", "x"}, "nothing to change"},
		{"bad output", h.env, []string{"record", "list", "-o", "xml"}, "use table, json or yaml"},
		{"get without uid", h.env, []string{"record", "get"}, "accepts 1 arg"},
		{"list with args", h.env, []string{"record", "list", "extra"}, "unknown command"},
		{"unknown flag", h.env, []string{"record", "get", "x", "--nope"}, "unknown flag"},
		{"flag without value", h.env, []string{"record", "create", "--type"}, "needs an argument"},
		{"empty ref", h.env, []string{"get", " "}, "reference is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runWith(c.env, "", c.args...)
			if r.code != ExitBadUsage {
				t.Fatalf("exit %d (%v), want 2", r.code, r.err)
			}
			if !strings.Contains(r.err.Error(), c.want) {
				t.Fatalf("error %q lacks %q", r.err, c.want)
			}
			if strings.Contains(r.err.Error(), "hunter2") || strings.Contains(r.err.Error(), secret) {
				t.Fatalf("error %q holds a secret", r.err)
			}
		})
	}
	// Nothing was created by any of them.
	if out := h.ok("", "record", "list"); strings.Count(out, "\n") != 1 {
		t.Fatalf("usage errors created records:\n%s", out)
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	r := h.run("", "record", "get", "nope")
	if r.code != ExitFailed || r.err.Error() != `no record "nope" (HTTP 404)` {
		t.Fatalf("unknown uid: exit %d, %q", r.code, r.err)
	}
	var ae *APIError
	if !errors.As(r.err, &ae) || ae.Status != http.StatusNotFound || ae.Code != "not_found" {
		t.Fatalf("unknown uid: error %T %+v, want an *APIError with a code", r.err, r.err)
	}
	for _, args := range [][]string{{"record", "delete", "nope"}, {"record", "history", "nope"}, {"record", "update", "nope", "--title", "x"}} {
		if r := h.run("", args...); r.code != ExitFailed || !strings.Contains(r.err.Error(), `no record "nope"`) {
			t.Errorf("%v: exit %d, %v", args, r.code, r.err)
		}
	}

	// the server's validation message comes through
	r = h.run("", "record", "create", "--type", "bogus", "--title", "T")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), `unknown record type "bogus"`) || !strings.Contains(r.err.Error(), "HTTP 400") {
		t.Fatalf("bad type: exit %d, %v", r.code, r.err)
	}
	r = h.run("", "get", "keeper://nope/field/password")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), "nope") {
		t.Fatalf("bad notation: exit %d, %v", r.code, r.err)
	}

	// wrong key secret: exit 1, the API's message, no secret in it
	env := map[string]string{}
	for k, v := range h.env {
		env[k] = v
	}
	env[EnvKeySecret] = "wrong-secret-value"
	r = runWith(env, "", "record", "list")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), "invalid or expired credentials (HTTP 401)") {
		t.Fatalf("bad secret: exit %d, %v", r.code, r.err)
	}
	if strings.Contains(r.err.Error(), "wrong-secret-value") {
		t.Fatalf("the error holds the secret: %v", r.err)
	}

	// a bad token: same, and the token is not shown
	r = runWith(map[string]string{EnvAddr: h.srv.URL, EnvTeam: "acme", EnvToken: "kt1.not-a-real-token"}, "", "record", "list")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), "HTTP 401") || strings.Contains(r.err.Error(), "not-a-real-token") {
		t.Fatalf("bad token: exit %d, %v", r.code, r.err)
	}

	// no server: exit 1
	r = runWith(map[string]string{EnvAddr: "http://127.0.0.1:1", EnvTeam: "acme", EnvToken: "kt1.x"}, "", "record", "list")
	if r.code != ExitFailed || strings.Contains(r.err.Error(), "kt1.x") {
		t.Fatalf("no server: exit %d, %v", r.code, r.err)
	}
}

func TestBearerTokenFromEnv(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := map[string]string{EnvAddr: h.srv.URL + "/", EnvTeam: "acme", EnvToken: h.token()}
	r := runWith(env, "", "record", "create", "--type", "login", "--title", "via token")
	if r.code != ExitOK {
		t.Fatalf("create with KEYTURN_TOKEN: %v", r.err)
	}
	if rec := h.getRecord(strings.TrimSpace(r.out)); rec.Title != "via token" {
		t.Fatalf("record: %+v", rec)
	}
	// another team's name with this token is refused by the server
	env[EnvTeam] = "other"
	if r := runWith(env, "", "record", "list"); r.code != ExitFailed || !strings.Contains(r.err.Error(), "HTTP 401") {
		t.Fatalf("wrong team: exit %d, %v", r.code, r.err)
	}
}

func TestCommandsReadProcessEnvironment(t *testing.T) {
	h := newHarness(t)
	for k, v := range h.env {
		t.Setenv(k, v)
	}
	t.Setenv(EnvToken, "")
	root := newTestRoot()
	var out strings.Builder
	root.SetOut(&out)
	root.SetArgs([]string{"record", "list"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "UID") {
		t.Fatalf("list: %q", out.String())
	}
	// fresh commands each call: flags set in one do not leak into the next
	a, b := Commands(), Commands()
	if a[0] == b[0] {
		t.Fatal("Commands returned the same command twice")
	}
}

func TestListFollowsNextLinks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.token()
	const n = 103 // the API's default page is 100
	for i := range n {
		h.api("POST", "/v1/teams/acme/records", tok, map[string]any{"type": "general", "title": fmt.Sprintf("r%03d", i)}, nil, http.StatusCreated)
	}
	var pages int
	h.setAfter(func(r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v1/teams/acme/records" {
			pages++
		}
	})
	var listed struct {
		List []Summary `json:"list"`
	}
	if err := json.Unmarshal([]byte(h.ok("", "record", "list", "-o", "json")), &listed); err != nil {
		t.Fatal(err)
	}
	h.setAfter(nil)
	if len(listed.List) != n || pages != 2 {
		t.Fatalf("listed %d records in %d pages, want %d in 2", len(listed.List), pages, n)
	}
	seen := map[string]bool{}
	for _, s := range listed.List {
		seen[s.Title] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct records, want %d", len(seen), n)
	}
	if out := h.ok("", "record", "list"); strings.Count(out, "\n") != n+1 {
		t.Fatalf("table has %d lines, want %d", strings.Count(out, "\n"), n+1)
	}
}

func TestListRefusesLinkToAnotherServer(t *testing.T) {
	t.Parallel()
	var authSeen []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authSeen = append(authSeen, r.Header.Get("Authorization"))
		_, _ = w.Write([]byte(`{"list":[]}`))
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "<"+other.URL+`/v1/teams/acme/records?offset=100>; rel="next"`)
		_, _ = w.Write([]byte(`{"list":[{"uid":"a","type":"login","title":"A","folder":"","revision":1}]}`))
	}))
	defer srv.Close()
	r := runWith(map[string]string{EnvAddr: srv.URL, EnvTeam: "acme", EnvToken: "tok"}, "", "record", "list")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), "another server") {
		t.Fatalf("exit %d, %v", r.code, r.err)
	}
	if len(authSeen) != 0 {
		t.Fatalf("the other server was called: %v", authSeen)
	}
}

func TestNextTarget(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		`</a?offset=100&count=100>; rel="next"`:   "/a?offset=100&count=100",
		`</first>; rel="first", </n>; rel="next"`: "/n",
		`</p>; rel=prev,</n>; rel="next last"`:    "/n",
		`</p>; rel="prev"`:                        "",
		``:                                        "",
		`garbage`:                                 "",
		`<https://x.example/n>; title="a, b"; REL="Next"`:   "https://x.example/n",
		`</n>; rel="nextish"`:                               "",
		`</a>; rel="prev"` + "\t" + `, </b>; rel="next"`:    "/b",
		`</n>;rel=next`:                                     "/n",
		`</unterminated; rel="next"`:                        "",
		`</x>; rel="alternate", <https://h/y>; rel="next",`: "https://h/y",
	}
	for in, want := range cases {
		if got := nextTarget([]string{in}); got != want {
			t.Errorf("nextTarget(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClean(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain":          "plain",
		"two\nlines":     `"two\nlines"`,
		"esc\x1b[31mred": `"esc\x1b[31mred"`,
		"tab\there":      `"tab\there"`,
		"caf\xe9":        `"caf\xe9"`,
		" padded ":       `" padded "`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %s, want %s", in, got, want)
		}
	}
}
