package main

import (
	"encoding/base64"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/testenv/browser"
)

// The web UI in a real headless Chromium, against a real `keyturn server` process and an Okta
// emulator (issue 14's "Must show"). One server serves every subtest; each subtest has a
// browser of its own (a fresh profile: no cookie carries over). Every page a browser loads is
// kept, and at the end no secret may be in any of them but the page of an explicit reveal.

// uiScriptOutput is what the post-rotation script prints: the run page's exec log shows it.
const uiScriptOutput = "notified the service desk: okta user rotated"

// uiEnv is the server, its records and the pages the browsers saw.
type uiEnv struct {
	srv      *server
	base     string // http://127.0.0.1:port
	admin    initOutput
	token    string // the admin's bearer token, for the API
	emu      *emulator.Emulator
	apiToken string // the Okta API token, in the org's record

	oktaUID, oktaLogin, oktaOld string // a pamUser the emulator knows, rotated natively, with a script
	ghostUID, ghostOld          string // a pamUser whose login the emulator does not know
	readerKeyID, readerSecret   string // a key of a service user with the secrets_reader role only

	mu       sync.Mutex
	pages    []uiPage
	sessions []string // the session cookies' values: never on a page either
}

// uiPage is one page a browser loaded, as its DOM was then.
type uiPage struct {
	test, name, url, html string
	revealed              bool // the page after an explicit reveal: it may hold the values
}

// TestUIBrowser drives the UI as its users do. The subtests run in order on one server and
// build on each other: the failing rotation's checks and the leak scan need the first one's
// successful rotation.
func TestUIBrowser(t *testing.T) {
	t.Parallel()
	if _, err := browser.ExecPath(); err != nil {
		browser.New(t) // skips, or fails in CI, saying why, before a server starts
	}
	e := newUIEnv(t)

	t.Run("RotateAndWatchTheRun", e.testRotate)
	t.Run("FailingRotationNeedsAttention", e.testFailing)
	t.Run("SecretsReaderCannotRotate", e.testReader)
	t.Run("ForgedFormsAreRefused", e.testForged)
	t.Run("SignOutEndsTheSession", e.testSignOut)
	t.Run("PhoneWidth", e.testPhone)
	t.Run("AuditAndServiceUsers", e.testAdminPages)

	e.checkNoLeaks(t)
}

