package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/testenv"
)

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type record struct {
	UID      string          `json:"uid"`
	Type     string          `json:"type"`
	Title    string          `json:"title"`
	Folder   string          `json:"folder"`
	Fields   json.RawMessage `json:"fields"`
	Revision int64           `json:"revision"`
}

func pamUser(title, password string) map[string]any {
	return map[string]any{
		"type": "pamUser", "title": title, "folder": "Shared/Okta",
		"fields": []map[string]any{
			{"type": "login", "value": []string{title + "@example.com"}},
			{"type": "password", "value": []string{password}},
		},
	}
}

func create(t *testing.T, env *testenv.Env, body any) record {
	t.Helper()
	var rec record
	if st := env.Do(t, "POST", "/v1/teams/acme/records", body, &rec); st != http.StatusCreated {
		t.Fatalf("create: status %d", st)
	}
	return rec
}

// wantError checks the status and that the body is {"code","message"} with the code.
func wantError(t *testing.T, env *testenv.Env, method, path, token string, body any, status int, code string) apiError {
	t.Helper()
	resp, raw := env.Raw(t, method, path, token, body)
	var e apiError
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("%s %s: body %q is not {code,message}: %v", method, path, raw, err)
	}
	if resp.StatusCode != status || e.Code != code || e.Message == "" {
		t.Fatalf("%s %s: %d %+v, want %d %s", method, path, resp.StatusCode, e, status, code)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	return e
}

func TestRecordLifecycle(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := create(t, env, pamUser("alice", "first-pw"))
	if len(rec.UID) != 22 || rec.Revision != 1 {
		t.Fatalf("created %+v", rec)
	}
	var got record
	if st := env.Do(t, "GET", "/v1/teams/acme/records/"+rec.UID, nil, &got); st != 200 || got.Title != "alice" {
		t.Fatalf("get: %d %+v", st, got)
	}
	update := pamUser("alice", "second-pw")
	update["revision"] = 1
	var updated record
	if st := env.Do(t, "PUT", "/v1/teams/acme/records/"+rec.UID, update, &updated); st != 200 || updated.Revision != 2 {
		t.Fatalf("update: %d %+v", st, updated)
	}
	var versions struct {
		List []struct {
			Version int64   `json:"version"`
			State   string  `json:"state"`
			Value   *string `json:"value"`
		} `json:"list"`
	}
	env.Do(t, "GET", "/v1/teams/acme/records/"+rec.UID+"/versions", nil, &versions)
	if len(versions.List) != 2 || versions.List[0].State != "current" || versions.List[1].State != "previous" || versions.List[0].Value != nil {
		t.Fatalf("versions without reveal: %+v", versions)
	}
	env.Do(t, "GET", "/v1/teams/acme/records/"+rec.UID+"/versions?reveal=true", nil, &versions)
	if *versions.List[0].Value != "second-pw" || *versions.List[1].Value != "first-pw" {
		t.Fatalf("versions with reveal: %+v", versions)
	}
	var val struct {
		Value string `json:"value"`
	}
	env.Do(t, "GET", "/v1/teams/acme/notation?ref=keeper://"+rec.UID+"/field/password", nil, &val)
	if val.Value != "second-pw" {
		t.Fatalf("notation: %q", val.Value)
	}
	if st := env.Do(t, "DELETE", "/v1/teams/acme/records/"+rec.UID, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d", st)
	}
	wantError(t, env, "GET", "/v1/teams/acme/records/"+rec.UID, env.Token, nil, 404, "not_found")
}

