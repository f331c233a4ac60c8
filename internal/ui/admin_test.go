package ui_test

import (
	"bytes"
	"database/sql"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv"
	"github.com/keyturn/keyturn/internal/ui"
)

// createRecord creates a login record with a password through the API and returns its uid.
func createRecord(t *testing.T, env *testenv.Env, title, folder, password string) string {
	t.Helper()
	var rec record
	if st := env.Do(t, "POST", "/v1/teams/acme/records", map[string]any{
		"type": "login", "title": title, "folder": folder,
		"fields": []map[string]any{{"type": "password", "value": []string{password}}},
	}, &rec); st != http.StatusCreated {
		t.Fatalf("create record %s: %d", title, st)
	}
	return rec.UID
}

var auditRowRE = regexp.MustCompile(`<tr data-seq="(\d+)" data-type="([^"]*)" data-actor="([^"]*)" data-record="([^"]*)">`)

type auditRow struct {
	seq                  string
	typ, actor, recordID string
}

// auditRows reads the events an audit page lists, in the order shown.
func auditRows(t *testing.T, p page) []auditRow {
	t.Helper()
	if p.status != http.StatusOK {
		t.Fatalf("audit page: %d %s", p.status, p.body)
	}
	var out []auditRow
	for _, m := range auditRowRE.FindAllStringSubmatch(p.body, -1) {
		out = append(out, auditRow{seq: m[1], typ: m[2], actor: m[3], recordID: m[4]})
	}
	return out
}