// newUIEnv starts the server and the emulator and makes the records and the reader's key
// through the API.
func newUIEnv(t *testing.T) *uiEnv {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	e := &uiEnv{admin: initVault(t, dir)}
	// One attempt: the failing rotation ends at once instead of retrying.
	e.srv = startServer(t, "--data", dir, "--rotation-attempts", "1", "--rotation-backoff", "10ms")
	e.base = "http://" + e.srv.addr
	e.token = e.srv.token(t, e.admin)

	e.emu = emulator.New(emulator.Options{Users: 1, AuthnPerUserPerSecond: -1})
	emuSrv := httptest.NewServer(e.emu)
	t.Cleanup(func() { e.emu.Close(); emuSrv.Close() })
	e.apiToken = e.emu.Token()
	e.oktaLogin, e.oktaOld = emulator.SeedLogin(1), emulator.SeedPassword(1)
	e.ghostOld = "Ghost-Old-Pass-9!"

	field := func(typ, value string) map[string]any { return map[string]any{"type": typ, "value": []string{value}} }
	create := func(rec map[string]any) string {
		t.Helper()
		var out struct {
			UID string `json:"uid"`
		}
		e.srv.apiJSON(t, e.token, "POST", "/records", rec, http.StatusCreated, &out)
		return out.UID
	}
	org := create(map[string]any{"type": "login", "title": "Okta API Access Details", "folder": "Okta",
		"fields": []any{field("url", emuSrv.URL), field("password", e.apiToken)}})
	e.oktaUID = create(map[string]any{"type": "pamUser", "title": "Okta admin (alice)", "folder": "Okta",
		"fields": []any{field("login", e.oktaLogin), field("password", e.oktaOld)}})
	e.ghostUID = create(map[string]any{"type": "pamUser", "title": "Departed contractor", "folder": "Okta/Contractors",
		"fields": []any{field("login", "no-such-user@example.com"), field("password", e.ghostOld)}})
	create(map[string]any{"type": "login", "title": "Build server", "folder": "Shared",
		"fields": []any{field("login", "ci"), field("password", "Build-Server-Pass-1!")}})
	for _, uid := range []string{e.oktaUID, e.ghostUID} {
		e.srv.apiJSON(t, e.token, "PUT", "/records/"+uid+"/rotation", map[string]any{"method": "general", "connector": "okta",
			"resource_uid": org, "schedule": map[string]any{"type": "DAILY", "time": "03:00", "tz": "Europe/Berlin"}}, http.StatusOK, nil)
	}
	notify := "#!/bin/sh\necho '" + uiScriptOutput + "'\n"
	e.srv.apiJSON(t, e.token, "POST", "/records/"+e.oktaUID+"/scripts", map[string]any{"name": "notify.sh",
		"content_base64": base64.StdEncoding.EncodeToString([]byte(notify))}, http.StatusCreated, nil)

	e.srv.apiJSON(t, e.token, "POST", "/service_users", map[string]any{"name": "reader", "roles": []string{"secrets_reader"}},
		http.StatusCreated, nil)
	var key struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	e.srv.apiJSON(t, e.token, "POST", "/service_users/reader/keys", nil, http.StatusOK, &key)
	e.readerKeyID, e.readerSecret = key.ID, key.Secret
	return e
}

// uiTab is a test's browser whose every loaded page is kept for the leak scan.
type uiTab struct {
	*browser.Browser
	e *uiEnv
	t *testing.T
}

// newTab starts a browser for t.
func (e *uiEnv) newTab(t *testing.T) *uiTab { return &uiTab{Browser: browser.New(t), e: e, t: t} }

// keep adds the page the browser shows now to the leak scan.
func (b *uiTab) keep(name string, revealed bool) string {
	b.t.Helper()
	page := b.HTML()
	b.e.mu.Lock()
	b.e.pages = append(b.e.pages, uiPage{test: b.t.Name(), name: name, url: b.URL(), html: page, revealed: revealed})
	b.e.mu.Unlock()
	return page
}

// Navigate loads url, keeps the page and returns its HTTP status.
func (b *uiTab) Navigate(url string) int {
	b.t.Helper()
	st := b.Browser.Navigate(url)
	b.keep(url, false)
	return st
}

// ClickAndLoad clicks sel, keeps the page it leads to and returns its HTTP status.
func (b *uiTab) ClickAndLoad(sel string) int {
	b.t.Helper()
	st := b.Browser.ClickAndLoad(sel)
	b.keep("after a click on "+sel, false)
	return st
}

// see keeps the page the browser shows and takes its screenshot.
func (b *uiTab) see(name string) {
	b.t.Helper()
	b.keep(name, false)
	b.Screenshot(name)
	b.accessible(name)
}

// accessible checks what a screen reader and a keyboard need of the page: every form control
// has a label (or an aria-label), every button and link has a name, the page has a title and
// one h1, and every image has an alt text.
func (b *uiTab) accessible(name string) {
	b.t.Helper()
	problems := browser.Eval[[]string](b.Browser, `(() => {
		const out = [];
		for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
			if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label")) out.push("unlabelled " + el.outerHTML.slice(0, 80));
		}
		for (const el of document.querySelectorAll("button, a[href]")) {
			if (!(el.textContent.trim() || el.getAttribute("aria-label") || el.value)) out.push("nameless " + el.outerHTML.slice(0, 80));
		}
		for (const el of document.querySelectorAll("img")) {
			if (!el.hasAttribute("alt")) out.push("no alt " + el.outerHTML.slice(0, 80));
		}
		if (!document.title.trim()) out.push("no title");
		if (document.querySelectorAll("h1").length !== 1) out.push(document.querySelectorAll("h1").length + " h1");
		return out;
	})()`)
	for _, p := range problems {
		b.t.Errorf("page %s: %s", name, p)
	}
}

