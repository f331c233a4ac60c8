package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/api"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/testenv"
)

type user struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	TeamName string   `json:"team_name"`
	Status   string   `json:"status"`
	UserType string   `json:"user_type"`
	Roles    []string `json:"roles"`
	Folders  []string `json:"folders"`
}

type key struct {
	ID        string    `json:"id"`
	Secret    string    `json:"secret"`
	ExpiresAt time.Time `json:"expires_at"`
}

// newUser creates a service user with roles and folders, gives it a key and returns the key
// and a bearer token of it.
func newUser(t *testing.T, env *testenv.Env, name string, roles, folders []string) (key, string) {
	t.Helper()
	var u user
	if st := env.Do(t, "POST", "/v1/teams/acme/service_users", map[string]any{
		"name": name, "roles": roles, "folders": folders,
	}, &u); st != http.StatusCreated {
		t.Fatalf("create %s: %d", name, st)
	}
	var k key
	if st := env.Do(t, "POST", "/v1/teams/acme/service_users/"+name+"/keys", nil, &k); st != http.StatusOK {
		t.Fatalf("rotate %s: %d", name, st)
	}
	return k, env.TokenFor(t, "acme", k.ID, k.Secret)
}

func exchange(t *testing.T, env *testenv.Env, team, keyID, secret string) *http.Response {
	t.Helper()
	resp, _ := env.Raw(t, "POST", "/v1/teams/"+team+"/service_token", "", map[string]string{"key_id": keyID, "key_secret": secret})
	return resp
}

// allowed is the authorization matrix of ARCHITECTURE.md §4: for each route, the roles that
// may call it. "public" means no token; "any" means any authenticated caller of the team.
var allowed = map[string][]string{
	"GET /healthz":                        {"public"},
	"GET /readyz":                         {"public"},
	"GET /metrics":                        {"public"},
	"GET /openapi.json":                   {"public"},
	"POST /v1/teams/{team}/service_token": {"public"},

	"GET /v1/teams/{team}/service_users":                              {"pam_admin", "resource_admin", "security_admin"},
	"POST /v1/teams/{team}/service_users":                             {"resource_admin"},
	"GET /v1/teams/{team}/service_users/{user_name}":                  {"pam_admin", "resource_admin", "security_admin"},
	"PUT /v1/teams/{team}/service_users/{user_name}":                  {"resource_admin"},
	"GET /v1/teams/{team}/service_users/{user_name}/keys":             {"resource_admin"},
	"POST /v1/teams/{team}/service_users/{user_name}/keys":            {"resource_admin"},
	"DELETE /v1/teams/{team}/service_users/{user_name}/keys/{key_id}": {"resource_admin"},

	"POST /v1/teams/{team}/records":               {"pam_admin"},
	"GET /v1/teams/{team}/records":                {"any"},
	"GET /v1/teams/{team}/records/{uid}":          {"pam_admin", "secrets_reader"},
	"PUT /v1/teams/{team}/records/{uid}":          {"pam_admin"},
	"DELETE /v1/teams/{team}/records/{uid}":       {"pam_admin"},
	"GET /v1/teams/{team}/records/{uid}/versions": {"pam_admin"},
	"GET /v1/teams/{team}/notation":               {"pam_admin", "secrets_reader"},

	"POST /v1/teams/{team}/records/{uid}/scripts":               {"pam_admin"},
	"GET /v1/teams/{team}/records/{uid}/scripts":                {"pam_admin"},
	"DELETE /v1/teams/{team}/records/{uid}/scripts/{script_id}": {"pam_admin"},
	"GET /v1/teams/{team}/records/{uid}/script_params":          {"pam_admin"},
	"PUT /v1/teams/{team}/records/{uid}/rotation":               {"pam_admin"},
	"GET /v1/teams/{team}/records/{uid}/rotation":               {"pam_admin", "security_admin"},
	"POST /v1/teams/{team}/records/{uid}/rotate":                {"pam_admin"},
	"GET /v1/teams/{team}/rotations/{id}":                       {"pam_admin", "security_admin"},
	"GET /v1/teams/{team}/rotations":                            {"pam_admin", "security_admin"},
	"GET /v1/teams/{team}/audit_events":                         {"security_admin"},
	"GET /v1/teams/{team}/audit/verify":                         {"security_admin"},
}