// errorCode is the code of an error page (data-code), "" when the page is not one.
func errorCode(p page) string {
	m := regexp.MustCompile(`data-code="([^"]*)"`).FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestAuditPageRoles: only a security_admin reads the audit trail and verifies the chain, as
// the API decides; one limited to folders sees only the events of records in them and may not
// verify (folder_limited), and the nav links only to the pages the caller may open.
func TestAuditPageRoles(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	inside := createRecord(t, env, "audit-inside", "Apps", "Audit-Inside-Pw-1")
	outside := createRecord(t, env, "audit-outside", "Ops", "Audit-Outside-Pw-1")
	pam := newUser(t, env, "pam-only", []string{"pam_admin"}, nil)
	res := newUser(t, env, "res-only", []string{"resource_admin"}, nil)
	sec := newUser(t, env, "sec-all", []string{"security_admin"}, nil)
	secApps := newUser(t, env, "sec-apps", []string{"security_admin"}, []string{"Apps"})

	if p := newBrowser(t, env.Server.URL).get("/ui/audit"); p.status != http.StatusSeeOther ||
		!strings.HasPrefix(p.header.Get("Location"), "/ui/signin") {
		t.Fatalf("anonymous audit page: %d %s", p.status, p.header.Get("Location"))
	}
	for name, k := range map[string]apiKey{"pam_admin": pam, "resource_admin": res} {
		b := mustSignIn(t, env, k.ID, k.Secret)
		for _, path := range []string{"/ui/audit", "/ui/audit/verify", "/ui/audit/verify?chain=vault"} {
			if p := b.get(path); p.status != http.StatusForbidden || errorCode(p) != "forbidden" || strings.Contains(p.body, "audit-events") {
				t.Errorf("%s GET %s: %d %s", name, path, p.status, errorCode(p))
			}
		}
		if p := b.get("/ui/records"); strings.Contains(p.body, `id="nav-audit"`) {
			t.Errorf("%s sees the audit trail in the nav", name)
		}
	}

	b := mustSignIn(t, env, sec.ID, sec.Secret)
	nav := b.get("/ui/records")
	if !strings.Contains(nav.body, `id="nav-audit"`) || strings.Contains(nav.body, `id="nav-service-users"`) {
		t.Fatalf("security_admin's nav is wrong")
	}
	seen := map[string]bool{}
	for _, row := range auditRows(t, b.get("/ui/audit")) {
		seen[row.recordID] = true
	}
	if !seen[inside] || !seen[outside] {
		t.Fatalf("a security_admin without folder limit misses events: %v", seen)
	}
	if p := b.get("/ui/audit/verify"); p.status != http.StatusOK || !strings.Contains(p.body, `data-ok="true"`) {
		t.Fatalf("security_admin verify: %d", p.status)
	}

	limited := mustSignIn(t, env, secApps.ID, secApps.Secret)
	rows := auditRows(t, limited.get("/ui/audit"))
	if len(rows) == 0 {
		t.Fatalf("a folder-limited security_admin sees no event")
	}
	for _, row := range rows {
		if row.recordID != inside {
			t.Errorf("a caller limited to Apps sees event %s %s of record %q", row.seq, row.typ, row.recordID)
		}
	}
	if p := limited.get("/ui/audit?record=" + outside); len(auditRows(t, p)) != 0 {
		t.Errorf("a caller limited to Apps finds the events of a record outside it by uid")
	}
	if p := limited.get("/ui/audit/verify"); p.status != http.StatusForbidden || errorCode(p) != "folder_limited" {
		t.Errorf("folder-limited verify: %d %s", p.status, errorCode(p))
	}
	if p := limited.get("/ui/audit"); strings.Contains(p.body, `id="audit-verify"`) {
		t.Errorf("a folder-limited caller is offered the verify button")
	}
}

// TestAuditPageFilters: the type, record, actor and time filters each narrow the list as they
// say, newest first, and the pages of a long trail follow one another without a gap or overlap.
func TestAuditPageFilters(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	start := time.Now().UTC().Add(-time.Minute)
	first := createRecord(t, env, "filter-first", "Shared", "Filter-First-Pw")
	second := createRecord(t, env, "filter-second", "Shared", "Filter-Second-Pw")
	pam := newUser(t, env, "filter-pam", []string{"pam_admin"}, nil)
	if st := env.Do(t, "POST", "/v1/teams/acme/records", map[string]any{"type": "login", "title": "by-admin"}, nil); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}
	tok := env.TokenFor(t, "acme", pam.ID, pam.Secret)
	if resp, raw := env.Raw(t, "POST", "/v1/teams/acme/records", tok, map[string]any{"type": "login", "title": "made-by-pam"}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create as pam: %d %s", resp.StatusCode, raw)
	}
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())

	all := auditRows(t, b.get("/ui/audit"))
	if len(all) < 6 {
		t.Fatalf("only %d events listed", len(all))
	}
	for i := 1; i < len(all); i++ {
		var a, c int
		fmt.Sscan(all[i-1].seq, &a)
		fmt.Sscan(all[i].seq, &c)
		if a <= c {
			t.Fatalf("not newest first: %s before %s", all[i-1].seq, all[i].seq)
		}
	}

	check := func(query string, want func(auditRow) bool, min int) {
		t.Helper()
		rows := auditRows(t, b.get("/ui/audit?"+query))
		if len(rows) < min {
			t.Errorf("?%s: %d events, want at least %d", query, len(rows), min)
		}
		for _, r := range rows {
			if !want(r) {
				t.Errorf("?%s lists %+v", query, r)
			}
		}
	}
	check("type=service_user_created", func(r auditRow) bool { return r.typ == "service_user_created" }, 1)
	check("type=record_created", func(r auditRow) bool { return r.typ == "record_created" }, 4)
	check("record="+first, func(r auditRow) bool { return r.recordID == first }, 1)
	check("record="+url.QueryEscape("filter-second"), func(r auditRow) bool { return r.recordID == second }, 1)
	check("actor=filter-pam", func(r auditRow) bool { return r.actor == "filter-pam" && r.typ == "record_created" }, 1)
	check("actor=filter-pam&type=service_user_created", func(auditRow) bool { return false }, 0)
	check("since="+start.Format("2006-01-02T15:04"), func(auditRow) bool { return true }, len(all))
	check("since="+url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)), func(auditRow) bool { return false }, 0)
	check("until="+start.Format("2006-01-02T15:04"), func(auditRow) bool { return false }, 0)
	createRecord(t, env, "dup", "Shared", "Dup-Pw-1")
	createRecord(t, env, "dup", "Other", "Dup-Pw-2")
	if p := b.get("/ui/audit?record=dup"); p.status != http.StatusBadRequest || errorCode(p) != "ambiguous_title" {
		t.Errorf("a title two records share: %d %s", p.status, errorCode(p))
	}
	check("record=deleted-or-unknown-uid", func(auditRow) bool { return false }, 0)
	if p := b.get("/ui/audit?type=not_a_type"); p.status != http.StatusBadRequest {
		t.Errorf("an unknown type: %d", p.status)
	}
	if p := b.get("/ui/audit?since=yesterday"); p.status != http.StatusBadRequest {
		t.Errorf("an unreadable time: %d", p.status)
	}

	// 60 more events: the trail spans two pages of 50, which follow one another.
	for i := range 60 {
		createRecord(t, env, fmt.Sprintf("page-%02d", i), "Paged", "Paged-Pw")
	}
	p1 := b.get("/ui/audit?type=record_created")
	rows1 := auditRows(t, p1)
	older := regexp.MustCompile(`id="audit-older" href="([^"]+)"`).FindStringSubmatch(p1.body)
	if len(rows1) != 50 || older == nil {
		t.Fatalf("first page: %d events, older link %v", len(rows1), older)
	}
	next := strings.ReplaceAll(older[1], "&amp;", "&")
	if !strings.Contains(next, "type=record_created") {
		t.Fatalf("the next page drops the filter: %s", next)
	}
	rows2 := auditRows(t, b.get(next))
	if len(rows2) != 66-50 {
		t.Fatalf("second page: %d events, want %d", len(rows2), 66-50)
	}
	var last, firstOf2 int
	fmt.Sscan(rows1[49].seq, &last)
	fmt.Sscan(rows2[0].seq, &firstOf2)
	if firstOf2 >= last {
		t.Fatalf("the pages overlap: %d then %d", last, firstOf2)
	}
}