// signIn signs in on the sign-in page with an API key and lands on the records.
func (e *uiEnv) signIn(t *testing.T, b *uiTab, keyID, keySecret string) {
	t.Helper()
	if st := b.Navigate(e.base + "/ui/"); st != http.StatusOK || !strings.HasPrefix(b.URL(), e.base+"/ui/signin") {
		t.Fatalf("/ui/ signed out: %d at %s, want the sign-in page", st, b.URL())
	}
	b.see("signin")
	b.Fill("#team", "acme")
	b.Fill("#key_id", keyID)
	b.Fill("#key_secret", keySecret)
	if st := b.ClickAndLoad("#signin-submit"); st != http.StatusOK {
		t.Fatalf("sign-in answered %d", st)
	}
	if b.Has("#signin-error") || b.URL() != e.base+"/ui/records" {
		t.Fatalf("sign-in led to %s (error shown: %v), want /ui/records", b.URL(), b.Has("#signin-error"))
	}
	if c, ok := b.Cookie("keyturn_ui"); ok {
		e.mu.Lock()
		e.sessions = append(e.sessions, c.Value)
		e.mu.Unlock()
	}
}

// runs returns the ids of a record's rotation runs, through the API.
func (e *uiEnv) runs(t *testing.T, uid string) []string {
	t.Helper()
	var list struct {
		List []struct {
			ID string `json:"id"`
		} `json:"list"`
	}
	e.srv.apiJSON(t, e.token, "GET", "/rotations?record_uid="+uid, nil, http.StatusOK, &list)
	ids := []string{}
	for _, r := range list.List {
		ids = append(ids, r.ID)
	}
	return ids
}