func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	ctx := context.Background()

	// Callers: one service user per role, and the credentials that must never work.
	callers := map[string]string{"no token": ""}
	for _, role := range auth.AllRoles {
		_, callers[string(role)] = newUser(t, env, "only-"+string(role), []string{string(role)}, nil)
	}
	all := []string{"resource_admin", "pam_admin", "security_admin", "secrets_reader"}
	_, expired := newUser(t, env, "expiring", all, nil)
	_, disabled := newUser(t, env, "disabled", all, nil)
	deletedKey, deletedKeyToken := newUser(t, env, "deleted-key", all, nil)
	other, err := env.Auth.CreateTeam(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	callers["another team's token"] = env.TokenFor(t, "other", other.KeyID, other.KeySecret.Reveal())
	callers["disabled user"] = disabled
	callers["deleted key"] = deletedKeyToken
	callers["expired token"] = expired
	if st := env.Do(t, "PUT", "/v1/teams/acme/service_users/disabled", map[string]string{"status": "DISABLED"}, nil); st != 200 {
		t.Fatalf("disable: %d", st)
	}
	if st := env.Do(t, "DELETE", "/v1/teams/acme/service_users/deleted-key/keys/"+deletedKey.ID, nil, nil); st != 204 {
		t.Fatalf("delete key: %d", st)
	}
	env.Clock.Advance(2 * time.Hour) // past every token's lifetime but those minted below
	env.Token = env.TokenFor(t, "acme", env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	for _, role := range auth.AllRoles {
		name := "only-" + string(role)
		var k key
		env.Do(t, "POST", "/v1/teams/acme/service_users/"+name+"/keys", nil, &k)
		callers[string(role)] = env.TokenFor(t, "acme", k.ID, k.Secret)
	}
	callers["another team's token"] = env.TokenFor(t, "other", other.KeyID, other.KeySecret.Reveal())

	rec := create(t, env, pamUser("matrix", "pw"))
	targetKey, _ := newUser(t, env, "target", nil, nil)
	paths := strings.NewReplacer("{team}", "acme", "{uid}", rec.UID, "{user_name}", "target", "{key_id}", targetKey.ID,
		"{script_id}", "no-such-script", "{id}", "no-such-run")
	bodies := map[string]any{
		"POST /v1/teams/{team}/service_token":            map[string]string{"key_id": env.Creds.KeyID, "key_secret": env.Creds.KeySecret.Reveal()},
		"POST /v1/teams/{team}/service_users":            map[string]any{"name": "made-in-matrix"},
		"PUT /v1/teams/{team}/service_users/{user_name}": map[string]any{"folders": []string{"Apps"}},
		"POST /v1/teams/{team}/records":                  pamUser("made-in-matrix", "pw"),
		"PUT /v1/teams/{team}/records/{uid}":             map[string]any{"type": "pamUser", "title": "matrix", "revision": 1, "fields": []map[string]any{{"type": "login", "value": []string{"m"}}}},
		"POST /v1/teams/{team}/records/{uid}/scripts":    map[string]any{"name": "noop.sh", "content_base64": "IyEvYmluL3NoCg=="},
		"PUT /v1/teams/{team}/records/{uid}/rotation":    map[string]any{"method": "scripts_only"},
	}
	query := map[string]string{"GET /v1/teams/{team}/notation": "?ref=keeper://" + rec.UID + "/field/password"}

	routes := api.Routes()
	declared := map[string]bool{}
	for _, rt := range routes {
		declared[rt.Method+" "+rt.Path] = true
	}
	for entry := range allowed {
		if !declared[entry] {
			t.Errorf("the matrix has %q, which is not a route", entry)
		}
	}
	callerNames := make([]string, 0, len(callers))
	for name := range callers {
		callerNames = append(callerNames, name)
	}
	slices.Sort(callerNames)
	// Mutating routes last, so that deletions do not turn later checks into 404s.
	slices.SortStableFunc(routes, func(a, b api.Route) int {
		return strings.Compare(mutatingOrder(a.Method), mutatingOrder(b.Method))
	})
	for _, rt := range routes {
		entry := rt.Method + " " + rt.Path
		roles, ok := allowed[entry]
		if !ok {
			t.Errorf("route %s has no entry in the authorization matrix: add one", entry)
			continue
		}
		if rt.Public != slices.Contains(roles, "public") {
			t.Errorf("%s: declared public=%v, matrix says %v", entry, rt.Public, roles)
		}
		path := paths.Replace(rt.Path) + query[entry]
		for _, name := range callerNames {
			resp, raw := env.Raw(t, rt.Method, path, callers[name], bodies[entry])
			want := "denied"
			switch {
			case slices.Contains(roles, "public"):
				want = "allowed"
			case strings.Contains(name, " ") || name == "disabled user" || name == "deleted key" || name == "expired token":
				want = "unauthenticated"
			case slices.Contains(roles, "any") || slices.Contains(roles, name):
				want = "allowed"
			}
			got := resp.StatusCode
			switch want {
			case "allowed":
				if got == 401 || got == 403 || got >= 500 {
					t.Errorf("%s as %s: %d %s, want it allowed", entry, name, got, raw)
				}
			case "unauthenticated":
				if got != 401 {
					t.Errorf("%s as %s: %d, want 401", entry, name, got)
				}
			case "denied":
				if got != 403 {
					t.Errorf("%s as %s: %d, want 403", entry, name, got)
				}
			}
		}
	}
}

func mutatingOrder(method string) string {
	if method == "DELETE" {
		return "2"
	}
	if method == "GET" {
		return "0"
	}
	return "1"
}

func TestSecretsReaderFolderGrant(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	inApps := pamUser("payments db", "apps-pw")
	inApps["folder"] = "Apps/Payments"
	a := create(t, env, inApps)
	elsewhere := create(t, env, pamUser("okta admin", "okta-pw")) // folder Shared/Okta
	_, reader := newUser(t, env, "app-reader", []string{"secrets_reader"}, []string{"Apps"})

	var got record
	if resp, raw := env.Raw(t, "GET", "/v1/teams/acme/records/"+a.UID, reader, nil); resp.StatusCode != 200 || json.Unmarshal(raw, &got) != nil || got.UID != a.UID {
		t.Fatalf("read in grant: %d %s", resp.StatusCode, raw)
	}
	resp, raw := env.Raw(t, "GET", "/v1/teams/acme/notation?ref=keeper://payments%20db/field/password", reader, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(raw), "apps-pw") {
		t.Fatalf("notation in grant: %d %s", resp.StatusCode, raw)
	}
	wantError(t, env, "GET", "/v1/teams/acme/records/"+elsewhere.UID, reader, nil, 404, "not_found")
	wantError(t, env, "GET", "/v1/teams/acme/notation?ref=keeper://"+elsewhere.UID+"/field/password", reader, nil, 404, "not_found")
	wantError(t, env, "GET", "/v1/teams/acme/notation?ref=keeper://okta%20admin/field/password", reader, nil, 404, "not_found")
	resp, raw = env.Raw(t, "GET", "/v1/teams/acme/records", reader, nil)
	if resp.StatusCode != 200 || strings.Contains(string(raw), elsewhere.UID) || !strings.Contains(string(raw), a.UID) {
		t.Fatalf("list within grant: %d %s", resp.StatusCode, raw)
	}
	create := pamUser("new", "x")
	create["folder"] = "Apps"
	wantError(t, env, "POST", "/v1/teams/acme/records", reader, create, 403, "forbidden")
	update := pamUser("payments db", "changed")
	update["folder"] = "Apps/Payments"
	update["revision"] = 1
	wantError(t, env, "PUT", "/v1/teams/acme/records/"+a.UID, reader, update, 403, "forbidden")
	wantError(t, env, "DELETE", "/v1/teams/acme/records/"+a.UID, reader, nil, 403, "forbidden")
	env.Do(t, "GET", "/v1/teams/acme/records/"+a.UID, nil, &got)
	if got.Revision != 1 || !strings.Contains(string(got.Fields), "apps-pw") {
		t.Fatalf("the reader changed the record: %+v", got)
	}

	// A pam_admin limited to Apps cannot see or write elsewhere either.
	_, appsAdmin := newUser(t, env, "apps-admin", []string{"pam_admin"}, []string{"Apps"})
	wantError(t, env, "GET", "/v1/teams/acme/records/"+elsewhere.UID, appsAdmin, nil, 404, "not_found")
	wantError(t, env, "DELETE", "/v1/teams/acme/records/"+elsewhere.UID, appsAdmin, nil, 404, "not_found")
	outside := pamUser("outside", "x") // folder Shared/Okta
	wantError(t, env, "POST", "/v1/teams/acme/records", appsAdmin, outside, 403, "folder_not_granted")
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	oldKey, oldToken := newUser(t, env, "robot", []string{"pam_admin"}, nil)
	var newKey key
	if st := env.Do(t, "POST", "/v1/teams/acme/service_users/robot/keys", nil, &newKey); st != 200 || newKey.Secret == "" || newKey.ID == oldKey.ID {
		t.Fatalf("rotate: %d %+v", st, newKey)
	}
	if !newKey.ExpiresAt.IsZero() {
		t.Fatalf("the new key expires: %v", newKey.ExpiresAt)
	}
	var keys struct {
		List []map[string]any `json:"list"`
	}
	_, raw := env.Raw(t, "GET", "/v1/teams/acme/service_users/robot/keys", env.Token, nil)
	if err := json.Unmarshal(raw, &keys); err != nil || len(keys.List) != 2 {
		t.Fatalf("keys: %s", raw)
	}
	if strings.Contains(string(raw), oldKey.Secret) || strings.Contains(string(raw), newKey.Secret) || strings.Contains(string(raw), "secret") {
		t.Fatalf("key list shows a secret: %s", raw)
	}
	for _, k := range keys.List {
		if k["id"] == oldKey.ID {
			exp, _ := time.Parse(time.RFC3339Nano, k["expires_at"].(string))
			if d := time.Until(exp); d < 47*time.Hour || d > 49*time.Hour {
				t.Fatalf("old key expires in %v, want 48h", d)
			}
		}
	}
	// The old key keeps minting tokens until its expiry; the new one works.
	env.Clock.Advance(47 * time.Hour)
	oldAgain := env.TokenFor(t, "acme", oldKey.ID, oldKey.Secret)
	env.TokenFor(t, "acme", newKey.ID, newKey.Secret)
	env.Clock.Advance(2 * time.Hour)
	if resp := exchange(t, env, "acme", oldKey.ID, oldKey.Secret); resp.StatusCode != 401 {
		t.Fatalf("the old key minted a token after its expiry: %d", resp.StatusCode)
	}
	// A token minted just before the key expired dies with the key.
	if resp, _ := env.Raw(t, "GET", "/v1/teams/acme/records", oldAgain, nil); resp.StatusCode != 401 {
		t.Fatalf("a token outlived its key: %d", resp.StatusCode)
	}
	_ = oldToken

	// Deleting a key kills its tokens at once.
	env.Token = env.TokenFor(t, "acme", env.Creds.KeyID, env.Creds.KeySecret.Reveal())
	var third key
	env.Do(t, "POST", "/v1/teams/acme/service_users/robot/keys", nil, &third)
	newToken := env.TokenFor(t, "acme", newKey.ID, newKey.Secret)
	if resp, _ := env.Raw(t, "GET", "/v1/teams/acme/records", newToken, nil); resp.StatusCode != 200 {
		t.Fatalf("token of the second key: %d", resp.StatusCode)
	}
	if st := env.Do(t, "DELETE", "/v1/teams/acme/service_users/robot/keys/"+newKey.ID, nil, nil); st != 204 {
		t.Fatalf("delete: %d", st)
	}
	if resp, _ := env.Raw(t, "GET", "/v1/teams/acme/records", newToken, nil); resp.StatusCode != 401 {
		t.Fatalf("a deleted key's token still works: %d", resp.StatusCode)
	}
	if resp := exchange(t, env, "acme", newKey.ID, newKey.Secret); resp.StatusCode != 401 {
		t.Fatalf("a deleted key mints tokens: %d", resp.StatusCode)
	}
	env.TokenFor(t, "acme", third.ID, third.Secret)
	wantError(t, env, "DELETE", "/v1/teams/acme/service_users/robot/keys/"+newKey.ID, env.Token, nil, 404, "not_found")
}

func TestServiceUserPaging(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	for _, n := range []string{"page-e", "page-a", "page-c", "page-b", "page-d"} {
		if st := env.Do(t, "POST", "/v1/teams/acme/service_users", map[string]any{"name": n}, nil); st != 201 {
			t.Fatalf("create %s: %d", n, st)
		}
	}
	var names []string
	next := "/v1/teams/acme/service_users?starts_with=page-&count=2"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		resp, raw := env.Raw(t, "GET", next, env.Token, nil)
		var page struct {
			List []user `json:"list"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(raw, &page) != nil || len(page.List) > 2 {
			t.Fatalf("%s: %d %s", next, resp.StatusCode, raw)
		}
		for _, u := range page.List {
			if u.TeamName != "acme" || u.UserType != "service" || u.Status != "ACTIVE" || u.ID == "" {
				t.Fatalf("user object %+v", u)
			}
			names = append(names, u.Name)
		}
		next = ""
		if link := resp.Header.Get("Link"); link != "" {
			target, rel, _ := strings.Cut(link, ">; ")
			if rel != `rel="next"` || !strings.Contains(target, "offset=") {
				t.Fatalf("Link header %q", link)
			}
			next = strings.TrimPrefix(target, "<")
		}
	}
	if want := []string{"page-a", "page-b", "page-c", "page-d", "page-e"}; !slices.Equal(names, want) {
		t.Fatalf("paged names %v, want %v", names, want)
	}
	var contains struct {
		List []user `json:"list"`
	}
	env.Do(t, "GET", "/v1/teams/acme/service_users?contains=GE-C", nil, &contains)
	if len(contains.List) != 1 || contains.List[0].Name != "page-c" {
		t.Fatalf("contains: %+v", contains.List)
	}
	env.Do(t, "PUT", "/v1/teams/acme/service_users/page-d", map[string]string{"status": "DISABLED"}, nil)
	env.Do(t, "GET", "/v1/teams/acme/service_users?status=DISABLED", nil, &contains)
	if len(contains.List) != 1 || contains.List[0].Name != "page-d" {
		t.Fatalf("status filter: %+v", contains.List)
	}
	wantError(t, env, "GET", "/v1/teams/acme/service_users?status=GONE", env.Token, nil, 400, "invalid_request")
}

func TestServiceUserRules(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	wantError(t, env, "PUT", "/v1/teams/acme/service_users/admin", env.Token, map[string]string{"status": "DISABLED"}, 403, "cannot_change_self")
	wantError(t, env, "PUT", "/v1/teams/acme/service_users/admin", env.Token, map[string]string{"status": "DELETED"}, 403, "cannot_change_self")
	wantError(t, env, "PUT", "/v1/teams/acme/service_users/admin", env.Token, map[string]any{"roles": []string{"pam_admin"}}, 403, "cannot_change_self")
	wantError(t, env, "POST", "/v1/teams/acme/service_users", env.Token, map[string]any{"name": "x", "roles": []string{"root"}}, 400, "invalid_request")
	wantError(t, env, "POST", "/v1/teams/acme/service_users", env.Token, map[string]any{"name": "a/b"}, 400, "invalid_request")
	wantError(t, env, "POST", "/v1/teams/acme/service_users", env.Token, map[string]any{}, 400, "missing_required_field")
	wantError(t, env, "POST", "/v1/teams/acme/service_users", env.Token, map[string]any{"name": "admin"}, 409, "service_user_exists")
	wantError(t, env, "GET", "/v1/teams/acme/service_users/nobody", env.Token, nil, 404, "not_found")

	_, token := newUser(t, env, "temp", []string{"pam_admin"}, nil)
	if resp, _ := env.Raw(t, "GET", "/v1/teams/acme/records", token, nil); resp.StatusCode != 200 {
		t.Fatalf("active user: %d", resp.StatusCode)
	}
	var u user
	env.Do(t, "PUT", "/v1/teams/acme/service_users/temp", map[string]string{"status": "DELETED"}, &u)
	if u.Status != "DELETED" {
		t.Fatalf("after delete: %+v", u)
	}
	if resp, _ := env.Raw(t, "GET", "/v1/teams/acme/records", token, nil); resp.StatusCode != 401 {
		t.Fatalf("a deleted user's token works: %d", resp.StatusCode)
	}
	wantError(t, env, "PUT", "/v1/teams/acme/service_users/temp", env.Token, map[string]string{"status": "ACTIVE"}, 409, "service_user_deleted")
}

func TestTeamsAreIsolated(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	rec := create(t, env, pamUser("acme secret", "acme-pw"))
	other, err := env.Auth.CreateTeam(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	otherToken := env.TokenFor(t, "other", other.KeyID, other.KeySecret.Reveal())
	// Through its own team's paths, the other team sees nothing of acme.
	resp, raw := env.Raw(t, "GET", "/v1/teams/other/records", otherToken, nil)
	if resp.StatusCode != 200 || strings.Contains(string(raw), rec.UID) {
		t.Fatalf("other team's list: %d %s", resp.StatusCode, raw)
	}
	wantError(t, env, "GET", "/v1/teams/other/records/"+rec.UID, otherToken, nil, 404, "not_found")
	wantError(t, env, "GET", "/v1/teams/other/notation?ref=keeper://acme%20secret/field/password", otherToken, nil, 404, "not_found")
	wantError(t, env, "DELETE", "/v1/teams/other/records/"+rec.UID, otherToken, nil, 404, "not_found")
	var users struct {
		List []user `json:"list"`
	}
	resp, raw = env.Raw(t, "GET", "/v1/teams/other/service_users", otherToken, nil)
	if json.Unmarshal(raw, &users) != nil || len(users.List) != 1 || users.List[0].TeamName != "other" {
		t.Fatalf("other team's users: %d %s", resp.StatusCode, raw)
	}
	wantError(t, env, "DELETE", "/v1/teams/other/service_users/admin/keys/"+env.Creds.KeyID, otherToken, nil, 404, "not_found")
	if resp := exchange(t, env, "other", env.Creds.KeyID, env.Creds.KeySecret.Reveal()); resp.StatusCode != 401 {
		t.Fatalf("acme's key minted a token for the other team: %d", resp.StatusCode)
	}
	env.TokenFor(t, "acme", env.Creds.KeyID, env.Creds.KeySecret.Reveal())
}

func TestBruteForceIsLimited(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	k, _ := newUser(t, env, "victim", []string{"pam_admin"}, nil)
	for i := range auth.DefaultFailureLimit {
		if resp := exchange(t, env, "acme", k.ID, "guess"+string(rune('a'+i))); resp.StatusCode != 401 {
			t.Fatalf("guess %d: %d", i, resp.StatusCode)
		}
	}
	resp, raw := env.Raw(t, "POST", "/v1/teams/acme/service_token", "", map[string]string{"key_id": k.ID, "key_secret": "another guess"})
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(raw), "too_many_attempts") {
		t.Fatalf("after %d failures: %d %q %s", auth.DefaultFailureLimit, resp.StatusCode, resp.Header.Get("Retry-After"), raw)
	}
	// The correct secret is refused too until the window passes.
	if resp := exchange(t, env, "acme", k.ID, k.Secret); resp.StatusCode != 429 {
		t.Fatalf("correct secret during the block: %d", resp.StatusCode)
	}
	// Only that key id is blocked from that address: another key from the same address (a
	// proxy's, say) still gets its token.
	if resp := exchange(t, env, "acme", env.Creds.KeyID, env.Creds.KeySecret.Reveal()); resp.StatusCode != 200 {
		t.Fatalf("another key from the same address during the block: %d", resp.StatusCode)
	}
	// Tokens already issued keep working: the limit is on exchanges only.
	if resp, _ := env.Raw(t, "GET", "/v1/teams/acme/records", env.Token, nil); resp.StatusCode != 200 {
		t.Fatalf("existing token during the block: %d", resp.StatusCode)
	}
	env.Clock.Advance(auth.DefaultFailureWindow + time.Second)
	env.TokenFor(t, "acme", k.ID, k.Secret)
}

func TestRawFilesHoldNoKeySecretOrToken(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	k, token := newUser(t, env, "robot", []string{"pam_admin"}, nil)
	secrets := []string{env.Creds.KeySecret.Reveal(), env.Token, k.Secret, token}
	// The part of each bearer token after its id is the secret part.
	for _, tok := range []string{env.Token, token} {
		secrets = append(secrets, tok[strings.LastIndex(tok, ".")+1:])
	}
	found := 0
	for _, name := range []string{"keyturn.db", "keyturn.db-wal", "keyturn.db-shm"} {
		b, err := os.ReadFile(filepath.Join(env.Dir, name))
		if err != nil {
			continue
		}
		found++
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a key secret or token", name)
			}
		}
	}
	if found < 2 {
		t.Fatalf("only %d database files found", found)
	}
}