// TestAuditVerifyShowsOkAndTheFirstBrokenLink runs the check of GET …/audit/verify from the
// page: ok with the head, then, after an event is altered in the database, the first broken
// link and why, without the secret written into the altered event.
func TestAuditVerifyShowsOkAndTheFirstBrokenLink(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	var uids []string
	for i := range 3 {
		uids = append(uids, createRecord(t, env, fmt.Sprintf("chain-%d", i), "Shared", fmt.Sprintf("Chain-Pw-%d", i)))
	}
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	for _, q := range []string{"", "?chain=team", "?chain=vault"} {
		p := b.get("/ui/audit/verify" + q)
		if p.status != http.StatusOK || !strings.Contains(p.body, `data-ok="true"`) ||
			!regexp.MustCompile(`<code id="verify-head">\d+:[0-9a-f]{64}</code>`).MatchString(p.body) {
			t.Fatalf("an intact chain (%s): %d %s", q, p.status, p.body)
		}
	}
	if p := b.get("/ui/audit/verify?chain=other"); p.status != http.StatusBadRequest {
		t.Fatalf("an unknown chain: %d", p.status)
	}

	db, err := sql.Open("sqlite", "file:"+store.SQLitePath(env.Dir)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seq int64
	if err := db.QueryRow(`SELECT seq FROM audit_events WHERE type = 'record_created' AND record_uid = ?`, uids[1]).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit_events SET details = '{"password":"Tampered-Secret-Pw"}' WHERE seq = ?`, seq); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"", "?chain=vault"} {
		p := b.get("/ui/audit/verify" + q)
		if p.status != http.StatusOK || !strings.Contains(p.body, `data-ok="false"`) ||
			!strings.Contains(p.body, fmt.Sprintf(`data-reason="hash_mismatch" data-seq="%d"`, seq)) || strings.Contains(p.body, `id="verify-head"`) {
			t.Fatalf("a broken chain (%s): %d %s", q, p.status, p.body)
		}
		if strings.Contains(html.UnescapeString(p.body), "Tampered-Secret-Pw") {
			t.Fatalf("the verify page shows the altered event's contents")
		}
	}
}

var newKeyRE = regexp.MustCompile(`<code id="new-key-id">([^<]+)</code>[\s\S]*<code id="new-key-secret">([^<]+)</code>`)

// confirmForm opens a confirmation page and returns its form's action and CSRF token.
func confirmForm(t *testing.T, b *browser, path string) (string, url.Values) {
	t.Helper()
	p := b.get(path)
	action := regexp.MustCompile(`<form id="user-action-form" method="post" action="([^"]+)">`).FindStringSubmatch(p.body)
	csrf := csrfRE.FindStringSubmatch(p.body)
	if p.status != http.StatusOK || action == nil || csrf == nil {
		t.Fatalf("confirmation %s: %d %s", path, p.status, p.body)
	}
	form := url.Values{"csrf_token": {csrf[1]}}
	if st := regexp.MustCompile(`name="status" value="([^"]+)"`).FindStringSubmatch(p.body); st != nil {
		form.Set("status", st[1])
	}
	return strings.ReplaceAll(action[1], "&amp;", "&"), form
}

