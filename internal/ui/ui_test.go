package ui_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/testenv"
	"github.com/keyturn/keyturn/internal/ui"
)

// browser is a cookie-keeping client that does not follow redirects, posting forms as a
// browser on the server's own pages does (with their Origin).
type browser struct {
	t      *testing.T
	base   string
	origin string
	c      *http.Client
	cookie *http.Cookie // the session cookie, once signed in
}

func newBrowser(t *testing.T, base string) *browser {
	return &browser{t: t, base: base, origin: base,
		c: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	status int
	header http.Header
	body   string
	resp   *http.Response
}

func (b *browser) do(method, path string, form url.Values, hdr map[string]string) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", b.origin)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	if b.cookie != nil {
		req.AddCookie(&http.Cookie{Name: b.cookie.Name, Value: b.cookie.Value})
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, body: string(raw), resp: resp}
}

func (b *browser) get(path string) page { b.t.Helper(); return b.do("GET", path, nil, nil) }

// post sends a form with the CSRF token of the page at from.
func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	return b.do("POST", path, form, nil)
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == ui.CookieName {
			return c
		}
	}
	return nil
}

// signIn signs in with an API key and keeps the session cookie.
func (b *browser) signIn(team, keyID, secret string) page {
	b.t.Helper()
	p := b.post("/ui/signin", url.Values{"team": {team}, "key_id": {keyID}, "key_secret": {secret}})
	if c := sessionCookie(p.resp); c != nil && c.Value != "" {
		b.cookie = c
	}
	return p
}

func mustSignIn(t *testing.T, env *testenv.Env, keyID, secret string) *browser {
	t.Helper()
	b := newBrowser(t, env.Server.URL)
	if p := b.signIn("acme", keyID, secret); p.status != http.StatusSeeOther || b.cookie == nil {
		t.Fatalf("sign in: %d %s", p.status, p.body)
	}
	return b
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// csrf returns the CSRF token a page of the session holds.
func (b *browser) csrf() string {
	b.t.Helper()
	p := b.get("/ui/records")
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatalf("no CSRF token on /ui/records (%d)", p.status)
	}
	return m[1]
}

type apiKey struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// newUser creates a service user and returns a key of it.
func newUser(t *testing.T, env *testenv.Env, name string, roles, folders []string) apiKey {
	t.Helper()
	if st := env.Do(t, "POST", "/v1/teams/acme/service_users", map[string]any{"name": name, "roles": roles, "folders": folders}, nil); st != http.StatusCreated {
		t.Fatalf("create %s: %d", name, st)
	}
	var k apiKey
	if st := env.Do(t, "POST", "/v1/teams/acme/service_users/"+name+"/keys", nil, &k); st != http.StatusOK {
		t.Fatalf("key of %s: %d", name, st)
	}
	return k
}

type record struct {
	UID string `json:"uid"`
}

