package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// getUser reads a service user through the API.
func (h *harness) getUser(name string) User {
	h.t.Helper()
	var u User
	h.api("GET", "/v1/teams/acme/service_users/"+name, h.token(), nil, &u, http.StatusOK)
	return u
}

// exchange trades an API key for a bearer token through the API, expecting status want.
func (h *harness) exchange(keyID, keySecret string, want int) string {
	h.t.Helper()
	var out struct {
		BearerToken string `json:"bearer_token"`
	}
	var dst any
	if want == http.StatusOK {
		dst = &out
	}
	h.api("POST", "/v1/teams/acme/service_token", "", map[string]string{"key_id": keyID, "key_secret": keySecret}, dst, want)
	return out.BearerToken
}

func roleNames(roles []Role) []string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = string(r)
	}
	return out
}

// tableRows returns a table's lines after the header, checking the header against header.
func tableRows(t *testing.T, out, header string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !regexp.MustCompile(`^` + header + `$`).MatchString(lines[0]) {
		t.Fatalf("table header %q, want %s:\n%s", lines[0], header, out)
	}
	if regexp.MustCompile(`(?m) $`).MatchString(out) {
		t.Errorf("table has trailing spaces:\n%q", out)
	}
	return lines[1:]
}

func TestServiceUserRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	// create: the user is shown; the API has it
	out := h.ok("", "service-user", "create", "rotator", "--role", "pam_admin", "--folder", "Shared/Okta")
	for _, re := range []string{`(?m)^Name:\s+rotator$`, `(?m)^Status:\s+ACTIVE$`, `(?m)^Roles:\s+pam_admin$`,
		`(?m)^Folders:\s+Shared/Okta$`, `(?m)^Team:\s+acme$`, `(?m)^ID:\s+\S+$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("create output does not match %s:\n%s", re, out)
		}
	}
	rot := h.getUser("rotator")
	if rot.Status != "ACTIVE" || !slices.Equal(roleNames(rot.Roles), []string{"pam_admin"}) || !slices.Equal(rot.Folders, []string{"Shared/Okta"}) {
		t.Fatalf("stored user: %+v", rot)
	}
	if !strings.Contains(out, rot.ID) {
		t.Errorf("create output lacks the id %s:\n%s", rot.ID, out)
	}

	// create -o json: the API's user
	var r1 User
	if err := json.Unmarshal([]byte(h.ok("", "service-user", "create", "reader-1", "--role", "secrets_reader", "-o", "json")), &r1); err != nil {
		t.Fatal(err)
	}
	if r1.Name != "reader-1" || r1.ID == "" || r1.TeamName != "acme" || r1.UserType != "service" || r1.Status != "ACTIVE" ||
		!slices.Equal(roleNames(r1.Roles), []string{"secrets_reader"}) || len(r1.Folders) != 0 || r1.DeletedAt != nil {
		t.Fatalf("create -o json: %+v", r1)
	}
	h.ok("", "service-user", "create", "reader-2", "--role", "secrets_reader", "--role", "security_admin",
		"--folder", "A", "--folder", "B/C")
	h.ok("", "service-user", "create", "plain")

	// list: every user, in a table
	rows := tableRows(t, h.ok("", "service-user", "list"), `NAME\s+STATUS\s+ROLES\s+FOLDERS\s+ID`)
	if len(rows) != 5 {
		t.Fatalf("list has %d rows, want 5 (admin and four):\n%s", len(rows), strings.Join(rows, "\n"))
	}
	for _, re := range []string{
		`^rotator\s+ACTIVE\s+pam_admin\s+Shared/Okta\s+` + regexp.QuoteMeta(rot.ID) + `$`,
		`^reader-1\s+ACTIVE\s+secrets_reader\s+\(all\)\s+` + regexp.QuoteMeta(r1.ID) + `$`,
		`^reader-2\s+ACTIVE\s+secrets_reader,security_admin\s+A,B/C\s+\S+$`,
		`^plain\s+ACTIVE\s+\(none\)\s+\(all\)\s+\S+$`,
		`^admin\s+ACTIVE\s+\S*resource_admin\S*\s+\(all\)\s+\S+$`,
	} {
		if !slices.ContainsFunc(rows, regexp.MustCompile(re).MatchString) {
			t.Errorf("list has no row matching %s:\n%s", re, strings.Join(rows, "\n"))
		}
	}

	// list filters, passed to the API
	listNames := func(args ...string) []string {
		t.Helper()
		var listed struct {
			List []User `json:"list"`
		}
		if err := json.Unmarshal([]byte(h.ok("", append(append([]string{"service-user", "list"}, args...), "-o", "json")...)), &listed); err != nil {
			t.Fatal(err)
		}
		names := []string{}
		for _, u := range listed.List {
			names = append(names, u.Name)
		}
		slices.Sort(names)
		return names
	}
	if got := listNames("--contains", "eader"); !slices.Equal(got, []string{"reader-1", "reader-2"}) {
		t.Errorf("list --contains eader: %v", got)
	}
	if got := listNames("--starts-with", "rot"); !slices.Equal(got, []string{"rotator"}) {
		t.Errorf("list --starts-with rot: %v", got)
	}
	if got := listNames("--status", "DISABLED"); len(got) != 0 {
		t.Errorf("list --status DISABLED before any is disabled: %v", got)
	}
	if got := listNames("--status", "ACTIVE", "--starts-with", "reader", "--contains", "2"); !slices.Equal(got, []string{"reader-2"}) {
		t.Errorf("list with three filters: %v", got)
	}
	if rows := tableRows(t, h.ok("", "service-user", "list", "--contains", "nobody"), `NAME\s+STATUS\s+ROLES\s+FOLDERS\s+ID`); len(rows) != 0 {
		t.Errorf("empty list has rows: %v", rows)
	}
	if out := h.ok("", "service-user", "list", "--contains", "nobody", "-o", "json"); strings.TrimSpace(out) != "{\n  \"list\": []\n}" {
		t.Errorf("empty list -o json: %q", out)
	}

	// get
	out = h.ok("", "service-user", "get", "reader-2")
	for _, re := range []string{`(?m)^Name:\s+reader-2$`, `(?m)^Roles:\s+secrets_reader,security_admin$`, `(?m)^Folders:\s+A,B/C$`, `(?m)^Type:\s+service$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("get output does not match %s:\n%s", re, out)
		}
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(h.ok("", "service-user", "get", "rotator", "-o", "json")), &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "name", "team_name", "status", "user_type", "roles", "folders", "details", "deleted_at"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("get -o json lacks %q", k)
		}
	}

	// update: only what is given changes
	out = h.ok("", "service-user", "update", "rotator", "--role", "pam_admin", "--role", "security_admin")
	if !regexp.MustCompile(`(?m)^Roles:\s+pam_admin,security_admin$`).MatchString(out) {
		t.Errorf("update --role output:\n%s", out)
	}
	if u := h.getUser("rotator"); !slices.Equal(roleNames(u.Roles), []string{"pam_admin", "security_admin"}) ||
		!slices.Equal(u.Folders, []string{"Shared/Okta"}) || u.Status != "ACTIVE" {
		t.Fatalf("after update --role: %+v", u)
	}
	h.ok("", "service-user", "update", "rotator", "--folder", "X", "--folder", "Y/Z")
	if u := h.getUser("rotator"); !slices.Equal(u.Folders, []string{"X", "Y/Z"}) || len(u.Roles) != 2 {
		t.Fatalf("after update --folder: %+v", u)
	}
	h.ok("", "service-user", "update", "reader-2", "--no-roles", "--all-folders")
	if u := h.getUser("reader-2"); len(u.Roles) != 0 || len(u.Folders) != 0 || u.Status != "ACTIVE" {
		t.Fatalf("after update --no-roles --all-folders: %+v", u)
	}
	var upd User
	if err := json.Unmarshal([]byte(h.ok("", "service-user", "update", "plain", "--status", "DISABLED", "-o", "json")), &upd); err != nil {
		t.Fatal(err)
	}
	if upd.Name != "plain" || upd.Status != "DISABLED" {
		t.Fatalf("update --status -o json: %+v", upd)
	}
	if got := listNames("--status", "DISABLED"); !slices.Equal(got, []string{"plain"}) {
		t.Errorf("list --status DISABLED: %v", got)
	}
	h.ok("", "service-user", "update", "plain", "--status", "DELETED")
	out = h.ok("", "service-user", "get", "plain")
	if !regexp.MustCompile(`(?m)^Status:\s+DELETED$`).MatchString(out) || !regexp.MustCompile(`(?m)^Deleted:\s+\d{4}-\S+Z$`).MatchString(out) {
		t.Errorf("get of a deleted user:\n%s", out)
	}
	h.ok("", "service-user", "update", "rotator", "--folder", "Shared")

	// key rotate: the id and secret printed once, a warning on stderr; the secret works
	r := h.run("", "service-user", "key", "rotate", "rotator")
	if r.code != ExitOK {
		t.Fatalf("key rotate: exit %d, %v", r.code, r.err)
	}
	m := regexp.MustCompile(`^key_id: (\S+)\nkey_secret: (\S+)\n$`).FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("key rotate printed %q", r.out)
	}
	key1, secret1 := m[1], m[2]
	// (the user's first key: no word of older keys expiring)
	if strings.Count(r.errOut, "\n") != 1 || !strings.Contains(r.errOut, "only once") || strings.Contains(r.errOut, "older") ||
		strings.Contains(r.errOut, secret1) {
		t.Errorf("key rotate stderr: %q", r.errOut)
	}
	tok1 := h.exchange(key1, secret1, http.StatusOK)
	h.api("GET", "/v1/teams/acme/records", tok1, nil, nil, http.StatusOK)
	// and the CLI signs in with it
	rotEnv := map[string]string{EnvAddr: h.srv.URL, EnvTeam: "acme", EnvKeyID: key1, EnvKeySecret: secret1}
	if r := runWith(rotEnv, "", "record", "list"); r.code != ExitOK {
		t.Fatalf("record list as rotator: exit %d, %v", r.code, r.err)
	}

	// key rotate -o json: the API's answer; the first key now expires in 48 h
	var issued struct {
		ID        string     `json:"id"`
		Secret    string     `json:"secret"`
		IssuedAt  time.Time  `json:"issued_at"`
		ExpiresAt time.Time  `json:"expires_at"`
		LastUsed  *time.Time `json:"last_used"`
	}
	r = h.run("", "service-user", "key", "rotate", "rotator", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("key rotate -o json: exit %d, %v", r.code, r.err)
	}
	if err := json.Unmarshal([]byte(r.out), &issued); err != nil {
		t.Fatal(err)
	}
	if issued.ID == "" || issued.ID == key1 || issued.Secret == "" || issued.IssuedAt.IsZero() || !issued.ExpiresAt.IsZero() || issued.LastUsed != nil {
		t.Fatalf("key rotate -o json: %+v", issued)
	}
	key2, secret2 := issued.ID, issued.Secret
	h.exchange(key2, secret2, http.StatusOK)
	h.exchange(key1, secret1, http.StatusOK) // still, for 48 h

	// key list: both keys, no secret anywhere
	out = h.ok("", "service-user", "key", "list", "rotator")
	rows = tableRows(t, out, `ID\s+ISSUED\s+EXPIRES\s+LAST_USED`)
	if len(rows) != 2 {
		t.Fatalf("key list has %d rows, want 2:\n%s", len(rows), out)
	}
	const ts = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`
	if !slices.ContainsFunc(rows, regexp.MustCompile(`^`+regexp.QuoteMeta(key1)+`\s+`+ts+`\s+`+ts+`\s+`+ts+`$`).MatchString) {
		t.Errorf("key list lacks the first key, expiring and used:\n%s", out)
	}
	if !slices.ContainsFunc(rows, regexp.MustCompile(`^`+regexp.QuoteMeta(key2)+`\s+`+ts+`\s+never\s+`+ts+`$`).MatchString) {
		t.Errorf("key list lacks the second key, never expiring:\n%s", out)
	}
	var listed struct {
		List []Key `json:"list"`
	}
	outJSON := h.ok("", "service-user", "key", "list", "rotator", "-o", "json")
	if err := json.Unmarshal([]byte(outJSON), &listed); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{out, outJSON} {
		if strings.Contains(o, secret1) || strings.Contains(o, secret2) || strings.Contains(o, "secret") {
			t.Fatalf("key list shows a secret:\n%s", o)
		}
	}
	var exp1 time.Time
	for _, k := range listed.List {
		if k.ID == key1 {
			exp1 = k.ExpiresAt
		}
	}
	if len(listed.List) != 2 || time.Until(exp1) < 47*time.Hour || time.Until(exp1) > 49*time.Hour {
		t.Fatalf("key list -o json: %+v (first key expires %v)", listed.List, exp1)
	}

	// a fresh key, never used: "-" in LAST_USED
	h.ok("", "service-user", "create", "idle")
	h.ok("", "service-user", "key", "rotate", "idle")
	rows = tableRows(t, h.ok("", "service-user", "key", "list", "idle"), `ID\s+ISSUED\s+EXPIRES\s+LAST_USED`)
	if len(rows) != 1 || !regexp.MustCompile(`^\S+\s+`+ts+`\s+never\s+-$`).MatchString(rows[0]) {
		t.Errorf("key list of an unused key: %q", rows)
	}

	// key delete: the key and its tokens stop working at once
	if out := h.ok("", "service-user", "key", "delete", "rotator", key1); out != "deleted key "+key1+" of rotator\n" {
		t.Fatalf("key delete printed %q", out)
	}
	h.exchange(key1, secret1, http.StatusUnauthorized)
	h.api("GET", "/v1/teams/acme/records", tok1, nil, nil, http.StatusUnauthorized)
	if r := runWith(rotEnv, "", "record", "list"); r.code != ExitFailed || !strings.Contains(r.err.Error(), "HTTP 401") || strings.Contains(r.err.Error(), secret1) {
		t.Fatalf("record list with the deleted key: exit %d, %v", r.code, r.err)
	}
	h.exchange(key2, secret2, http.StatusOK)
	rows = tableRows(t, h.ok("", "service-user", "key", "list", "rotator"), `ID\s+ISSUED\s+EXPIRES\s+LAST_USED`)
	if len(rows) != 1 || !strings.HasPrefix(rows[0], key2+" ") {
		t.Fatalf("key list after delete: %q", rows)
	}
	var del map[string]any
	if err := json.Unmarshal([]byte(h.ok("", "service-user", "key", "delete", "rotator", key2, "-o", "json")), &del); err != nil ||
		del["name"] != "rotator" || del["key_id"] != key2 || del["deleted"] != true {
		t.Fatalf("key delete -o json: %v %v", del, err)
	}
	h.exchange(key2, secret2, http.StatusUnauthorized)
	if out := h.ok("", "service-user", "key", "list", "rotator", "-o", "json"); !regexp.MustCompile(`^\{\s*"list":\s*\[\]\s*\}\n$`).MatchString(out) {
		t.Fatalf("key list of no keys -o json: %q", out)
	}
}

func TestServiceUserListFollowsPages(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.token()
	for i := range 6 {
		h.api("POST", "/v1/teams/acme/service_users", tok, map[string]any{"name": fmt.Sprintf("u%d", i)}, nil, http.StatusCreated)
	}
	var mu sync.Mutex
	var queries []string
	h.setAfter(func(r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v1/teams/acme/service_users" {
			mu.Lock()
			queries = append(queries, r.URL.RawQuery)
			mu.Unlock()
		}
	})
	cfg, err := ConfigFromEnv(func(k string) string { return h.env[k] })
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(cfg, nil)

	// seven users (admin and six), two a page: four pages
	users, err := c.ListUsers(context.Background(), UserFilter{PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, u := range users {
		names[u.Name] = true
	}
	if len(users) != 7 || len(names) != 7 || !names["admin"] || !names["u5"] || len(queries) != 4 {
		t.Fatalf("listed %d users (%d distinct) in %d pages (%v), want 7 in 4", len(users), len(names), len(queries), queries)
	}

	// the filters stay on every page
	queries = nil
	users, err = c.ListUsers(context.Background(), UserFilter{StartsWith: "u", Status: "ACTIVE", PageSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 6 || len(queries) != 2 {
		t.Fatalf("listed %d users in %d pages, want 6 in 2", len(users), len(queries))
	}
	for _, q := range queries {
		if !strings.Contains(q, "starts_with=u") || !strings.Contains(q, "status=ACTIVE") {
			t.Errorf("page query %q lost the filters", q)
		}
	}
	h.setAfter(nil)
}

func TestServiceUserListCommandFollowsPages(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.token()
	const n = 101 // with admin, 102: more than the API's default page of 100
	for i := range n {
		h.api("POST", "/v1/teams/acme/service_users", tok, map[string]any{"name": fmt.Sprintf("svc-%03d", i)}, nil, http.StatusCreated)
	}
	var pages int
	h.setAfter(func(r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v1/teams/acme/service_users" {
			pages++
		}
	})
	out := h.ok("", "service-user", "list")
	h.setAfter(nil)
	if rows := tableRows(t, out, `NAME\s+STATUS\s+ROLES\s+FOLDERS\s+ID`); len(rows) != n+1 || pages != 2 {
		t.Fatalf("list: %d rows in %d pages, want %d in 2", len(rows), pages, n+1)
	}
	if !strings.Contains(out, "\nsvc-100 ") || !strings.Contains(out, "\nadmin ") {
		t.Fatalf("list lacks users of one page:\n%s", out)
	}
}

// TestServiceUserUpdateSendsOnlyWhatIsGiven checks the request bodies update sends.
func TestServiceUserUpdateSendsOnlyWhatIsGiven(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.Method+" "+r.URL.EscapedPath()+" "+string(b))
		mu.Unlock()
		_, _ = w.Write([]byte(`{"id":"1","name":"bob","team_name":"acme","status":"ACTIVE","user_type":"service","roles":[],"folders":[]}`))
	}))
	defer srv.Close()
	env := map[string]string{EnvAddr: srv.URL, EnvTeam: "acme", EnvToken: "tok"}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--status", "DISABLED"}, `{"status":"DISABLED"}`},
		{[]string{"--role", "pam_admin", "--role", "security_admin"}, `{"roles":["pam_admin","security_admin"]}`},
		{[]string{"--no-roles"}, `{"roles":[]}`},
		{[]string{"--folder", "A/B", "--folder", "C"}, `{"folders":["A/B","C"]}`},
		{[]string{"--all-folders", "--status", "ACTIVE"}, `{"status":"ACTIVE","folders":[]}`},
		{[]string{"--status", ""}, `{"status":""}`},
	}
	for _, c := range cases {
		bodies = nil
		r := runWith(env, "", append([]string{"service-user", "update", "bob"}, c.args...)...)
		if r.code != ExitOK {
			t.Fatalf("update %v: exit %d, %v", c.args, r.code, r.err)
		}
		if len(bodies) != 1 || bodies[0] != "PUT /v1/teams/acme/service_users/bob "+c.want {
			t.Errorf("update %v sent %q, want %s", c.args, bodies, c.want)
		}
	}
	// names are escaped in the path
	bodies = nil
	if r := runWith(env, "", "service-user", "key", "delete", "a b", "k/1"); r.code != ExitOK {
		t.Fatalf("key delete: %v", r.err)
	}
	if len(bodies) != 1 || bodies[0] != "DELETE /v1/teams/acme/service_users/a%20b/keys/k%2F1 " {
		t.Errorf("key delete sent %q", bodies)
	}
}

func TestServiceUserErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok("", "service-user", "create", "bob", "--role", "pam_admin")
	adminSecret := h.env[EnvKeySecret]

	// an unknown user: exit 1 with the API's message
	r := h.run("", "service-user", "get", "nope")
	if r.code != ExitFailed || r.err.Error() != `no service user "nope" (HTTP 404)` {
		t.Fatalf("get unknown: exit %d, %v", r.code, r.err)
	}
	for _, args := range [][]string{
		{"service-user", "update", "nope", "--status", "ACTIVE"},
		{"service-user", "key", "rotate", "nope"},
		{"service-user", "key", "list", "nope"},
		{"service-user", "key", "delete", "nope", "k1"},
	} {
		if r := h.run("", args...); r.code != ExitFailed || !strings.Contains(r.err.Error(), `no service user "nope"`) || !strings.Contains(r.err.Error(), "HTTP 404") {
			t.Errorf("%v: exit %d, %v", args, r.code, r.err)
		}
	}
	if r := h.run("", "service-user", "key", "delete", "bob", "no-such-key"); r.code != ExitFailed ||
		!strings.Contains(r.err.Error(), `service user "bob" has no key "no-such-key" (HTTP 404)`) {
		t.Errorf("delete unknown key: exit %d, %v", r.code, r.err)
	}

	// bad values are the API's to refuse: exit 1, its message
	r = h.run("", "service-user", "update", "bob", "--status", "bogus")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), `status must be one of ACTIVE, DISABLED, DELETED, not "bogus"`) || !strings.Contains(r.err.Error(), "HTTP 400") {
		t.Fatalf("update --status bogus: exit %d, %v", r.code, r.err)
	}
	r = h.run("", "service-user", "list", "--status", "bogus")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), `not "bogus" (HTTP 400)`) {
		t.Fatalf("list --status bogus: exit %d, %v", r.code, r.err)
	}
	r = h.run("", "service-user", "create", "carol", "--role", "root")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), `unknown role "root"`) || !strings.Contains(r.err.Error(), "HTTP 400") {
		t.Fatalf("create --role root: exit %d, %v", r.code, r.err)
	}
	r = h.run("", "service-user", "create", "bob")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), `a service user named "bob" already exists (HTTP 409)`) {
		t.Fatalf("create twice: exit %d, %v", r.code, r.err)
	}

	// nobody disables themselves, or changes their own roles
	r = h.run("", "service-user", "update", "admin", "--status", "DISABLED")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), "you cannot disable or delete yourself") || !strings.Contains(r.err.Error(), "HTTP 403") {
		t.Fatalf("disable yourself: exit %d, %v", r.code, r.err)
	}
	r = h.run("", "service-user", "update", "admin", "--no-roles")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), "you cannot change your own roles") {
		t.Fatalf("drop own roles: exit %d, %v", r.code, r.err)
	}
	if u := h.getUser("admin"); u.Status != "ACTIVE" || len(u.Roles) != 4 {
		t.Fatalf("admin changed: %+v", u)
	}

	// a disabled user gets no keys
	h.ok("", "service-user", "update", "bob", "--status", "DISABLED")
	r = h.run("", "service-user", "key", "rotate", "bob")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), `service user "bob" is DISABLED`) || r.out != "" {
		t.Fatalf("rotate a disabled user: exit %d, %v, %q", r.code, r.err, r.out)
	}

	// a user without resource_admin cannot manage users
	h.ok("", "service-user", "update", "bob", "--status", "ACTIVE")
	m := regexp.MustCompile(`key_id: (\S+)\nkey_secret: (\S+)\n`).FindStringSubmatch(h.ok("", "service-user", "key", "rotate", "bob"))
	bobEnv := map[string]string{EnvAddr: h.srv.URL, EnvTeam: "acme", EnvKeyID: m[1], EnvKeySecret: m[2]}
	r = runWith(bobEnv, "", "service-user", "create", "mallory")
	if r.code != ExitFailed || !strings.Contains(r.err.Error(), "HTTP 403") || strings.Contains(r.err.Error(), m[2]) ||
		strings.Contains(r.err.Error(), adminSecret) {
		t.Fatalf("create as pam_admin: exit %d, %v", r.code, r.err)
	}
}

func TestServiceUserUsageErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok("", "service-user", "create", "bob")
	secret := h.env[EnvKeySecret]
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"service-user", "create"}, "accepts 1 arg"},
		{[]string{"service-user", "get"}, "accepts 1 arg"},
		{[]string{"service-user", "update"}, "accepts 1 arg"},
		{[]string{"service-user", "key", "rotate"}, "accepts 1 arg"},
		{[]string{"service-user", "key", "list"}, "accepts 1 arg"},
		{[]string{"service-user", "key", "delete", "bob"}, "accepts 2 arg"},
		{[]string{"service-user", "get", "a", "b"}, "accepts 1 arg"},
		{[]string{"service-user", "get", " "}, "name is empty"},
		{[]string{"service-user", "create", ""}, "name is empty"},
		{[]string{"service-user", "create", "."}, `"." cannot be a service user name`},
		{[]string{"service-user", "get", ".."}, `".." cannot be a service user name`},
		{[]string{"service-user", "key", "delete", "..", "k1"}, `".." cannot be a service user name`},
		{[]string{"service-user", "key", "delete", "bob", ""}, "key id is empty"},
		{[]string{"service-user", "update", "bob"}, "nothing to change"},
		{[]string{"service-user", "update", "bob", "-o", "json"}, "nothing to change"},
		{[]string{"service-user", "update", "bob", "--role", "pam_admin", "--no-roles"}, "not both"},
		{[]string{"service-user", "update", "bob", "--folder", "A", "--all-folders"}, "not both"},
		{[]string{"service-user", "update", "bob", "--status"}, "needs an argument"},
		{[]string{"service-user", "list", "extra"}, "unknown command"},
		{[]string{"service-user", "list", "-o", "xml"}, "use table, json or yaml"},
		{[]string{"service-user", "key", "rotate", "bob", "-o", "xml"}, "use table, json or yaml"},
		{[]string{"service-user", "create", "carol", "--nope"}, "unknown flag"},
		{[]string{"service-user", "nope"}, "unknown command"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			r := h.run("", c.args...)
			if r.code != ExitBadUsage {
				t.Fatalf("exit %d (%v), want 2", r.code, r.err)
			}
			if !strings.Contains(r.err.Error(), c.want) {
				t.Fatalf("error %q lacks %q", r.err, c.want)
			}
			if strings.Contains(r.err.Error(), secret) {
				t.Fatalf("error %q holds a secret", r.err)
			}
		})
	}
	// none of them reached the API: bob has no keys and is unchanged, carol does not exist
	if u := h.getUser("bob"); u.Status != "ACTIVE" || len(u.Roles) != 0 || len(u.Folders) != 0 {
		t.Fatalf("bob changed: %+v", u)
	}
	if rows := tableRows(t, h.ok("", "service-user", "key", "list", "bob"), `ID\s+ISSUED\s+EXPIRES\s+LAST_USED`); len(rows) != 0 {
		t.Fatalf("bob has keys: %v", rows)
	}
	if rows := tableRows(t, h.ok("", "service-user", "list"), `NAME\s+STATUS\s+ROLES\s+FOLDERS\s+ID`); len(rows) != 2 {
		t.Fatalf("users: %v", rows)
	}
}