// lockedBuffer is a log destination tests read after the server wrote to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestNewKeySecretShownOnce issues a key from the service-users page: its secret is on the
// response to the POST and nowhere else (no later page, the audit trail, the UI's log at debug
// level), and it is a working key; the API lists the key and audits it as api_key_rotated.
func TestNewKeySecretShownOnce(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	var logs lockedBuffer
	web := ui.New(ui.Deps{Vault: env.Services.Vault, Auth: env.Services.Auth, Engine: env.Services.Engine, Audit: env.Services.Audit,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, ui.Options{})
	srv := httptest.NewServer(web)
	defer srv.Close()
	app := newUser(t, env, "payments-app", []string{"secrets_reader"}, []string{"Apps"})

	b := newBrowser(t, srv.URL)
	if p := b.signIn("acme", env.Creds.KeyID, env.Creds.KeySecret.Reveal()); p.status != http.StatusSeeOther {
		t.Fatalf("sign in: %d", p.status)
	}
	list := b.get("/ui/service-users")
	if list.status != http.StatusOK || !strings.Contains(list.body, `id="user-payments-app" data-user="payments-app" data-status="ACTIVE"`) ||
		!strings.Contains(list.body, `data-key="`+app.ID+`"`) || !strings.Contains(list.body, "secrets_reader") || !strings.Contains(list.body, "Apps") {
		t.Fatalf("service users page: %d %s", list.status, list.body)
	}
	action, form := confirmForm(t, b, "/ui/service-users/payments-app/confirm?action=new-key")
	if action != "/ui/service-users/payments-app/keys" {
		t.Fatalf("new key form posts to %s", action)
	}
	created := b.post(action, form)
	m := newKeyRE.FindStringSubmatch(created.body)
	if created.status != http.StatusOK || m == nil {
		t.Fatalf("new key: %d %s", created.status, created.body)
	}
	keyID, sec := m[1], html.UnescapeString(m[2]) // html/template writes + as &#43;
	if created.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("the new key's page may be cached: %q", created.header.Get("Cache-Control"))
	}
	// It is a real key of payments-app.
	if tok := env.TokenFor(t, "acme", keyID, sec); tok == "" {
		t.Fatalf("the key shown does not work")
	}
	// Shown once: no later page holds it, the listing shows the key without it.
	after := b.get("/ui/service-users")
	if !strings.Contains(after.body, `data-key="`+keyID+`"`) {
		t.Fatalf("the new key is not listed")
	}
	for _, path := range []string{"/ui/service-users", "/ui/service-users/payments-app/confirm?action=new-key",
		"/ui/service-users/payments-app/confirm?action=delete-key&key=" + keyID, "/ui/audit", "/ui/audit?type=api_key_rotated",
		"/ui/records", "/ui/attention", "/ui/audit/verify"} {
		if p := b.get(path); strings.Contains(html.UnescapeString(p.body), sec) || p.status != http.StatusOK {
			t.Errorf("GET %s (%d) shows the key's secret or failed", path, p.status)
		}
	}
	// Audited as the API audits it, without the secret.
	_, raw := env.Raw(t, "GET", "/v1/teams/acme/audit_events?limit=1000", env.Token, nil)
	if !strings.Contains(string(raw), `"new_key_id":"`+keyID+`"`) || !strings.Contains(string(raw), "api_key_rotated") {
		t.Fatalf("no api_key_rotated event for %s: %s", keyID, raw)
	}
	if strings.Contains(string(raw), sec) {
		t.Fatalf("the audit trail holds the key's secret")
	}
	if strings.Contains(logs.String(), sec) || strings.Contains(logs.String(), env.Creds.KeySecret.Reveal()) {
		t.Fatalf("the UI's log holds a secret: %s", logs.String())
	}
}

