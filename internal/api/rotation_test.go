package api_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/api"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv"
)

type runView struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	State   string `json:"state"`
	ExecLog []struct {
		Name       string `json:"name"`
		ReturnCode int    `json:"return_code"`
		Stdout     string `json:"stdout"`
	} `json:"exec_log"`
	Error *apiError `json:"error"`
}

func scriptsOnlyUser(t *testing.T, env *testenv.Env, script string) record {
	t.Helper()
	rec := create(t, env, pamUser("rotating", "start-pw"))
	if st := env.Do(t, "PUT", "/v1/teams/acme/records/"+rec.UID+"/rotation", map[string]any{
		"method": "scripts_only", "complexity": map[string]any{"length": 24, "caps": 2, "lowercase": 2, "digits": 2, "special": 0},
	}, nil); st != http.StatusOK {
		t.Fatalf("rotation settings: %d", st)
	}
	if st := env.Do(t, "POST", "/v1/teams/acme/records/"+rec.UID+"/scripts", map[string]any{
		"name": "rotate.sh", "content_base64": base64.StdEncoding.EncodeToString([]byte(script)),
	}, nil); st != http.StatusCreated {
		t.Fatalf("add script: %d", st)
	}
	return rec
}

func TestRotateOverTheAPI(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := scriptsOnlyUser(t, env, "#!/bin/sh\necho rotated\n")
	var run runView
	if st := env.Do(t, "POST", "/v1/teams/acme/records/"+rec.UID+"/rotate?wait=30s", nil, &run); st != http.StatusOK {
		t.Fatalf("rotate?wait: %d", st)
	}
	if run.Status != "succeeded" || run.State != "succeeded" || len(run.ExecLog) != 1 || run.ExecLog[0].Stdout != "rotated\n" {
		t.Fatalf("run %+v", run)
	}
	var val struct {
		Value string `json:"value"`
	}
	env.Do(t, "GET", "/v1/teams/acme/notation?ref=keeper://"+rec.UID+"/field/password", nil, &val)
	if len(val.Value) != 24 || val.Value == "start-pw" || strings.ContainsAny(val.Value, "!@#$%^") {
		t.Fatalf("new password %q does not follow the complexity", val.Value)
	}
	var info struct {
		State          string `json:"state"`
		LastRotationID string `json:"last_rotation_id"`
		Method         string `json:"method"`
	}
	env.Do(t, "GET", "/v1/teams/acme/records/"+rec.UID+"/rotation", nil, &info)
	if info.State != "succeeded" || info.LastRotationID != run.ID || info.Method != "scripts_only" {
		t.Fatalf("rotation info %+v", info)
	}
	var got runView
	if st := env.Do(t, "GET", "/v1/teams/acme/rotations/"+run.ID, nil, &got); st != 200 || got.ID != run.ID {
		t.Fatalf("get run: %d %+v", st, got)
	}
	var events struct {
		List []struct {
			Type      string `json:"type"`
			RecordUID string `json:"record_uid"`
		} `json:"list"`
	}
	env.Do(t, "GET", "/v1/teams/acme/audit_events", nil, &events)
	found := false
	for _, e := range events.List {
		found = found || (e.Type == "record_rotation_on_demand_ok" && e.RecordUID == rec.UID)
	}
	if !found {
		t.Fatalf("no record_rotation_on_demand_ok event: %+v", events.List)
	}
}

func TestRotateWhileActiveReturnsTheActiveRun(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := scriptsOnlyUser(t, env, "#!/bin/sh\nsleep 1\n")
	var first, second struct {
		RotationID string `json:"rotation_id"`
		Status     string `json:"status"`
	}
	if st := env.Do(t, "POST", "/v1/teams/acme/records/"+rec.UID+"/rotate", nil, &first); st != http.StatusAccepted {
		t.Fatalf("first rotate: %d", st)
	}
	if st := env.Do(t, "POST", "/v1/teams/acme/records/"+rec.UID+"/rotate", nil, &second); st != http.StatusOK || second.RotationID != first.RotationID {
		t.Fatalf("second rotate: %d %+v, first %+v", st, second, first)
	}
	wantError(t, env, "DELETE", "/v1/teams/acme/records/"+rec.UID, env.Token, nil, 409, "rotation_active")
	var run runView
	env.Do(t, "POST", "/v1/teams/acme/records/"+rec.UID+"/rotate?wait=30s", nil, &run)
	var runs struct {
		List []runView `json:"list"`
	}
	env.Do(t, "GET", "/v1/teams/acme/rotations?record_uid="+rec.UID, nil, &runs)
	if len(runs.List) < 1 || runs.List[len(runs.List)-1].ID != first.RotationID {
		t.Fatalf("runs %+v", runs.List)
	}
}

