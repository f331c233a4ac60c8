package script

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/vault"
)

// The seed scripts are Keeper's examples, kept outside the repository as test fixtures; they
// run unchanged.
const seedDir = "../../../shared/seeds/restored"

// seed reads a seed script, or skips the test when the fixtures are not there.
func seed(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(seedDir, name))
	if err != nil {
		t.Skipf("seed script %s is not available (%v)", name, err)
	}
	return b
}

// request is what a test server received.
type request struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// recorder serves status and body to every request and keeps the requests.
type recorder struct {
	mu   sync.Mutex
	reqs []request
}

func (rec *recorder) server(t *testing.T, status int, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, request{r.Method, r.URL.Path, r.Header.Clone(), b})
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (rec *recorder) only(t *testing.T) request {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) != 1 {
		t.Fatalf("the server received %d requests, want 1", len(rec.reqs))
	}
	return rec.reqs[0]
}

// TestSeedRESTPython runs Keeper's REST rotation example (Python, requests) unchanged. It
// finds its credential record by the title "Record with Access Token" and reads url and
// password from it; it posts {userEmail, newPassword} with the token as a bearer token.
func TestSeedRESTPython(t *testing.T) {
	t.Parallel()
	content := seed(t, "rest-api-rotation.py")
	need(t, "python3")
	// The check runs in the environment scripts get.
	check := exec.Command("python3", "-c", "import requests")
	home := t.TempDir()
	check.Env, check.Dir = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8", "TMPDIR=" + home}, home
	if out, err := check.CombinedOutput(); err != nil {
		t.Skipf("the python3 module 'requests' is missing (pip install requests): %s", strings.TrimSpace(string(out)))
	}

	var rec recorder
	srv := rec.server(t, http.StatusCreated, `{"status":"ok"}`)
	token := "rest-T0ken-abc123"
	p := Params{
		Credentials: []vault.Record{{UID: "tok", Type: "login", Title: "Record with Access Token",
			Fields: []vault.Field{fld("url", "", q(srv.URL+"/v1/rotate")), fld("password", "", q(token))}}},
		User: vault.Record{UID: "usr", Type: "pamUser", Title: "Alice",
			Fields: []vault.Field{fld("login", "", `"alice@example.com"`), fld("password", "", `"0ld-pw"`)}},
		NewPassword: secret.FromString(`N3w"pw\x`),
		OldPassword: secret.FromString("0ld-pw"),
	}
	r := newTestRunner(t, Options{})
	res, err := run(t, r, Script{Name: "rest-api-rotation.py", Content: content, Timeout: time.Minute}, p)
	if err != nil || res.ReturnCode != 0 {
		t.Fatalf("run: %+v %v", res, err)
	}
	got := rec.only(t)
	if got.Method != http.MethodPost || got.Path != "/v1/rotate" {
		t.Errorf("request %s %s", got.Method, got.Path)
	}
	if a := got.Header.Get("Authorization"); a != "Bearer "+token {
		t.Errorf("Authorization %q", a)
	}
	var body map[string]string
	if err := json.Unmarshal(got.Body, &body); err != nil || len(body) != 2 || body["userEmail"] != "alice@example.com" || body["newPassword"] != `N3w"pw\x` {
		t.Errorf("body %s (%v)", got.Body, err)
	}
	if !strings.HasPrefix(res.Stdout, "# Python version: 3.") || !strings.Contains(res.Stdout, "# {'status': 'ok'}") {
		t.Errorf("stdout %q", res.Stdout)
	}
}

// TestSeedOktaBash runs Keeper's Okta example (bash, jq, curl -v) unchanged and records what
// it sends, for the Okta connector to build on: it posts
// {"oldPassword": "<old>", "newPassword": "<new>"} with plain strings to
// /api/v1/users/<user>/credentials/change_password, where Okta wants {"value": ...} objects,
// so Okta answers 400; the script still exits 0 (curl has no --fail). It exports every params
// key through unquoted word splitting, so passwords with spaces or glob characters break it.
func TestSeedOktaBash(t *testing.T) {
	t.Parallel()
	content := seed(t, "okta-user-rotation.sh")
	need(t, "bash", "jq", "curl", "base64")
	var rec recorder
	refusal := `{"errorCode":"E0000001","errorSummary":"Api validation failed: oldPassword","errorCauses":[]}`
	srv := rec.server(t, http.StatusBadRequest, refusal)
	token := "00okta-Api-T0ken"
	p := Params{
		Credentials: []vault.Record{{UID: "okta", Type: "login", Title: "Okta API Access Details",
			Fields: []vault.Field{fld("url", "", q(srv.URL)), fld("password", "", q(token))}}},
		User: vault.Record{UID: "usr", Type: "pamUser", Title: "Okta user",
			Fields: []vault.Field{fld("login", "", `"00u1abcdEFGH"`), fld("password", "", `"0ld-Okta-pw1"`)}},
		NewPassword: secret.FromString("N3w-Okta-pw2"),
		OldPassword: secret.FromString("0ld-Okta-pw1"),
	}
	r := newTestRunner(t, Options{})
	res, err := run(t, r, Script{Name: "okta-user-rotation.sh", Content: content, Timeout: time.Minute}, p)
	if err != nil || res.ReturnCode != 0 {
		t.Fatalf("run: %+v %v", res, err)
	}
	got := rec.only(t)
	if got.Method != http.MethodPost || got.Path != "/api/v1/users/00u1abcdEFGH/credentials/change_password" {
		t.Errorf("request %s %s", got.Method, got.Path)
	}
	for k, v := range map[string]string{"Authorization": "SSWS " + token, "Content-Type": "application/json", "Accept": "application/json"} {
		if got.Header.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, got.Header.Get(k), v)
		}
	}
	var body map[string]any
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatalf("body %s: %v", got.Body, err)
	}
	if len(body) != 2 || body["oldPassword"] != "0ld-Okta-pw1" || body["newPassword"] != "N3w-Okta-pw2" {
		t.Errorf("body %s", got.Body)
	}
	if res.Stdout != refusal {
		t.Errorf("stdout %q", res.Stdout)
	}
	// curl -v prints the request headers: the token is redacted.
	if strings.Contains(res.Stderr, token) || !strings.Contains(res.Stderr, "Authorization: SSWS [REDACTED]") {
		t.Errorf("stderr:\n%s", res.Stderr)
	}
	if !strings.Contains(res.Stderr, "< HTTP/1.1 400 Bad Request") {
		t.Errorf("stderr:\n%s", res.Stderr)
	}
}