// TestServiceUserActions deletes a key and disables and enables a user through their
// confirmation pages, with the API's checks: a key deleted stops working, a disabled user's
// sessions end, nobody disables themselves, and a user whose grant is wider than the
// caller's keeps its keys out of reach.
func TestServiceUserActions(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	victim := newUser(t, env, "victim", []string{"secrets_reader"}, []string{"Apps"})
	narrow := newUser(t, env, "narrow-admin", []string{"resource_admin"}, []string{"Apps"})
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	victimUI := mustSignIn(t, env, victim.ID, victim.Secret)

	// Disable: the victim's session ends at once; enable: its key works again.
	action, form := confirmForm(t, b, "/ui/service-users/victim/confirm?action=status&status=DISABLED")
	if p := b.post(action, form); p.status != http.StatusSeeOther {
		t.Fatalf("disable: %d %s", p.status, p.body)
	}
	if p := b.get("/ui/service-users"); !strings.Contains(p.body, `data-user="victim" data-status="DISABLED"`) || !strings.Contains(p.body, `id="enable-victim"`) {
		t.Fatalf("victim not shown disabled")
	}
	if p := victimUI.get("/ui/records"); p.status != http.StatusSeeOther {
		t.Fatalf("a disabled user's session goes on: %d", p.status)
	}
	action, form = confirmForm(t, b, "/ui/service-users/victim/confirm?action=status&status=ACTIVE")
	if p := b.post(action, form); p.status != http.StatusSeeOther {
		t.Fatalf("enable: %d %s", p.status, p.body)
	}
	mustSignIn(t, env, victim.ID, victim.Secret)

	// Delete the key: it stops working.
	action, form = confirmForm(t, b, "/ui/service-users/victim/confirm?action=delete-key&key="+victim.ID)
	if p := b.post(action, form); p.status != http.StatusSeeOther {
		t.Fatalf("delete key: %d %s", p.status, p.body)
	}
	if p := newBrowser(t, env.Server.URL).signIn("acme", victim.ID, victim.Secret); p.status == http.StatusSeeOther {
		t.Fatalf("a deleted key still signs in")
	}
	_, raw := env.Raw(t, "GET", "/v1/teams/acme/audit_events?limit=1000", env.Token, nil)
	for _, want := range []string{`"deleted_key_id":"` + victim.ID + `"`, "service_user_updated"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the audit trail lacks %s", want)
		}
	}

	// Nobody disables themselves (the API's cannot_change_self), nor is offered to.
	if p := b.get("/ui/service-users"); strings.Contains(p.body, `id="disable-admin"`) {
		t.Errorf("the admin is offered to disable themselves")
	}
	action, form = confirmForm(t, b, "/ui/service-users/admin/confirm?action=status&status=DISABLED")
	if p := b.post(action, form); p.status != http.StatusForbidden || errorCode(p) != "cannot_change_self" {
		t.Errorf("disabling oneself: %d %s", p.status, errorCode(p))
	}

	// A resource_admin limited to Apps sees the admin without its keys, and cannot touch them.
	nb := mustSignIn(t, env, narrow.ID, narrow.Secret)
	p := nb.get("/ui/service-users")
	if p.status != http.StatusOK || strings.Contains(p.body, `data-key="`+env.Creds.KeyID+`"`) || strings.Contains(p.body, `id="new-key-admin"`) {
		t.Fatalf("a narrower resource_admin sees the admin's keys: %d", p.status)
	}
	if p := nb.post("/ui/service-users/admin/keys", url.Values{"csrf_token": {nb.csrf()}}); p.status != http.StatusForbidden ||
		errorCode(p) != "service_user_out_of_grant" || newKeyRE.MatchString(p.body) {
		t.Fatalf("a narrower resource_admin issues the admin a key: %d %s", p.status, errorCode(p))
	}
}

// TestServiceUsersPageRoles: only a resource_admin opens the service-users pages or posts
// their forms, and the nav links to them only for one.
func TestServiceUsersPageRoles(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	target := newUser(t, env, "target", []string{"secrets_reader"}, nil)
	for _, roles := range [][]string{{"pam_admin"}, {"security_admin"}, {"secrets_reader"}} {
		k := newUser(t, env, "as-"+strings.ReplaceAll(roles[0], "_", "-"), roles, nil)
		b := mustSignIn(t, env, k.ID, k.Secret)
		if p := b.get("/ui/records"); strings.Contains(p.body, `id="nav-service-users"`) {
			t.Errorf("%v sees service users in the nav", roles)
		}
		for _, path := range []string{"/ui/service-users", "/ui/service-users/target/confirm?action=new-key"} {
			if p := b.get(path); p.status != http.StatusForbidden || errorCode(p) != "forbidden" {
				t.Errorf("%v GET %s: %d %s", roles, path, p.status, errorCode(p))
			}
		}
		csrf := b.csrf()
		for _, post := range []struct {
			path string
			form url.Values
		}{{"/ui/service-users/target/keys", url.Values{}}, {"/ui/service-users/target/keys/" + target.ID + "/delete", url.Values{}},
			{"/ui/service-users/target/status", url.Values{"status": {"DISABLED"}}}} {
			post.form.Set("csrf_token", csrf)
			if p := b.post(post.path, post.form); p.status != http.StatusForbidden || errorCode(p) != "forbidden" || newKeyRE.MatchString(p.body) {
				t.Errorf("%v POST %s: %d %s", roles, post.path, p.status, errorCode(p))
			}
		}
	}
	assertUntouched(t, env, target)
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	if p := b.get("/ui/records"); !strings.Contains(p.body, `id="nav-service-users"`) {
		t.Errorf("the admin does not see service users in the nav")
	}
}