// runPage waits on a run's page (it reloads itself while the run goes on) until the run is
// terminal, and returns its status.
func runPage(t *testing.T, b *uiTab) string {
	t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	const probe = `(() => { const e = document.querySelector("#run-status");
		return e === null ? "" : e.dataset.terminal + " " + e.dataset.status; })()`
	last := ""
	for {
		// A reload may destroy the page between two probes: an error is only a retry.
		if got, err := chromedp.Run(ctx, chromedp.Evaluate[string](probe)); err == nil {
			last = got
			if terminal, status, _ := strings.Cut(got, " "); terminal == "true" {
				b.keep("the run, terminal", false)
				return status
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the run page never showed a terminal run (last: %q) at %s", last, b.URL())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// uiVersion is a row of the record page's #versions table.
type uiVersion struct {
	Version int    `json:"v"`
	State   string `json:"s"`
}

// uiVersions reads the record page's password versions.
func uiVersions(b *uiTab) []uiVersion {
	return browser.Eval[[]uiVersion](b.Browser, `[...document.querySelectorAll("#versions tbody tr")].map(
		r => ({v: parseInt(r.dataset.version, 10), s: r.dataset.state}))`)
}

// uiCurrentVersion is the newest current version's number, 0 without one.
func uiCurrentVersion(vs []uiVersion) int {
	cur := 0
	for _, v := range vs {
		if v.State == "current" {
			cur = max(cur, v.Version)
		}
	}
	return cur
}

// waitURL waits until the page's address starts with prefix (a form submitted itself).
func waitURL(t *testing.T, b *uiTab, prefix string) {
	t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	last := ""
	for {
		if u, err := chromedp.Run(ctx, chromedp.Location()); err == nil {
			if last = u; strings.HasPrefix(u, prefix) {
				if done, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.readyState === "complete"`)); err == nil && done {
					b.keep(u, false)
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the browser never went to %s (it is at %s)", prefix, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// errorPage checks that the page is the error page with this status and code.
func errorPage(t *testing.T, b *uiTab, status int, code string) {
	t.Helper()
	if !b.Has("#error-title") {
		t.Fatalf("%s is not an error page (HTTP %d): %.300s", b.URL(), b.Status(), b.Text("main"))
	}
	got := browser.Eval[string](b.Browser, `(() => { const s = document.querySelector("section.error");
		return s === null ? "" : s.dataset.status + " " + s.dataset.code; })()`)
	if want := fmt.Sprintf("%d %s", status, code); got != want || b.Status() != status {
		t.Fatalf("error page %q (HTTP %d), want %q: %s", got, b.Status(), want, b.Text("#error-message"))
	}
}

// Sign in with the admin's key, find the record with the filter, open it, rotate it (after
// the confirmation), watch the run to its end, read its timeline and the script's exec log, go
// back to the record and see a new current version; then reveal the values on request.
func (e *uiEnv) testRotate(t *testing.T) {
	b := e.newTab(t)
	e.signIn(t, b, e.admin.KeyID, e.admin.KeySecret)

	b.Fill("#folder", "Okta")
	if st := b.ClickAndLoad("#filter-submit"); st != http.StatusOK {
		t.Fatalf("filter answered %d", st)
	}
	row := fmt.Sprintf(`#records tr[data-uid=%q]`, e.oktaUID)
	b.WaitVisible(row)
	if got := b.Text(row + " .record-link"); got != "Okta admin (alice)" {
		t.Errorf("the record's link says %q, want its title", got)
	}
	if strings.Contains(b.Text("#records"), "Build server") {
		t.Error("the folder filter Okta lists the record of folder Shared")
	}
	if got := browser.Eval[string](b.Browser, fmt.Sprintf(`document.querySelector(%q).querySelector(".badge[data-status]").dataset.status`, row)); got != "never_rotated" {
		t.Errorf("badge before any rotation: %q, want never_rotated", got)
	}
	b.see("records")

	if st := b.ClickAndLoad(row + " .record-link"); st != http.StatusOK {
		t.Fatalf("the record page answered %d", st)
	}
	b.WaitText("#record-title", "Okta admin (alice)")
	if s := b.Text("#schedule"); !strings.Contains(s, "03:00") || !strings.Contains(s, "Europe/Berlin") {
		t.Errorf("schedule in words: %q", s)
	}
	if !b.Has(`#scripts tbody tr`) || !strings.Contains(b.Text("#scripts"), "notify.sh") {
		t.Error("the record page does not list the attached script")
	}
	before := uiCurrentVersion(uiVersions(b))
	b.see("record")

	if st := b.ClickAndLoad("#rotate-button"); st != http.StatusOK || !strings.HasSuffix(b.URL(), "/ui/records/"+e.oktaUID+"/rotate") {
		t.Fatalf("the rotate button led to %s (%d), want the confirmation", b.URL(), st)
	}
	if n := len(e.runs(t, e.oktaUID)); n != 0 {
		t.Fatalf("%d runs before the confirmation, want 0: the button alone must not rotate", n)
	}
	b.WaitVisible("#rotate-cancel")
	b.see("confirm")
	if st := b.Browser.ClickAndLoad("#rotate-confirm"); st != http.StatusOK { // runPage keeps the run page, which reloads itself
		t.Fatalf("the confirmation answered %d", st)
	}
	runs := e.runs(t, e.oktaUID)
	if len(runs) != 1 || b.URL() != e.base+"/ui/runs/"+runs[0] {
		t.Fatalf("after the confirmation: runs %v, page %s; want one run, and its page", runs, b.URL())
	}
	if status := runPage(t, b); status != "succeeded" {
		t.Fatalf("the run ended %q, want succeeded: %s", status, b.Text("main"))
	}
	// The timeline: each state the run committed, with its time, in order.
	timeline := browser.Eval[[]string](b.Browser, `Array.from(document.querySelectorAll("#timeline li")).filter(li => li.querySelector("time")).map(li => li.textContent)`)
	want := []string{"queued", "pending saved", "committed", "succeeded"}
	if len(timeline) != len(want) {
		t.Errorf("the timeline has %d timed entries %q, want the run's states %v", len(timeline), timeline, want)
	} else {
		for i, w := range want {
			if !strings.Contains(timeline[i], " — "+w) {
				t.Errorf("timeline entry %d is %q, want state %q", i+1, timeline[i], w)
			}
		}
	}
	if got := b.Text(`#exec-log section.script[data-script="notify.sh"]`); !strings.Contains(got, uiScriptOutput) || !strings.Contains(got, "exit 0") {
		t.Errorf("the exec log of notify.sh says %q, want exit 0 and its output", got)
	}
	b.see("run")

	if st := b.ClickAndLoad("#run-record"); st != http.StatusOK {
		t.Fatalf("the run's record link answered %d", st)
	}
	b.WaitVisible("#versions")
	after := uiVersions(b)
	if cur := uiCurrentVersion(after); cur <= before {
		t.Errorf("versions after the rotation %v: the current one is %d, want newer than %d", after, cur, before)
	}
	if got := browser.Eval[string](b.Browser, `document.querySelector("#rotation-status").dataset.status`); got != "ok" {
		t.Errorf("rotation status after a successful run: %q, want ok", got)
	}
	if href := browser.Eval[string](b.Browser, `document.querySelector("#last-run-link").getAttribute("href")`); href != "/ui/runs/"+runs[0] {
		t.Errorf("the last run link is %q, want the run's page", href)
	}
	b.see("record-after")

	newPW, ok := e.emu.Password(e.oktaLogin)
	if !ok || newPW == e.oktaOld {
		t.Fatalf("the emulator's password did not change")
	}
	if st := b.Browser.ClickAndLoad("#reveal-button"); st != http.StatusOK { // kept below, as revealed
		t.Fatalf("reveal answered %d", st)
	}
	b.WaitVisible("#revealed-note")
	page := b.keep("revealed", true)
	if !containsAny(page, newPW) {
		t.Error("the page after an explicit reveal does not show the current password")
	}
}

// A rotation of a user the target does not know ends failed, with its error and advice, and
// is listed under "needs attention".
func (e *uiEnv) testFailing(t *testing.T) {
	b := e.newTab(t)
	e.signIn(t, b, e.admin.KeyID, e.admin.KeySecret)
	if st := b.Navigate(e.base + "/ui/records/" + e.ghostUID + "/rotate"); st != http.StatusOK {
		t.Fatalf("the confirmation page answered %d", st)
	}
	if st := b.Browser.ClickAndLoad("#rotate-confirm"); st != http.StatusOK { // runPage keeps the run page
		t.Fatalf("the confirmation answered %d", st)
	}
	status := runPage(t, b)
	if status != "failed" && status != "needs_attention" {
		t.Fatalf("the run of an unknown user ended %q, want failed or needs_attention", status)
	}
	b.WaitVisible("#run-error")
	if !b.Has("#run-advice") || strings.TrimSpace(b.Text("#run-advice")) == "" {
		t.Error("the failed run's page gives no advice")
	}
	runID := strings.TrimPrefix(b.URL(), e.base+"/ui/runs/")
	b.see("run-failed")

	if st := b.ClickAndLoad("#nav-attention"); st != http.StatusOK {
		t.Fatalf("needs attention answered %d", st)
	}
	row := fmt.Sprintf(`#attention tr[data-run=%q]`, runID)
	b.WaitVisible("#attention")
	if !b.Has(row) {
		t.Fatalf("the failed run %s is not under needs attention: %s", runID, b.Text("#attention"))
	}
	if got := b.Text(row); !strings.Contains(got, "Departed contractor") {
		t.Errorf("the attention row does not name the record: %q", got)
	}
	for _, id := range e.runs(t, e.oktaUID) {
		if b.Has(fmt.Sprintf(`#attention tr[data-run=%q]`, id)) {
			t.Errorf("the succeeded run %s is listed under needs attention", id)
		}
	}
	b.see("attention")

	// The records list now shows both outcomes: ok and failed.
	if st := b.ClickAndLoad("#nav-records"); st != http.StatusOK {
		t.Fatalf("records answered %d", st)
	}
	for uid, want := range map[string]string{e.oktaUID: "ok", e.ghostUID: status} {
		sel := fmt.Sprintf(`#records tr[data-uid=%q] .badge[data-status]`, uid)
		if !b.Has(sel) {
			t.Fatalf("no rotation badge for record %s", uid)
		}
		if got := browser.Eval[string](b.Browser, fmt.Sprintf(`document.querySelector(%q).dataset.status`, sel)); got != want {
			t.Errorf("record %s's badge is %q, want %q", uid, got, want)
		}
	}
	b.see("records-all")
}

// A secrets_reader sees the record's fields but no rotate button; the confirmation page and
// the rotate form, posted with the reader's own valid CSRF token, are refused with 403, and
// no run is created.
func (e *uiEnv) testReader(t *testing.T) {
	b := e.newTab(t)
	e.signIn(t, b, e.readerKeyID, e.readerSecret)
	runsBefore := e.runs(t, e.oktaUID)
	if st := b.Navigate(e.base + "/ui/records/" + e.oktaUID); st != http.StatusOK {
		t.Fatalf("the record page answered %d to a secrets_reader", st)
	}
	b.WaitText("#record-title", "Okta admin (alice)")
	b.WaitVisible("#fields")
	if b.Has("#rotate-button") || b.Has("#pause-button") || b.Has("#resume-button") {
		t.Error("a secrets_reader is shown the rotate or pause button")
	}
	b.see("record-reader")
	csrf := browser.Eval[string](b.Browser, `document.querySelector("#reveal-form input[name=csrf_token]").value`)

	if st := b.Navigate(e.base + "/ui/records/" + e.oktaUID + "/rotate"); st != http.StatusForbidden {
		t.Errorf("the confirmation page answered %d to a secrets_reader, want 403", st)
	}
	errorPage(t, b, http.StatusForbidden, "forbidden")
	if b.Has("#rotate-confirm") {
		t.Error("the refused confirmation page still has the confirm button")
	}
	b.see("error")

	// The form the confirmation page would have held, with the reader's valid token.
	b.Navigate(e.base + "/ui/records/" + e.oktaUID)
	b.Do("add the rotate form", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		const f = document.createElement("form");
		f.method = "post"; f.action = "/ui/records/%s/rotate"; f.id = "forged";
		const i = document.createElement("input");
		i.type = "hidden"; i.name = "csrf_token"; i.value = %q; f.appendChild(i);
		const s = document.createElement("button"); s.type = "submit"; s.id = "forged-submit"; s.textContent = "Rotate";
		f.appendChild(s); document.body.appendChild(f); })()`, e.oktaUID, csrf)))
	if st := b.ClickAndLoad("#forged-submit"); st != http.StatusForbidden {
		t.Errorf("the rotate form posted by a secrets_reader answered %d, want 403", st)
	}
	errorPage(t, b, http.StatusForbidden, "forbidden")
	if after := e.runs(t, e.oktaUID); !slices.Equal(after, runsBefore) {
		t.Errorf("runs %v after a secrets_reader's post, want %v", after, runsBefore)
	}
}

// A rotate form without the session's CSRF token, or with a wrong one, is refused; so is one
// that another origin's page submits with the right token (in the same browser, which holds
// the session cookie): no run is created.
func (e *uiEnv) testForged(t *testing.T) {
	b := e.newTab(t)
	e.signIn(t, b, e.admin.KeyID, e.admin.KeySecret)
	confirmURL := e.base + "/ui/records/" + e.oktaUID + "/rotate"
	runsBefore := e.runs(t, e.oktaUID)

	b.Navigate(confirmURL)
	b.Do("drop the token", chromedp.Evaluate[chromedp.Void](`document.querySelector("#rotate-form input[name=csrf_token]").remove()`))
	b.ClickAndLoad("#rotate-confirm")
	errorPage(t, b, http.StatusForbidden, "csrf_token_invalid")
	b.see("error-csrf")

	b.Navigate(confirmURL)
	token := browser.Eval[string](b.Browser, `document.querySelector("#rotate-form input[name=csrf_token]").value`)
	if token == "" {
		t.Fatal("the confirmation page has no CSRF token")
	}
	b.SetValue("#rotate-form input[name=csrf_token]", "0"+token[1:]+"x")
	b.ClickAndLoad("#rotate-confirm")
	errorPage(t, b, http.StatusForbidden, "csrf_token_invalid")

	// Another origin serves a page that submits the rotate form, with the session's own token,
	// once it has loaded. From 127.0.0.1 on another port it is the same site, so Chromium sends
	// the SameSite=Strict cookie along and only the Origin check stands in the way; from
	// localhost it is another site, and the cookie stays home.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><body><form id="f" method="post" action="%s">
<input type="hidden" name="csrf_token" value="%s"><button type="submit">win a prize</button></form>
<script>window.addEventListener("load", () => document.getElementById("f").submit());</script></body></html>`,
			html.EscapeString(confirmURL), html.EscapeString(token))
	}))
	defer evil.Close()
	for _, origin := range []string{evil.URL, strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)} {
		b.Browser.Navigate(origin + "/prize") // not kept: the page leaves itself at once
		waitURL(t, b, e.base+"/ui/")
		if b.URL() != confirmURL {
			t.Fatalf("the form of %s led to %s, want %s", origin, b.URL(), confirmURL)
		}
		errorPage(t, b, http.StatusForbidden, "foreign_origin")
	}
	b.see("error-origin")

	if after := e.runs(t, e.oktaUID); !slices.Equal(after, runsBefore) {
		t.Errorf("runs %v after forged forms, want %v", after, runsBefore)
	}
	// The session is still good: the refusals were the forms', not a lost cookie's.
	if b.Navigate(confirmURL); !b.Has("#rotate-confirm") {
		t.Errorf("after the refused forms the confirmation page is gone: %s", b.URL())
	}
}

// Sign-out ends the session: the records page sends the browser to sign in, and the old
// cookie, set again by hand, opens nothing.
func (e *uiEnv) testSignOut(t *testing.T) {
	b := e.newTab(t)
	e.signIn(t, b, e.admin.KeyID, e.admin.KeySecret)
	c, ok := b.Cookie("keyturn_ui")
	if !ok || c.Value == "" {
		t.Fatal("no session cookie after sign-in")
	}
	if !c.HTTPOnly || c.SameSite != "Strict" || c.Path != "/ui/" {
		t.Errorf("session cookie: HttpOnly %v, SameSite %q, Path %q; want true, Strict, /ui/", c.HTTPOnly, c.SameSite, c.Path)
	}
	if st := b.ClickAndLoad("#signout"); st != http.StatusOK || !strings.HasPrefix(b.URL(), e.base+"/ui/signin") {
		t.Fatalf("sign-out led to %s (%d), want the sign-in page", b.URL(), st)
	}
	if _, ok := b.Cookie("keyturn_ui"); ok {
		t.Error("the browser still holds the session cookie after sign-out")
	}
	b.Navigate(e.base + "/ui/records")
	if !strings.HasPrefix(b.URL(), e.base+"/ui/signin") || b.Has("#records") {
		t.Fatalf("after sign-out /ui/records shows %s, want the sign-in page", b.URL())
	}

	httpOnly := true
	ctx, cancel := b.Context()
	_, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: "keyturn_ui", Value: c.Value,
		URL: e.base + "/ui/", Path: "/ui/", HTTPOnly: &httpOnly, SameSite: network.CookieSameSiteStrict})
	cancel()
	if err != nil {
		t.Fatalf("set the old cookie again: %v", err)
	}
	if got, ok := b.Cookie("keyturn_ui"); !ok || got.Value != c.Value {
		t.Fatal("the old cookie could not be set again")
	}
	b.Navigate(e.base + "/ui/records")
	if !strings.HasPrefix(b.URL(), e.base+"/ui/signin") || b.Has("#records") {
		t.Errorf("the old cookie still opens %s after sign-out", b.URL())
	}
	b.Navigate(e.base + "/ui/records/" + e.oktaUID + "/rotate")
	if b.Has("#rotate-confirm") {
		t.Error("the old cookie still opens the confirmation page")
	}
}