// managedUser creates a pamUser with a password, rotated by a script (scripts_only).
func managedUser(t *testing.T, env *testenv.Env, title, folder, password, script string) record {
	t.Helper()
	var rec record
	if st := env.Do(t, "POST", "/v1/teams/acme/records", map[string]any{
		"type": "pamUser", "title": title, "folder": folder,
		"fields": []map[string]any{{"type": "login", "value": []string{title + "@example.com"}},
			{"type": "password", "value": []string{password}}},
	}, &rec); st != http.StatusCreated {
		t.Fatalf("create record: %d", st)
	}
	if st := env.Do(t, "PUT", "/v1/teams/acme/records/"+rec.UID+"/rotation", map[string]any{
		"method": "scripts_only", "complexity": map[string]any{"length": 24, "caps": 2, "lowercase": 2, "digits": 2, "special": 0},
		"schedule": map[string]any{"type": "DAILY", "time": "03:00", "tz": "Europe/Berlin", "intervalCount": 1},
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

// runsOf counts a record's rotation runs, through the API.
func runsOf(t *testing.T, env *testenv.Env, uid string) int {
	t.Helper()
	var out struct {
		List []json.RawMessage `json:"list"`
	}
	if st := env.Do(t, "GET", "/v1/teams/acme/rotations?record_uid="+uid, nil, &out); st != http.StatusOK {
		t.Fatalf("list runs: %d", st)
	}
	return len(out.List)
}

var wantHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
	"X-Frame-Options":         "DENY",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "same-origin",
	"Cache-Control":           "no-store",
}

func checkHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	for k, v := range wantHeaders {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	anon := newBrowser(t, env.Server.URL)
	for _, path := range []string{"/ui", "/ui/", "/ui/signin", "/ui/static/ui.css", "/ui/no-such-page", "/ui/records", "/ui/runs/x"} {
		p := anon.get(path)
		checkHeaders(t, "anonymous GET "+path+" ("+http.StatusText(p.status)+")", p.header)
	}
	checkHeaders(t, "wrong sign-in", anon.signIn("acme", env.Creds.KeyID, "wrong").header)
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	rec := managedUser(t, env, "hdr", "Shared", "Hdr-Start-1", "#!/bin/sh\nexit 0\n")
	for _, path := range []string{"/ui/", "/ui/records", "/ui/records/" + rec.UID, "/ui/records/" + rec.UID + "/rotate", "/ui/attention", "/ui/records/nope"} {
		p := b.get(path)
		checkHeaders(t, "signed-in GET "+path+" ("+http.StatusText(p.status)+")", p.header)
	}
	checkHeaders(t, "POST without CSRF token", b.post("/ui/records/"+rec.UID+"/reveal", url.Values{}).header)
	if p := anon.get("/ui/static/ui.css"); p.status != 200 || !strings.HasPrefix(p.header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %d %s", p.status, p.header.Get("Content-Type"))
	}
	if p := anon.get("/ui/signin"); strings.Contains(p.body, "<script") || strings.Contains(p.body, "style=") {
		t.Errorf("inline script or style on the sign-in page")
	}
}

func TestSessionCookieFlags(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	c := b.cookie
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || c.Secure {
		t.Fatalf("cookie over plain http: %+v", c)
	}
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(raw) != 32 {
		t.Fatalf("cookie value is not 32 random bytes: %q", c.Value)
	}
	if strings.Contains(c.Value, env.Creds.KeySecret.Reveal()) || strings.Contains(c.Value, env.Creds.KeyID) {
		t.Fatalf("the cookie holds the key")
	}
	// The database holds the id's SHA-256, never the id.
	sum := sha256.Sum256([]byte(c.Value))
	if _, err := env.Services.DB.UISession(t.Context(), sum[:]); err != nil {
		t.Fatalf("no session stored under the id's SHA-256: %v", err)
	}
	if _, err := env.Services.DB.UISession(t.Context(), []byte(c.Value)); err == nil {
		t.Fatalf("a session is stored under the id itself")
	}

	// A server that browsers reach over https gives a Secure cookie.
	s := env.Services
	srv := httptest.NewServer(ui.New(ui.Deps{Vault: s.Vault, Auth: s.Auth, Engine: s.Engine, Audit: s.Audit}, ui.Options{Secure: true}))
	defer srv.Close()
	tb := newBrowser(t, srv.URL)
	tb.origin = "https://" + strings.TrimPrefix(srv.URL, "http://")
	if p := tb.signIn("acme", env.Creds.KeyID, env.Creds.KeySecret.Reveal()); p.status != http.StatusSeeOther || tb.cookie == nil {
		t.Fatalf("sign in over https: %d", p.status)
	}
	if !tb.cookie.Secure || !tb.cookie.HttpOnly || tb.cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie over https: %+v", tb.cookie)
	}

	// A server that serves TLS itself gives a Secure cookie without being told.
	tlsSrv := httptest.NewTLSServer(ui.New(ui.Deps{Vault: s.Vault, Auth: s.Auth, Engine: s.Engine, Audit: s.Audit}, ui.Options{}))
	defer tlsSrv.Close()
	xb := newBrowser(t, tlsSrv.URL)
	xb.c.Transport = tlsSrv.Client().Transport
	if p := xb.signIn("acme", env.Creds.KeyID, env.Creds.KeySecret.Reveal()); p.status != http.StatusSeeOther || xb.cookie == nil || !xb.cookie.Secure {
		t.Fatalf("sign in over TLS: %d, cookie %+v", p.status, xb.cookie)
	}
}

func TestSignInWithAWrongSecretIsRefused(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	b := newBrowser(t, env.Server.URL)
	p := b.signIn("acme", env.Creds.KeyID, "not-the-secret")
	if p.status != http.StatusUnauthorized || b.cookie != nil || sessionCookie(p.resp) != nil {
		t.Fatalf("wrong secret: %d, cookie %v", p.status, sessionCookie(p.resp))
	}
	if !strings.Contains(p.body, `id="signin-error"`) || strings.Contains(p.body, "not-the-secret") {
		t.Fatalf("the refusal page: %s", p.body)
	}
	if p := b.signIn("beta", env.Creds.KeyID, env.Creds.KeySecret.Reveal()); p.status != http.StatusUnauthorized || b.cookie != nil {
		t.Fatalf("another team's name: %d", p.status)
	}
	if p := b.get("/ui/records"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/ui/signin") {
		t.Fatalf("records without a session: %d %s", p.status, p.header.Get("Location"))
	}
	// The API's failed-exchange limiter counts sign-ins: after 10 failures (one of them above,
	// one for team beta) the correct secret is refused from this address too.
	for range 8 {
		b.signIn("acme", env.Creds.KeyID, "still-wrong")
	}
	if p := b.signIn("acme", env.Creds.KeyID, env.Creds.KeySecret.Reveal()); p.status != http.StatusTooManyRequests || b.cookie != nil {
		t.Fatalf("the correct secret after 10 failures: %d, want 429", p.status)
	}
}

func TestSignInGoesOnlyToPagesOfTheUI(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	// After sign-in the browser goes where it was headed, but only to a page of the UI.
	for next, want := range map[string]string{"/ui/attention": "/ui/attention", "//evil.example/ui/": "/ui/records",
		"https://evil.example/": "/ui/records", "/ui/\\evil.example": "/ui/records"} {
		nb := newBrowser(t, env.Server.URL)
		p := nb.post("/ui/signin", url.Values{"team": {"acme"}, "key_id": {env.Creds.KeyID}, "key_secret": {env.Creds.KeySecret.Reveal()}, "next": {next}})
		if p.status != http.StatusSeeOther || p.header.Get("Location") != want {
			t.Errorf("sign in with next=%q: %d to %q, want %q", next, p.status, p.header.Get("Location"), want)
		}
	}
}

func TestPostWithoutCSRFTokenIsRefused(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := managedUser(t, env, "csrf", "Shared", "Csrf-Start-1", "#!/bin/sh\nexit 0\n")
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	for name, form := range map[string]url.Values{"no token": {}, "a wrong token": {"csrf_token": {"forged"}}, "an empty token": {"csrf_token": {""}}} {
		p := b.post("/ui/records/"+rec.UID+"/rotate", form)
		if p.status != http.StatusForbidden || !strings.Contains(p.body, "csrf_token_invalid") {
			t.Errorf("rotate with %s: %d", name, p.status)
		}
		if p := b.post("/ui/records/"+rec.UID+"/reveal", form); p.status != http.StatusForbidden || strings.Contains(p.body, "Csrf-Start-1") {
			t.Errorf("reveal with %s: %d", name, p.status)
		}
		if p := b.post("/ui/signout", form); p.status != http.StatusForbidden {
			t.Errorf("sign out with %s: %d", name, p.status)
		}
	}
	if n := runsOf(t, env, rec.UID); n != 0 {
		t.Fatalf("%d runs started by refused posts", n)
	}
	if p := b.get("/ui/records"); p.status != http.StatusOK {
		t.Fatalf("the session ended by a refused sign-out: %d", p.status)
	}
	// Another session's token is not this one's.
	other := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	if p := b.post("/ui/records/"+rec.UID+"/rotate", url.Values{"csrf_token": {other.csrf()}}); p.status != http.StatusForbidden {
		t.Fatalf("rotate with another session's token: %d", p.status)
	}
	if n := runsOf(t, env, rec.UID); n != 0 {
		t.Fatalf("%d runs started by refused posts", n)
	}
	// With the session's own token, it goes through.
	if p := b.post("/ui/records/"+rec.UID+"/rotate", url.Values{"csrf_token": {b.csrf()}}); p.status != http.StatusSeeOther ||
		!strings.HasPrefix(p.header.Get("Location"), "/ui/runs/") {
		t.Fatalf("rotate with the token: %d %s", p.status, p.header.Get("Location"))
	}
}

func TestPostFromAForeignOriginIsRefused(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := managedUser(t, env, "origin", "Shared", "Origin-Start-1", "#!/bin/sh\nexit 0\n")
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	form := url.Values{"csrf_token": {b.csrf()}}
	for name, hdr := range map[string]map[string]string{
		"a foreign Origin":                  {"Origin": "https://evil.example"},
		"the same host over another scheme": {"Origin": "https://" + strings.TrimPrefix(env.Server.URL, "http://")},
		"Origin null":                       {"Origin": "null"},
		"no Origin and a foreign Referer":   {"Origin": "", "Referer": "https://evil.example/page"},
		"neither Origin nor Referer":        {"Origin": ""},
	} {
		p := b.do("POST", "/ui/records/"+rec.UID+"/rotate", form, hdr)
		if p.status != http.StatusForbidden || !strings.Contains(p.body, "foreign_origin") {
			t.Errorf("rotate with %s: %d", name, p.status)
		}
		if p := b.do("POST", "/ui/signin", url.Values{"team": {"acme"}, "key_id": {env.Creds.KeyID}, "key_secret": {env.Creds.KeySecret.Reveal()}}, hdr); p.status != http.StatusForbidden || sessionCookie(p.resp) != nil {
			t.Errorf("sign in with %s: %d", name, p.status)
		}
	}
	if n := runsOf(t, env, rec.UID); n != 0 {
		t.Fatalf("%d runs started by refused posts", n)
	}
	// A same-origin Referer without Origin passes.
	if p := b.do("POST", "/ui/records/"+rec.UID+"/rotate", form, map[string]string{"Origin": "", "Referer": env.Server.URL + "/ui/records/" + rec.UID + "/rotate"}); p.status != http.StatusSeeOther {
		t.Fatalf("rotate with a same-origin Referer: %d", p.status)
	}
}

func TestSecretsReaderCannotRotate(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := managedUser(t, env, "reader-target", "Shared", "Reader-Start-1", "#!/bin/sh\nexit 0\n")
	k := newUser(t, env, "reader", []string{"secrets_reader"}, nil)
	b := mustSignIn(t, env, k.ID, k.Secret)
	p := b.get("/ui/records/" + rec.UID)
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="record-title"`) {
		t.Fatalf("record page for a secrets_reader: %d", p.status)
	}
	if strings.Contains(p.body, `id="rotate-button"`) || strings.Contains(p.body, "/rotate") {
		t.Fatalf("a secrets_reader sees a rotate button")
	}
	if p := b.get("/ui/records/" + rec.UID + "/rotate"); p.status != http.StatusForbidden {
		t.Fatalf("rotate confirmation for a secrets_reader: %d", p.status)
	}
	if p := b.post("/ui/records/"+rec.UID+"/rotate", url.Values{"csrf_token": {b.csrf()}}); p.status != http.StatusForbidden {
		t.Fatalf("rotate POST from a secrets_reader: %d", p.status)
	}
	if n := runsOf(t, env, rec.UID); n != 0 {
		t.Fatalf("a secrets_reader started %d runs", n)
	}
	// A pam_admin sees the button.
	admin := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	if p := admin.get("/ui/records/" + rec.UID); !strings.Contains(p.body, `id="rotate-button"`) {
		t.Fatalf("a pam_admin sees no rotate button")
	}
}

func TestFolderGrantsHideRecords(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	outside := managedUser(t, env, "outside-grant", "Shared/Okta", "Outside-Start-1", "#!/bin/sh\nexit 0\n")
	inside := managedUser(t, env, "inside-grant", "Apps/Pay", "Inside-Start-1", "#!/bin/sh\nexit 0\n")
	k := newUser(t, env, "apps-admin", []string{"pam_admin"}, []string{"Apps"})
	b := mustSignIn(t, env, k.ID, k.Secret)
	list := b.get("/ui/records")
	if list.status != http.StatusOK || !strings.Contains(list.body, inside.UID) || strings.Contains(list.body, outside.UID) || strings.Contains(list.body, "outside-grant") {
		t.Fatalf("records list under a folder grant: %d", list.status)
	}
	for _, path := range []string{"/ui/records/" + outside.UID, "/ui/records/outside-grant", "/ui/records/" + outside.UID + "/rotate"} {
		if p := b.get(path); p.status != http.StatusNotFound {
			t.Errorf("GET %s outside the grant: %d, want 404", path, p.status)
		}
	}
	csrf := b.csrf()
	for _, path := range []string{"/ui/records/" + outside.UID + "/rotate", "/ui/records/" + outside.UID + "/reveal"} {
		if p := b.post(path, url.Values{"csrf_token": {csrf}}); p.status != http.StatusNotFound || strings.Contains(p.body, "Outside-Start-1") {
			t.Errorf("POST %s outside the grant: %d, want 404", path, p.status)
		}
	}
	if n := runsOf(t, env, outside.UID); n != 0 {
		t.Fatalf("%d runs of a record outside the grant", n)
	}
	// A run of a record outside the grant is not found either, nor listed as needing attention.
	var run struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if st := env.Do(t, "POST", "/v1/teams/acme/records/"+outside.UID+"/rotate?wait=30s", nil, &run); st != http.StatusOK || run.Status != "succeeded" {
		t.Fatalf("rotate outside the grant as admin: %d %+v", st, run)
	}
	if p := b.get("/ui/runs/" + run.ID); p.status != http.StatusNotFound {
		t.Errorf("a run outside the grant: %d, want 404", p.status)
	}
}

func TestSignOutEndsTheSession(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	old := *b.cookie
	p := b.post("/ui/signout", url.Values{"csrf_token": {b.csrf()}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/ui/signin" {
		t.Fatalf("sign out: %d %s", p.status, p.header.Get("Location"))
	}
	if c := sessionCookie(p.resp); c == nil || c.MaxAge >= 0 {
		t.Fatalf("sign-out does not clear the cookie: %+v", c)
	}
	// The old cookie, replayed, no longer works.
	b.cookie = &old
	if p := b.get("/ui/records"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/ui/signin") {
		t.Fatalf("records with the signed-out cookie: %d", p.status)
	}
	if p := b.post("/ui/signout", url.Values{}); p.status != http.StatusUnauthorized {
		t.Fatalf("POST with the signed-out cookie: %d", p.status)
	}
	sum := sha256.Sum256([]byte(old.Value))
	if _, err := env.Services.DB.UISession(t.Context(), sum[:]); err == nil {
		t.Fatalf("the session is still stored after sign-out")
	}
}

func TestSessionDiesWithItsKeyOrUser(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	for _, how := range []string{"key deleted", "user disabled", "user deleted"} {
		name := strings.ReplaceAll(how, " ", "-")
		k := newUser(t, env, name, []string{"pam_admin"}, nil)
		b := mustSignIn(t, env, k.ID, k.Secret)
		if p := b.get("/ui/records"); p.status != http.StatusOK {
			t.Fatalf("%s: records before: %d", how, p.status)
		}
		csrf := b.csrf()
		var st int
		switch how {
		case "key deleted":
			st = env.Do(t, "DELETE", "/v1/teams/acme/service_users/"+name+"/keys/"+k.ID, nil, nil)
		case "user disabled":
			st = env.Do(t, "PUT", "/v1/teams/acme/service_users/"+name, map[string]any{"status": "DISABLED"}, nil)
		case "user deleted":
			st = env.Do(t, "PUT", "/v1/teams/acme/service_users/"+name, map[string]any{"status": "DELETED"}, nil)
		}
		if st/100 != 2 {
			t.Fatalf("%s: %d", how, st)
		}
		if p := b.get("/ui/records"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/ui/signin") {
			t.Errorf("%s: records after: %d, want a redirect to sign in", how, p.status)
		}
		if p := b.post("/ui/signout", url.Values{"csrf_token": {csrf}}); p.status != http.StatusUnauthorized {
			t.Errorf("%s: POST after: %d, want 401", how, p.status)
		}
	}
}

func TestSessionExpires(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	b := mustSignIn(t, env, env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	env.Clock.Advance(2 * time.Hour) // beyond the token TTL the session stands for
	if p := b.get("/ui/records"); p.status != http.StatusSeeOther {
		t.Fatalf("records after the session expired: %d", p.status)
	}
}

// TestSessionAcrossNodes: on PostgreSQL a session signed in on one node works on another, and
// a key deleted through one node ends its sessions on every node at once.
func TestSessionAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := testenv.StartNodes(t, 2)
	k := newUser(t, nodes[0], "roamer", []string{"pam_admin"}, nil)
	b1 := mustSignIn(t, nodes[0], k.ID, k.Secret)
	b2 := newBrowser(t, nodes[1].Server.URL)
	b2.cookie = b1.cookie
	if p := b2.get("/ui/records"); p.status != http.StatusOK {
		t.Fatalf("the session on the other node: %d", p.status)
	}
	if st := nodes[1].Do(t, "DELETE", "/v1/teams/acme/service_users/roamer/keys/"+k.ID, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete the key: %d", st)
	}
	for i, b := range []*browser{b1, b2} {
		if p := b.get("/ui/records"); p.status != http.StatusSeeOther {
			t.Errorf("node %d after the key was deleted: %d", i+1, p.status)
		}
	}
}