func TestStaleRevisionIs409AndChangesNothing(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := create(t, env, pamUser("bob", "one"))
	first := pamUser("bob", "two")
	first["revision"] = 1
	if st := env.Do(t, "PUT", "/v1/teams/acme/records/"+rec.UID, first, nil); st != 200 {
		t.Fatalf("first update: %d", st)
	}
	stale := pamUser("bob renamed", "three")
	stale["revision"] = 1
	e := wantError(t, env, "PUT", "/v1/teams/acme/records/"+rec.UID, env.Token, stale, 409, "stale_revision")
	if !strings.Contains(e.Message, "revision 2") {
		t.Fatalf("message %q does not name the current revision", e.Message)
	}
	var got record
	env.Do(t, "GET", "/v1/teams/acme/records/"+rec.UID, nil, &got)
	if got.Revision != 2 || got.Title != "bob" || !strings.Contains(string(got.Fields), `"two"`) {
		t.Fatalf("record changed by a stale update: %+v %s", got, got.Fields)
	}
	missing := pamUser("bob", "x")
	wantError(t, env, "PUT", "/v1/teams/acme/records/"+rec.UID, env.Token, missing, 400, "missing_required_field")
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	path := "/v1/teams/acme/records"
	big := fmt.Sprintf(`{"type":"login","title":"big","notes":%q}`, strings.Repeat("a", 1<<20))
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed JSON", "POST", path, []byte(`{"type":`), 400, "malformed_json"},
		{"not an object", "POST", path, []byte(`[1,2]`), 400, "malformed_json"},
		{"empty body", "POST", path, []byte(``), 400, "malformed_json"},
		{"unknown key", "POST", path, []byte(`{"type":"login","title":"x","pasword":"x"}`), 400, "unknown_field"},
		{"unknown type", "POST", path, map[string]any{"type": "bogus", "title": "x"}, 400, "unknown_record_type"},
		{"missing login", "POST", path, map[string]any{"type": "pamUser", "title": "x"}, 400, "missing_required_field"},
		{"missing title", "POST", path, map[string]any{"type": "login"}, 400, "invalid_request"},
		{"body over 1 MiB", "POST", path, []byte(big), 413, "body_too_large"},
		{"unknown uid", "GET", path + "/AAAAAAAAAAAAAAAAAAAAAA", nil, 404, "not_found"},
		{"unknown uid update", "PUT", path + "/AAAAAAAAAAAAAAAAAAAAAA", map[string]any{"type": "login", "title": "x", "revision": 1}, 404, "not_found"},
		{"unknown uid delete", "DELETE", path + "/AAAAAAAAAAAAAAAAAAAAAA", nil, 404, "not_found"},
		{"bad notation", "GET", "/v1/teams/acme/notation?ref=keeper://x/bogus/y", nil, 400, "bad_notation"},
		{"no notation", "GET", "/v1/teams/acme/notation", nil, 400, "bad_notation"},
		{"bad count", "GET", path + "?count=0", nil, 400, "invalid_request"},
		{"bad folder filter", "GET", path + "?folder=a//b", nil, 400, "invalid_request"},
		{"no route", "GET", "/v1/nothing", nil, 404, "no_such_route"},
		{"unknown type filter", "GET", path + "?type=nope", nil, 400, "invalid_request"},
		{"unknown status filter", "GET", "/v1/teams/acme/rotations?status=bogus", nil, 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, env, tc.method, tc.path, env.Token, tc.body, tc.status, tc.code)
		})
	}
	var list struct {
		List []record `json:"list"`
	}
	env.Do(t, "GET", path, nil, &list)
	if len(list.List) != 0 {
		t.Fatalf("bad input stored records: %+v", list.List)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	path := "/v1/teams/acme/records"
	wantError(t, env, "GET", path, "", nil, 401, "unauthorized")
	wantError(t, env, "GET", path, "not-a-token", nil, 401, "unauthorized")
	wantError(t, env, "GET", path, env.Token+"x", nil, 401, "unauthorized")
	wantError(t, env, "GET", "/v1/teams/other/records", env.Token, nil, 401, "unauthorized")

	tokenPath := "/v1/teams/acme/service_token"
	wrongSecret := wantError(t, env, "POST", tokenPath, "", map[string]string{"key_id": env.Creds.KeyID, "key_secret": "wrong"}, 401, "unauthorized")
	wrongID := wantError(t, env, "POST", tokenPath, "", map[string]string{"key_id": "0b5a8f1e-3c6d-4e2a-9f70-1d2c3b4a5e6f", "key_secret": env.Creds.KeySecret.Reveal()}, 401, "unauthorized")
	// A key id keyturn cannot have issued is refused as such; that tells nothing about keys.
	wantError(t, env, "POST", tokenPath, "", map[string]string{"key_id": "nope", "key_secret": env.Creds.KeySecret.Reveal()}, 400, "invalid_key_id")
	wrongTeam := wantError(t, env, "POST", "/v1/teams/other/service_token", "", map[string]string{"key_id": env.Creds.KeyID, "key_secret": env.Creds.KeySecret.Reveal()}, 401, "unauthorized")
	if wrongSecret != wrongID || wrongID != wrongTeam {
		t.Fatalf("answers differ, so they tell which part was wrong: %+v %+v %+v", wrongSecret, wrongID, wrongTeam)
	}
	wantError(t, env, "POST", tokenPath, "", map[string]string{"key_id": env.Creds.KeyID}, 400, "missing_required_field")

	var list struct {
		List []record `json:"list"`
	}
	if st := env.Do(t, "GET", path, nil, &list); st != 200 {
		t.Fatalf("valid token: %d", st)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp, _ := env.Raw(t, "GET", p, "", nil); resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
}

func TestListFiltersAndPaging(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	for i := range 5 {
		create(t, env, pamUser(fmt.Sprintf("user %d", i), "pw"))
	}
	other := pamUser("elsewhere", "pw")
	other["folder"] = "Infra"
	other["type"] = "pamUser"
	create(t, env, other)

	seen := map[string]bool{}
	next := "/v1/teams/acme/records?folder=Shared&count=2"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		resp, raw := env.Raw(t, "GET", next, env.Token, nil)
		var list struct {
			List []map[string]any `json:"list"`
		}
		if err := json.Unmarshal(raw, &list); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", next, resp.StatusCode, raw)
		}
		for _, item := range list.List {
			if _, ok := item["fields"]; ok {
				t.Fatal("a list item carries field values")
			}
			uid := item["uid"].(string)
			if seen[uid] {
				t.Fatalf("%s listed twice", uid)
			}
			seen[uid] = true
		}
		next = ""
		if link := resp.Header.Get("Link"); link != "" {
			next = strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
		}
	}
	if len(seen) != 5 {
		t.Fatalf("paging saw %d records, want 5", len(seen))
	}
	var list struct {
		List []record `json:"list"`
	}
	env.Do(t, "GET", "/v1/teams/acme/records?title=ELSE", nil, &list)
	if len(list.List) != 1 || list.List[0].Folder != "Infra" {
		t.Fatalf("title filter: %+v", list.List)
	}
	env.Do(t, "GET", "/v1/teams/acme/records?type=login", nil, &list)
	if len(list.List) != 0 {
		t.Fatalf("type filter: %+v", list.List)
	}
}

// TestMethodNotAllowed: a method a route does not take answers 405 with Allow, naming the
// methods it does take; a path no route has stays 404.
func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	for _, tc := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/teams/acme/records", "GET, HEAD, POST"},
		{"PATCH", "/v1/teams/acme/records/AAAAAAAAAAAAAAAAAAAAAA", "GET, HEAD, PUT, DELETE"},
		{"GET", "/v1/teams/acme/service_token", "POST"},
	} {
		resp, _ := env.Raw(t, tc.method, tc.path, env.Token, nil)
		if got := resp.Header.Get("Allow"); resp.StatusCode != 405 || got != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want 405 %q", tc.method, tc.path, resp.StatusCode, got, tc.allow)
		}
		e := wantError(t, env, tc.method, tc.path, env.Token, nil, 405, "method_not_allowed")
		if !strings.Contains(e.Message, tc.allow) {
			t.Errorf("message %q does not name %s", e.Message, tc.allow)
		}
	}
	wantError(t, env, "DELETE", "/v1/nothing", env.Token, nil, 404, "no_such_route")
}