// The records page at a phone's width: every column's content stays within the screen.
func (e *uiEnv) testPhone(t *testing.T) {
	b := e.newTab(t)
	e.signIn(t, b, e.admin.KeyID, e.admin.KeySecret)
	b.Viewport(390, 844, true)
	b.Navigate(e.base + "/ui/records")
	b.WaitVisible("#records")
	b.see("records-phone")
	if w := browser.Eval[int](b.Browser, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the records page is %d px wide on a 390 px phone: it scrolls sideways", w)
	}
}

// testAdminPages opens the audit trail, verifies its chain, and lists the service users, as
// the team's admin (every role): each page is screenshot, checked for accessibility and
// leak-scanned with the others.
func (e *uiEnv) testAdminPages(t *testing.T) {
	b := e.newTab(t)
	e.signIn(t, b, e.admin.KeyID, e.admin.KeySecret)
	b.Navigate(e.base + "/ui/audit")
	if !strings.Contains(b.Text("#audit-events"), "rotation") {
		t.Errorf("the audit trail shows no rotation event: %q", b.Text("#audit-events"))
	}
	b.see("audit")
	b.ClickAndLoad("#audit-verify")
	if ok := browser.Eval[string](b.Browser, `document.querySelector("#verify-result").dataset.ok`); ok != "true" {
		t.Errorf("the audit chain does not verify: %q", b.Text("main"))
	}
	b.see("audit-verify")
	b.Navigate(e.base + "/ui/service-users")
	if !b.Has("#service-users") || !strings.Contains(b.Text("#service-users"), "reader") {
		t.Errorf("the service users page does not list the reader: %q", b.Text("main"))
	}
	b.see("service-users")
}