func TestRotationSettingsValidation(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := create(t, env, pamUser("u", "pw"))
	login := create(t, env, map[string]any{"type": "login", "title": "not a pamUser"})
	path := "/v1/teams/acme/records/" + rec.UID + "/rotation"
	for _, tc := range []struct {
		body any
		code string
	}{
		{map[string]any{}, "missing_required_field"},
		{map[string]any{"method": "magic"}, "invalid_request"},
		{map[string]any{"method": "general"}, "invalid_request"},
		{map[string]any{"method": "general", "connector": "okta"}, "invalid_request"},
		{map[string]any{"method": "scripts_only", "verify_with": "kerberos"}, "invalid_request"},
		{map[string]any{"method": "scripts_only", "complexity": map[string]any{"length": 6, "caps": 1}}, "invalid_complexity"},
		{map[string]any{"method": "scripts_only", "configuration_uid": login.UID}, "invalid_request"},
		{map[string]any{"method": "scripts_only", "schedule": map[string]any{"type": "SOMETIMES"}}, "invalid_schedule"},
		{map[string]any{"method": "scripts_only", "schedule": map[string]any{"type": "CRON", "cron": "0 */5 * * * ?"}}, "invalid_schedule"},
		{map[string]any{"method": "scripts_only", "window": "soon"}, "invalid_request"},
	} {
		wantError(t, env, "PUT", path, env.Token, tc.body, 400, tc.code)
	}
	wantError(t, env, "PUT", "/v1/teams/acme/records/"+login.UID+"/rotation", env.Token, map[string]any{"method": "scripts_only"}, 400, "invalid_request")
	wantError(t, env, "POST", "/v1/teams/acme/records/"+rec.UID+"/rotate", env.Token, nil, 409, "not_configured")
	wantError(t, env, "GET", path, env.Token, nil, 404, "not_found")
	wantError(t, env, "POST", "/v1/teams/acme/records/"+rec.UID+"/rotate?wait=forever", env.Token, nil, 400, "invalid_request")
	wantError(t, env, "POST", "/v1/teams/acme/records/"+login.UID+"/scripts", env.Token,
		map[string]any{"name": "x", "content_base64": "eA=="}, 400, "invalid_request")
	wantError(t, env, "POST", "/v1/teams/acme/records/"+rec.UID+"/scripts", env.Token,
		map[string]any{"name": "x", "content_base64": "not base64!"}, 400, "invalid_request")
}

// Rotation settings carry a revision: a PUT that names an old one gets 409 stale_revision and
// changes nothing; one without a revision writes unconditionally.
func TestRotationSettingsRevision(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := create(t, env, pamUser("u", "pw"))
	path := "/v1/teams/acme/records/" + rec.UID + "/rotation"
	type settings struct {
		Method   string `json:"method"`
		Window   string `json:"window"`
		Revision int64  `json:"revision"`
	}
	wantError(t, env, "PUT", path, env.Token, map[string]any{"method": "scripts_only", "revision": 1}, 409, "stale_revision")
	var first, second, info settings
	env.Do(t, "PUT", path, map[string]any{"method": "scripts_only"}, &first)
	if first.Revision != 1 {
		t.Fatalf("first save: revision %d, want 1", first.Revision)
	}
	// Two admins read revision 1; the first to write wins, the second is told.
	env.Do(t, "PUT", path, map[string]any{"method": "scripts_only", "window": "2h", "revision": 1}, &second)
	if second.Revision != 2 || second.Window != "2h" {
		t.Fatalf("second save: %+v, want revision 2 with window 2h", second)
	}
	wantError(t, env, "PUT", path, env.Token, map[string]any{"method": "scripts_only", "window": "30m", "revision": 1}, 409, "stale_revision")
	env.Do(t, "GET", path, nil, &info)
	if info.Revision != 2 || info.Window != "2h" {
		t.Fatalf("after the refused write: %+v, want revision 2 with window 2h", info)
	}
	env.Do(t, "PUT", path, map[string]any{"method": "scripts_only", "window": "30m"}, &info)
	if info.Revision != 3 || info.Window != "30m" {
		t.Fatalf("unconditional write: %+v, want revision 3 with window 30m", info)
	}
}