// assertUntouched checks that target is ACTIVE, has one key (the one given) and still signs in.
func assertUntouched(t *testing.T, env *testenv.Env, target apiKey) {
	t.Helper()
	var keys struct {
		List []struct {
			ID string `json:"id"`
		} `json:"list"`
	}
	if st := env.Do(t, "GET", "/v1/teams/acme/service_users/target/keys", nil, &keys); st != http.StatusOK || len(keys.List) != 1 || keys.List[0].ID != target.ID {
		t.Fatalf("target's keys changed: %d %+v", st, keys)
	}
	var u struct {
		Status string `json:"status"`
	}
	if st := env.Do(t, "GET", "/v1/teams/acme/service_users/target", nil, &u); st != http.StatusOK || u.Status != "ACTIVE" {
		t.Fatalf("target's status changed: %d %s", st, u.Status)
	}
}

// TestServiceUserPostsNeedCSRFAndOrigin: every new POST is refused without the session's CSRF
// token or from another Origin, and changes nothing.
func TestServiceUserPostsNeedCSRFAndOrigin(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	target := newUser(t, env, "target", []string{"secrets_reader"}, nil)
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	other := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	good := b.csrf()
	posts := []struct {
		path string
		form url.Values
	}{{"/ui/service-users/target/keys", url.Values{}}, {"/ui/service-users/target/keys/" + target.ID + "/delete", url.Values{}},
		{"/ui/service-users/target/status", url.Values{"status": {"DISABLED"}}}}
	for _, post := range posts {
		for name, token := range map[string][]string{"no token": nil, "a wrong token": {"forged"}, "an empty token": {""},
			"another session's token": {other.csrf()}} {
			form := url.Values{}
			for k, v := range post.form {
				form[k] = v
			}
			if token != nil {
				form["csrf_token"] = token
			}
			if p := b.post(post.path, form); p.status != http.StatusForbidden || errorCode(p) != "csrf_token_invalid" || newKeyRE.MatchString(p.body) {
				t.Errorf("POST %s with %s: %d %s", post.path, name, p.status, errorCode(p))
			}
		}
		form := url.Values{"csrf_token": {good}}
		for k, v := range post.form {
			form[k] = v
		}
		if p := b.do("POST", post.path, form, map[string]string{"Origin": "https://evil.example"}); p.status != http.StatusForbidden ||
			errorCode(p) != "foreign_origin" {
			t.Errorf("POST %s from another Origin: %d %s", post.path, p.status, errorCode(p))
		}
	}
	assertUntouched(t, env, target)
}

// TestNoSecretOnTheNewPages scans every page of the audit trail and the service users for the
// passwords of records, the admin's key secret and bearer token, and other users' key secrets.
func TestNoSecretOnTheNewPages(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	pw := "Scan-Record-Pw-77"
	uid := createRecord(t, env, "scan", "Shared", pw)
	if st := env.Do(t, "GET", "/v1/teams/acme/records/"+uid, nil, nil); st != http.StatusOK { // a record_secret_read event
		t.Fatalf("read: %d", st)
	}
	k := newUser(t, env, "scan-app", []string{"secrets_reader"}, nil)
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	secrets := []string{pw, env.Creds.KeySecret.Reveal(), env.Token, k.Secret, b.cookie.Value}
	for _, path := range []string{"/ui/audit", "/ui/audit?type=record_secret_read", "/ui/audit?record=" + uid, "/ui/audit/verify",
		"/ui/audit/verify?chain=vault", "/ui/service-users", "/ui/service-users/scan-app/confirm?action=new-key",
		"/ui/service-users/scan-app/confirm?action=delete-key&key=" + k.ID, "/ui/service-users/scan-app/confirm?action=status&status=DISABLED"} {
		p := b.get(path)
		if p.status != http.StatusOK {
			t.Errorf("GET %s: %d", path, p.status)
		}
		checkHeaders(t, "GET "+path, p.header)
		for _, s := range secrets {
			if strings.Contains(html.UnescapeString(p.body), s) {
				t.Errorf("GET %s shows a secret", path)
			}
		}
		if strings.Contains(p.body, "<script") || strings.Contains(p.body, "style=") {
			t.Errorf("GET %s has inline script or style", path)
		}
	}
}