// checkNoLeaks looks for every secret, in each of its encodings, in the HTML of every page
// the browsers loaded, but the one after an explicit reveal.
func (e *uiEnv) checkNoLeaks(t *testing.T) {
	newPW, _ := e.emu.Password(e.oktaLogin)
	secrets := map[string]string{"the old password": e.oktaOld, "the new password": newPW,
		"the failed user's password": e.ghostOld, "the Okta API token": e.apiToken, "the build server's password": "Build-Server-Pass-1!",
		"the admin's key secret": e.admin.KeySecret, "the reader's key secret": e.readerSecret, "the admin's bearer token": e.token}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, v := range e.sessions {
		secrets[fmt.Sprintf("session cookie %d", i+1)] = v
	}
	t.Logf("leak scan: %d pages, %d secrets", len(e.pages), len(secrets))
	if len(e.pages) < 10 {
		t.Fatalf("only %d pages were kept for the leak scan", len(e.pages))
	}
	for _, p := range e.pages {
		if p.revealed {
			continue
		}
		for what, s := range secrets {
			if s != "" && containsAny(p.html, s) {
				t.Errorf("%s is in the HTML of page %s (%s, %s)", what, p.name, p.url, p.test)
			}
		}
	}
}

// containsAny reports whether page holds s in any of the forms a page or a script may write it.
func containsAny(page, s string) bool {
	forms := append(script.Encodings(s), html.EscapeString(s), strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s))
	for _, f := range forms {
		if len(f) >= 6 && strings.Contains(page, f) {
			return true
		}
	}
	return false
}