// While the audit trail cannot be written, no secret is revealed: reads answer 503
// audit_unavailable without the value. Once it can be written again, reads work, and every
// read that revealed the secret has its event: none is dropped while writing fails.
func TestSecretsStayHiddenWhileAuditFails(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := create(t, env, pamUser("guarded", "guarded-secret-pw"))
	raw, err := sql.Open("sqlite", "file:"+store.SQLitePath(env.Dir)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	notation := "/v1/teams/acme/notation?ref=keeper://" + rec.UID + "/field/password"
	revealed := 0
	read := func() int {
		t.Helper()
		resp, body := env.Raw(t, "GET", notation, env.Token, nil)
		switch {
		case resp.StatusCode == http.StatusOK:
			revealed++
		case strings.Contains(string(body), "guarded-secret-pw"):
			t.Fatalf("a refused read revealed the secret: %d %s", resp.StatusCode, body)
		}
		return resp.StatusCode
	}
	until := func(what string, want int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); read() != want; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("reads never answered %d %s", want, what)
			}
		}
	}

	if _, err := raw.Exec(`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END`); err != nil {
		t.Fatal(err)
	}
	// Reads queued before the writer meets the failure still answer; then they are refused.
	until("while the audit trail cannot be written", http.StatusServiceUnavailable)
	wantError(t, env, "GET", "/v1/teams/acme/records/"+rec.UID, env.Token, nil, 503, "audit_unavailable")
	wantError(t, env, "GET", "/v1/teams/acme/records/"+rec.UID+"/versions?reveal=true", env.Token, nil, 503, "audit_unavailable")

	if _, err := raw.Exec(`DROP TRIGGER refuse_audit`); err != nil {
		t.Fatal(err)
	}
	until("after the audit trail recovered", http.StatusOK)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var events struct {
			List []struct {
				Type string `json:"type"`
			} `json:"list"`
		}
		env.Do(t, "GET", "/v1/teams/acme/audit_events?limit=1000", nil, &events)
		n := 0
		for _, e := range events.List {
			if e.Type == "record_secret_read" {
				n++
			}
		}
		if n == revealed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d secret-read events for %d reads that revealed the secret", n, revealed)
		}
	}
	if err := env.Services.Audit.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A change and its audit event are one transaction: when the event cannot be written, the
// change is not made either.
func TestChangesAndTheirEventsCommitTogether(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	raw, err := sql.Open("sqlite", "file:"+store.SQLitePath(env.Dir)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	count := func(q string) (n int) {
		t.Helper()
		if err := raw.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := raw.Exec(`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END`); err != nil {
		t.Fatal(err)
	}
	wantError(t, env, "POST", "/v1/teams/acme/records", env.Token, pamUser("unaudited", "pw"), 500, "internal")
	wantError(t, env, "POST", "/v1/teams/acme/service_users", env.Token, map[string]any{"name": "unaudited-user"}, 500, "internal")
	if n := count(`SELECT COUNT(*) FROM records`); n != 0 {
		t.Fatalf("%d records stored although their audit events were not", n)
	}
	if n := count(`SELECT COUNT(*) FROM service_users WHERE name = 'unaudited-user'`); n != 0 {
		t.Fatal("a service user was stored although its audit event was not")
	}
	if _, err := raw.Exec(`DROP TRIGGER refuse_audit`); err != nil {
		t.Fatal(err)
	}
	rec := create(t, env, pamUser("audited", "pw"))
	if n := count(`SELECT COUNT(*) FROM audit_events WHERE type = 'record_created' AND record_uid = '` + rec.UID + `'`); n != 1 {
		t.Fatalf("%d record_created events in the same commit as the record, want 1", n)
	}
}

// TestAuditTrail: secret reads and changes are in the audit trail, with who did them, and no
// secret in it.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := create(t, env, pamUser("audited", "audited-secret-pw"))
	env.Do(t, "GET", "/v1/teams/acme/records/"+rec.UID, nil, nil)
	env.Do(t, "GET", "/v1/teams/acme/notation?ref=keeper://"+rec.UID+"/field/password", nil, nil)
	env.Do(t, "GET", "/v1/teams/acme/records/"+rec.UID+"/versions?reveal=true", nil, nil)
	env.Do(t, "POST", "/v1/teams/acme/service_users", map[string]any{"name": "audited-user"}, nil)
	// Scripts receive passwords: attaching, revealing their input and removing them are audited.
	env.Do(t, "PUT", "/v1/teams/acme/records/"+rec.UID+"/rotation", map[string]any{"method": "scripts_only"}, nil)
	var script struct {
		ID string `json:"id"`
	}
	env.Do(t, "POST", "/v1/teams/acme/records/"+rec.UID+"/scripts", map[string]any{
		"name": "rotate.sh", "content_base64": base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\nexit 0\n"))}, &script)
	env.Do(t, "GET", "/v1/teams/acme/records/"+rec.UID+"/script_params?reveal=true", nil, nil)
	env.Do(t, "GET", "/v1/teams/acme/records/"+rec.UID+"/script_params", nil, nil)    // masked: not a secret read
	env.Do(t, "POST", "/v1/teams/acme/records/"+rec.UID+"/rotate?wait=30s", nil, nil) // who asked is recorded
	if st := env.Do(t, "DELETE", "/v1/teams/acme/records/"+rec.UID+"/scripts/"+script.ID, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete script: %d", st)
	}
	env.Do(t, "DELETE", "/v1/teams/acme/records/"+rec.UID, nil, nil)
	want := map[string]int{"record_created": 1, "record_secret_read": 4, "service_user_created": 1, "record_deleted": 1,
		"record_rotation_created": 1, "record_rotation_script_added": 1, "record_rotation_script_deleted": 1,
		"record_rotation_requested": 1, "record_rotation_on_demand_ok": 1}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, raw := env.Raw(t, "GET", "/v1/teams/acme/audit_events?limit=1000", env.Token, nil)
		var events struct {
			List []struct {
				Type      string
				Actor     string
				RecordUID string `json:"record_uid"`
				Details   map[string]any
			} `json:"list"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(raw, &events) != nil {
			t.Fatalf("audit events: %d %s", resp.StatusCode, raw)
		}
		got := map[string]int{}
		for _, e := range events.List {
			got[e.Type]++
		}
		done := true
		for typ, n := range want {
			done = done && got[typ] == n
		}
		if done {
			if strings.Contains(string(raw), "audited-secret-pw") {
				t.Fatal("the audit trail holds a password")
			}
			if !strings.Contains(string(raw), `"actor":"admin"`) || !strings.Contains(string(raw), env.Creds.KeyID) {
				t.Fatalf("events do not say who: %s", raw)
			}
			if err := env.Services.Audit.Verify(context.Background()); err != nil {
				t.Fatal(err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := scriptsOnlyUser(t, env, "#!/bin/sh\nexit 0\n")
	env.Do(t, "POST", "/v1/teams/acme/records/"+rec.UID+"/rotate?wait=30s", nil, nil)
	resp, raw := env.Raw(t, "GET", "/metrics", "", nil)
	body := string(raw)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`keyturn_rotations_total{status="succeeded",trigger="on_demand"} 1`,
		`keyturn_http_requests_total{code="201",route="POST /v1/teams/{team}/records"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The writer's counters have counted the writes above (the record, its settings, the run).
	for _, name := range []string{"keyturn_store_commits_total", "keyturn_store_transactions_total", "keyturn_store_writer_busy_seconds_total"} {
		var value float64
		for _, line := range strings.Split(body, "\n") {
			if rest, ok := strings.CutPrefix(line, name+" "); ok {
				value, _ = strconv.ParseFloat(rest, 64)
			}
		}
		if value <= 0 {
			t.Errorf("/metrics: %s is %v, want a positive count", name, value)
		}
	}
	if strings.Contains(body, rec.UID) {
		t.Fatal("a record uid is a metric label")
	}
}

// TestOpenAPIDocument: every route is in the document, with a summary, its roles, and only
// schemas that exist.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	resp, raw := env.Raw(t, "GET", "/openapi.json", "", nil)
	var doc struct {
		OpenAPI    string                               `json:"openapi"`
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(raw, &doc) != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("/openapi.json: %d %.200s", resp.StatusCode, raw)
	}
	for _, rt := range api.Routes() {
		operation, ok := doc.Paths[rt.Path][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("%s %s is not in the document", rt.Method, rt.Path)
			continue
		}
		if s, _ := operation["summary"].(string); s == "" {
			t.Errorf("%s %s has no summary", rt.Method, rt.Path)
		}
		if _, hasRoles := operation["x-keyturn-roles"]; hasRoles == rt.Public {
			t.Errorf("%s %s: roles documented %v, public %v", rt.Method, rt.Path, hasRoles, rt.Public)
		}
	}
	for _, m := range regexp.MustCompile(`"#/components/schemas/([A-Za-z]+)"`).FindAllStringSubmatch(string(raw), -1) {
		if _, ok := doc.Components.Schemas[m[1]]; !ok {
			t.Errorf("the document refers to a missing schema %s", m[1])
		}
	}
}

// TestRotateWaitValues checks ?wait=: a wait too short for the run (1ns, 1ms) answers 202 with
// the run, which goes on and succeeds; 0 does not wait; a negative, unparsable, empty or
// unitless wait, or one longer than api.MaxWait, answers 400 {code,message} naming the
// problem and starts nothing.
func TestRotateWaitValues(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := scriptsOnlyUser(t, env, "#!/bin/sh\nsleep 0.2\necho rotated\n")
	path := "/v1/teams/acme/records/" + rec.UID + "/rotate"
	for _, wait := range []string{"1ns", "1ms", "0", "0s"} {
		var started struct {
			RotationID string `json:"rotation_id"`
			Status     string `json:"status"`
		}
		resp, raw := env.Raw(t, "POST", path+"?wait="+wait, env.Token, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("wait=%s: %d %s, want 202", wait, resp.StatusCode, raw)
		}
		if err := json.Unmarshal(raw, &started); err != nil || started.RotationID == "" || started.Status == "" {
			t.Fatalf("wait=%s: body %s: %v", wait, raw, err)
		}
		var run runView
		if st := env.Do(t, "POST", path+"?wait=30s", nil, &run); st != http.StatusOK || run.ID != started.RotationID || run.Status != "succeeded" {
			t.Fatalf("wait=%s: the run did not go on: %d %+v (started %+v)", wait, st, run, started)
		}
	}
	var before struct {
		List []runView `json:"list"`
	}
	env.Do(t, "GET", "/v1/teams/acme/rotations?record_uid="+rec.UID, nil, &before)
	for wait, says := range map[string]string{
		"-1s":     "negative",
		"forever": "duration",
		"":        "duration",
		"30":      "duration",
		"6m":      "at most 5m0s",
		"8760h":   "at most 5m0s",
	} {
		e := wantError(t, env, "POST", path+"?wait="+wait, env.Token, nil, 400, "invalid_request")
		if !strings.Contains(e.Message, "wait") || !strings.Contains(e.Message, says) {
			t.Errorf("wait=%q: message %q does not say %q", wait, e.Message, says)
		}
	}
	var after struct {
		List []runView `json:"list"`
	}
	env.Do(t, "GET", "/v1/teams/acme/rotations?record_uid="+rec.UID, nil, &after)
	if len(after.List) != len(before.List) {
		t.Fatalf("a refused wait started a run: %d runs, then %d", len(before.List), len(after.List))
	}
}
