package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	userIDPattern   = regexp.MustCompile(`^00u[A-Za-z0-9]{17}$`)
	oktaTimePattern = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
)

// §5.10 and §1.4: the user object, exactly.
func TestUserObjectShape(t *testing.T) {
	v := start(t, Options{Users: 1})
	if _, err := v.em.CreateUser(NewUser{Login: "nopw@example.com", Status: StatusStaged}); err != nil {
		t.Fatal(err)
	}
	r := v.api("GET", "/api/v1/users/user0001@example.com", nil)
	r.status(t, 200)
	// field order as Okta sends it
	keys := topLevelKeys(t, r.body)
	want := []string{"id", "status", "created", "activated", "statusChanged", "lastLogin", "lastUpdated", "passwordChanged", "type", "profile", "credentials", "_links"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	var u map[string]any
	r.json(t, &u)
	if !userIDPattern.MatchString(u["id"].(string)) {
		t.Errorf("id %v", u["id"])
	}
	for _, k := range []string{"created", "activated", "statusChanged", "lastUpdated", "passwordChanged"} {
		if s, _ := u[k].(string); !oktaTimePattern.MatchString(s) {
			t.Errorf("%s = %v", k, u[k])
		}
	}
	if v, ok := u["lastLogin"]; !ok || v != nil {
		t.Errorf("lastLogin must be an explicit null: %s", r.body)
	}
	prof := u["profile"].(map[string]any)
	if prof["login"] != "user0001@example.com" || prof["email"] != "user0001@example.com" || prof["firstName"] != "Test" || prof["lastName"] != "User0001" {
		t.Errorf("profile %v", prof)
	}
	for _, k := range []string{"secondEmail", "mobilePhone"} {
		if v, ok := prof[k]; !ok || v != nil {
			t.Errorf("profile.%s must be an explicit null", k)
		}
	}
	creds, _ := json.Marshal(u["credentials"])
	if string(creds) != `{"password":{},"provider":{"name":"OKTA","type":"OKTA"}}` {
		t.Errorf("credentials %s", creds)
	}
	if strings.Contains(string(r.body), SeedPassword(1)) {
		t.Error("the password is echoed")
	}
	self := u["_links"].(map[string]any)["self"].(map[string]any)["href"]
	if self != v.srv.URL+"/api/v1/users/"+u["id"].(string) {
		t.Errorf("self %v", self)
	}
	if r.Header.Get("ETag") == "" {
		t.Error("no ETag")
	}
	// A staged user without a password: no credentials.password, null activated and passwordChanged.
	r = v.api("GET", "/api/v1/users/nopw@example.com", nil)
	r.json(t, &u)
	if u["activated"] != nil || u["passwordChanged"] != nil || u["status"] != StatusStaged {
		t.Errorf("staged user %s", r.body)
	}
	if c := u["credentials"].(map[string]any); c["password"] != nil || c["provider"] == nil {
		t.Errorf("credentials of a user without password: %v", c)
	}
	if _, has := u["credentials"].(map[string]any)["password"]; has {
		t.Error("credentials.password must be absent when there is no password")
	}
}

func topLevelKeys(t testing.TB, b []byte) []string {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	var keys []string
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			continue
		case json.Delim('}'), json.Delim(']'):
			depth--
			continue
		}
		if s, ok := tok.(string); ok && depth == 1 && dec.More() {
			keys = append(keys, s)
			// skip the value
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				t.Fatal(err)
			}
		}
	}
	return keys
}

// §5.1: every error code with its status and exact envelope.
func TestErrorEnvelope(t *testing.T) {
	v := start(t, Options{Users: 2, RateLimits: map[string]int{BucketOther: 1}})
	id, _ := v.em.UserID(SeedLogin(1))
	cases := []struct {
		name    string
		do      func() *resp
		status  int
		code    string
		summary string
		causes  []string
	}{
		{"admin set, policy", func() *resp {
			return v.api("POST", "/api/v1/users/"+id, map[string]any{"credentials": map[string]any{"password": map[string]string{"value": "short"}}})
		}, 400, ErrValidation, "Api validation failed: password", []string{"password: " + DefaultPasswordPolicy().notMet()}},
		{"malformed JSON", func() *resp { return v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", "{not json") },
			400, ErrMalformedBody, "The request body was not well-formed.", nil},
		{"string passwords", func() *resp {
			return v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", `{"oldPassword":"a","newPassword":"b"}`)
		}, 400, ErrMalformedBody, "The request body was not well-formed.", nil},
		{"authn", func() *resp {
			return v.raw("POST", "/api/v1/authn", map[string]string{"username": SeedLogin(1), "password": "wrong"})
		}, 401, ErrAuthnFailed, "Authentication failed", nil},
		{"unknown user", func() *resp { return v.api("GET", "/api/v1/users/nobody@example.com", nil) },
			404, ErrNotFound, "Not found: Resource not found: nobody@example.com (User)", nil},
		{"bad SSWS", func() *resp { return v.raw("GET", "/api/v1/users", nil, "Authorization", "SSWS nope") },
			401, ErrInvalidToken, "Invalid token provided", nil},
		{"no Authorization", func() *resp { return v.raw("GET", "/api/v1/users", nil) },
			403, ErrInvalidSession, "Invalid session", nil},
		{"wrong old password", func() *resp {
			return v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody("wrong", "Fresh-Pass-123"))
		}, 403, ErrCredentialUpdate, "Update of credentials failed", []string{"Old Password is not correct"}},
		{"new password too weak", func() *resp {
			return v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody(SeedPassword(1), "weak"))
		}, 403, ErrCredentialUpdate, "Update of credentials failed", []string{DefaultPasswordPolicy().notMet()}},
		{"method", func() *resp { return v.api("DELETE", "/api/v1/users/"+id+"/credentials/change_password", nil) },
			405, ErrMethodNotAllowed, "The endpoint does not support the provided HTTP method", nil},
		{"bad filter", func() *resp {
			return v.api("GET", "/api/v1/users?filter="+url.QueryEscape(`profile.login sw "x"`), nil)
		},
			400, ErrInvalidSearch, "Invalid search criteria.", nil},
		{"rate limit", func() *resp {
			v.api("GET", "/api/v1/nothing", nil)
			return v.api("GET", "/api/v1/nothing", nil)
		}, 429, ErrRateLimited, "API call exceeded rate limit due to too many requests.", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.do()
			e := r.oktaErr(t, c.status, c.code)
			if e.ErrorSummary != c.summary {
				t.Errorf("errorSummary %q, want %q", e.ErrorSummary, c.summary)
			}
			if c.causes != nil && !slices.Equal(causes(e), c.causes) {
				t.Errorf("causes %q, want %q", causes(e), c.causes)
			}
			if c.causes == nil && c.code != ErrInvalidSearch && len(e.ErrorCauses) != 0 {
				t.Errorf("causes %q, want none", causes(e))
			}
		})
	}
	if p := DefaultPasswordPolicy().notMet(); p != "Password requirements were not met. Password requirements: at least 8 characters, a lowercase letter, an uppercase letter, a number, no parts of your username. Your password cannot be any of your last 4 passwords." {
		t.Errorf("requirements text %q", p)
	}
}

// The seed Bash script (Keeper's Okta guide) posts plain strings to the login's path: Okta
// refuses the body before it looks at the path, 400 E0000003, and nothing changes.
func TestSeedScriptRequestRefused(t *testing.T) {
	v := start(t, Options{Users: 1})
	login := SeedLogin(1)
	body := `{
    "oldPassword": "` + SeedPassword(1) + `",
    "newPassword": "N3w-Rotated-pw"
}`
	r := v.raw("POST", "/api/v1/users/"+login+"/credentials/change_password", body,
		"Accept", "application/json", "Content-Type", "application/json", "Authorization", "SSWS "+v.em.Token())
	e := r.oktaErr(t, 400, ErrMalformedBody)
	if e.ErrorSummary != "The request body was not well-formed." || len(e.ErrorCauses) != 0 {
		t.Errorf("%s", r.body)
	}
	if pw, _ := v.em.Password(login); pw != SeedPassword(1) {
		t.Errorf("password changed to %q", pw)
	}
	// With the id in the path the body is still refused the same way.
	id, _ := v.em.UserID(login)
	v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", body).oktaErr(t, 400, ErrMalformedBody)
	// With password objects but a login in the path: 404, since the path takes the id.
	r = v.api("POST", "/api/v1/users/"+url.PathEscape(login)+"/credentials/change_password", changeBody(SeedPassword(1), "N3w-Rotated-pw"))
	e = r.oktaErr(t, 404, ErrNotFound)
	if e.ErrorSummary != "Not found: Resource not found: "+login+" (User)" {
		t.Errorf("summary %q", e.ErrorSummary)
	}
	// The right request works.
	v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody(SeedPassword(1), "N3w-Rotated-pw")).status(t, 200)
	if pw, _ := v.em.Password(login); pw != "N3w-Rotated-pw" {
		t.Errorf("password %q", pw)
	}
}

// §5.3: lookup by id, URL-encoded login, shortname; ambiguity and unknown names are 404.
func TestLookup(t *testing.T) {
	v := start(t, Options{Users: 3})
	id, _ := v.em.UserID(SeedLogin(2))
	for _, k := range []string{"same@a.example", "same@b.example"} {
		if _, err := v.em.CreateUser(NewUser{Login: k, Password: "Abcdef-123"}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		path   string
		status int
	}{
		{"/api/v1/users/" + id, 200},
		{"/api/v1/users/user0002%40example.com", 200},
		{"/api/v1/users/user0002@example.com", 200},
		{"/api/v1/users/USER0002@EXAMPLE.COM", 200},
		{"/api/v1/users/user0002", 200},
		{"/api/v1/users/same", 404},
		{"/api/v1/users/00u00000000000000000", 404},
		{"/api/v1/users/me", 404},
	}
	for _, c := range cases {
		r := v.api("GET", c.path, nil)
		if c.status == 404 {
			r.oktaErr(t, 404, ErrNotFound)
			continue
		}
		r.status(t, c.status)
		var u userJSON
		r.json(t, &u)
		if u.ID != id {
			t.Errorf("%s: id %s", c.path, u.ID)
		}
	}
}

// §5.2: 450 users in pages of 200 following Link next; Link headers one per rel, absolute,
// repeating the query with an opaque after.
func TestPagingFollowsLinks(t *testing.T) {
	v := start(t, Options{Users: 450})
	next := v.srv.URL + "/api/v1/users?limit=200"
	seen := map[string]bool{}
	var sizes []int
	for next != "" {
		r := v.api("GET", next, nil)
		r.status(t, 200)
		l := links(t, r.Header)
		if len(r.Header.Values("Link")) != len(l) {
			t.Fatalf("Link headers %q", r.Header.Values("Link"))
		}
		if l["self"] != next {
			t.Errorf("self %q, want %q", l["self"], next)
		}
		var page []map[string]any
		r.json(t, &page)
		sizes = append(sizes, len(page))
		for _, u := range page {
			id := u["id"].(string)
			if seen[id] {
				t.Fatalf("user %s twice", id)
			}
			seen[id] = true
			if ln := u["_links"].(map[string]any); len(ln) != 1 {
				t.Errorf("list items carry only self: %v", ln)
			}
		}
		next = l["next"]
		if next != "" {
			nu, err := url.Parse(next)
			if err != nil || !nu.IsAbs() || nu.Query().Get("limit") != "200" || nu.Query().Get("after") != page[len(page)-1]["id"] {
				t.Fatalf("next %q", next)
			}
		}
	}
	if !slices.Equal(sizes, []int{200, 200, 50}) || len(seen) != 450 {
		t.Errorf("pages %v, users %d", sizes, len(seen))
	}

	// limit above 200 is clamped; the default is 200.
	for _, q := range []string{"?limit=1000", ""} {
		var page []any
		v.api("GET", "/api/v1/users"+q, nil).json(t, &page)
		if len(page) != 200 {
			t.Errorf("%q: %d users", q, len(page))
		}
	}
	// A search is paged too and the next link repeats it.
	r := v.api("GET", "/api/v1/users?limit=3&search="+url.QueryEscape(`profile.login sw "user01"`), nil)
	l := links(t, r.Header)
	nu, _ := url.Parse(l["next"])
	if nu.Query().Get("search") != `profile.login sw "user01"` || nu.Query().Get("limit") != "3" {
		t.Errorf("next %q", l["next"])
	}
	if strings.Contains(l["next"], "+") {
		t.Errorf("spaces should be %%20: %q", l["next"])
	}
	var page []userJSON
	v.api("GET", l["next"], nil).json(t, &page)
	if len(page) != 3 || page[0].Profile["login"] != "user0103@example.com" {
		t.Errorf("second search page %v", page)
	}
}

// §5.2: q, filter, search; DEPROVISIONED only in filter and search.
func TestListQueries(t *testing.T) {
	v := start(t, Options{Users: 30})
	if err := v.em.SetUserStatus(SeedLogin(3), StatusDeprovisioned); err != nil {
		t.Fatal(err)
	}
	if _, err := v.em.CreateUser(NewUser{Login: "ada@corp.example", FirstName: "Ada", LastName: "Lovelace", Password: "Abcdef-123"}); err != nil {
		t.Fatal(err)
	}
	id5, _ := v.em.UserID(SeedLogin(5))
	count := func(query string) (int, []string) {
		t.Helper()
		r := v.api("GET", "/api/v1/users?"+query, nil)
		r.status(t, 200)
		var page []userJSON
		r.json(t, &page)
		var logins []string
		for _, u := range page {
			logins = append(logins, u.Profile["login"].(string))
		}
		return len(page), logins
	}
	cases := []struct {
		query string
		n     int
		first string
	}{
		{"", 30, SeedLogin(1)},                    // 31 users, one deprovisioned
		{"q=test", 10, SeedLogin(1)},              // default limit 10
		{"q=test&limit=50", 29, SeedLogin(1)},     // no deprovisioned
		{"q=ADA", 1, "ada@corp.example"},          // firstName, case-insensitive
		{"q=love", 1, "ada@corp.example"},         // lastName
		{"q=user002", 10, "user0020@example.com"}, // email
		{"filter=" + qe(`status eq "DEPROVISIONED"`), 1, SeedLogin(3)},
		{"filter=" + qe(`profile.login eq "user0004@example.com"`), 1, SeedLogin(4)},
		{"filter=" + qe(`profile.login eq "USER0004@example.com"`), 0, ""}, // filter values are case-sensitive
		{"filter=" + qe(`id eq "`+id5+`"`), 1, SeedLogin(5)},
		{"filter=" + qe(`profile.email eq "user0001@example.com" or profile.email eq "user0002@example.com"`), 2, SeedLogin(1)},
		{"filter=" + qe(`status eq "ACTIVE" and (profile.login eq "user0003@example.com" or profile.login eq "user0006@example.com")`), 1, SeedLogin(6)},
		{"filter=" + qe(`lastUpdated gt "2020-01-01T00:00:00.000Z"`), 31, SeedLogin(1)},
		{"search=" + qe(`profile.login eq "USER0007@EXAMPLE.COM"`), 1, SeedLogin(7)}, // search values fold case
		{"search=" + qe(`profile.email sw "user001"`), 10, "user0010@example.com"},
		{"search=" + qe(`profile.login co "0003"`), 1, SeedLogin(3)}, // deprovisioned included
		{"search=" + qe(`profile.lastName sw "love" and status eq "ACTIVE"`), 1, "ada@corp.example"},
		{"search=" + qe(`profile.firstName eq "Test"`) + "&sortBy=profile.login&sortOrder=desc&limit=2", 2, SeedLogin(30)},
	}
	for _, c := range cases {
		n, logins := count(c.query)
		if n != c.n || (n > 0 && logins[0] != c.first) {
			t.Errorf("%s: %d users %v, want %d starting %s", c.query, n, logins, c.n, c.first)
		}
	}
	// q is not paged.
	r := v.api("GET", "/api/v1/users?q=test", nil)
	if l := links(t, r.Header); l["next"] != "" || l["self"] == "" {
		t.Errorf("q links %v", l)
	}
	for _, bad := range []string{`status ne "ACTIVE"`, `profile.login co "x"`, `foo eq "x"`, `status eq`, `(status eq "ACTIVE"`} {
		v.api("GET", "/api/v1/users?filter="+qe(bad), nil).oktaErr(t, 400, ErrInvalidSearch)
	}
	for _, bad := range []string{`profile.city co "x"`, `status ne "ACTIVE"`} {
		v.api("GET", "/api/v1/users?search="+qe(bad), nil).oktaErr(t, 400, ErrInvalidSearch)
	}
}

func decodeUser(t testing.TB, r *resp, status int) userJSON {
	t.Helper()
	r.status(t, status)
	var u userJSON
	r.json(t, &u)
	return u
}

func qe(s string) string { return url.QueryEscape(s) }

// §5.4: change_password.
func TestChangePassword(t *testing.T) {
	policy := DefaultPasswordPolicy()
	policy.MinAge = time.Hour
	v := start(t, Options{Users: 10, PasswordPolicy: &policy})
	path := func(i int) string {
		id, _ := v.em.UserID(SeedLogin(i))
		return "/api/v1/users/" + id + "/credentials/change_password"
	}
	notMet := []string{policy.notMet()}

	// Success: 200 with the credentials object only; passwordChanged and lastUpdated move.
	before, _ := v.em.User(SeedLogin(1))
	v.clock.Advance(90 * time.Minute)
	r := v.api("POST", path(1), changeBody(SeedPassword(1), "Rotated-Pass-1"))
	r.status(t, 200)
	if string(r.body) != `{"password":{},"provider":{"type":"OKTA","name":"OKTA"}}` {
		t.Errorf("body %s", r.body)
	}
	after, _ := v.em.User(SeedLogin(1))
	if !after.PasswordChanged.Equal(v.clock.Now()) || !after.LastUpdated.Equal(v.clock.Now()) || !after.PasswordChanged.After(before.PasswordChanged) {
		t.Errorf("timestamps %v -> %v", before, after)
	}
	var u userJSON
	v.api("GET", "/api/v1/users/"+SeedLogin(1), nil).json(t, &u)
	if formatOktaTime(time.Time(u.PasswordChanged)) != formatOktaTime(v.clock.Now()) {
		t.Errorf("GET passwordChanged %v", time.Time(u.PasswordChanged))
	}
	// The new password is now the one to give.
	v.api("POST", path(1), changeBody(SeedPassword(1), "Rotated-Pass-2")).oktaErr(t, 403, ErrCredentialUpdate)

	cases := []struct {
		name     string
		old, new string
		query    string
		causes   []string
	}{
		{"wrong old", "Wrong-Pass-1", "Rotated-Pass-9", "", []string{"Old Password is not correct"}},
		{"too short", SeedPassword(2), "Ab1-x", "", notMet},
		{"no uppercase", SeedPassword(2), "rotated-pass-9", "", notMet},
		{"no lowercase", SeedPassword(2), "ROTATED-PASS-9", "", notMet},
		{"no number", SeedPassword(2), "Rotated-Pass-x", "", notMet},
		{"username part", SeedPassword(2), "xUser0002-Pass", "", notMet},
		{"domain part", SeedPassword(2), "Example-Pass-9", "", notMet},
		{"current password", SeedPassword(2), SeedPassword(2), "", notMet},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := v.api("POST", path(2)+c.query, changeBody(c.old, c.new)).oktaErr(t, 403, ErrCredentialUpdate)
			if e.ErrorSummary != "Update of credentials failed" || !slices.Equal(causes(e), c.causes) {
				t.Errorf("%s causes %q", e.ErrorSummary, causes(e))
			}
			if pw, _ := v.em.Password(SeedLogin(2)); pw != SeedPassword(2) {
				t.Errorf("password changed to %q", pw)
			}
		})
	}
	// "com" is a part of fewer than 4 characters: allowed.
	v.api("POST", path(3), changeBody(SeedPassword(3), "Dot-Com-Pass-1")).status(t, 200)

	// History: the last 4 passwords (the current one included) are refused, the 5th is fine.
	cur := SeedPassword(4)
	for i := 1; i <= 4; i++ {
		next := fmt.Sprintf("History-%d-Pw", i)
		v.api("POST", path(4), changeBody(cur, next)).status(t, 200)
		cur = next
	}
	for _, old := range []string{"History-1-Pw", "History-2-Pw", "History-3-Pw", "History-4-Pw"} {
		v.api("POST", path(4), changeBody(cur, old)).oktaErr(t, 403, ErrCredentialUpdate)
	}
	v.api("POST", path(4), changeBody(cur, SeedPassword(4))).status(t, 200)

	// Without strict the minimum age is not enforced; with it, it is.
	v.api("POST", path(5), changeBody(SeedPassword(5), "Quick-Pass-1")).status(t, 200)
	v.api("POST", path(5), changeBody("Quick-Pass-1", "Quick-Pass-2")).status(t, 200)
	e := v.api("POST", path(5)+"?strict=true", changeBody("Quick-Pass-2", "Quick-Pass-3")).oktaErr(t, 403, ErrCredentialUpdate)
	if !slices.Equal(causes(e), notMet) || !strings.Contains(notMet[0], "At least 60 minute(s) must have elapsed") {
		t.Errorf("causes %q", causes(e))
	}
	v.clock.Advance(time.Hour)
	v.api("POST", path(5)+"?strict=true", changeBody("Quick-Pass-2", "Quick-Pass-3")).status(t, 200)

	// Plain strings and missing fields.
	v.api("POST", path(6), map[string]any{"oldPassword": SeedPassword(6), "newPassword": "Rotated-Pass-6"}).oktaErr(t, 400, ErrMalformedBody)
	v.api("POST", path(6), map[string]any{"oldPassword": map[string]string{"value": SeedPassword(6)}}).oktaErr(t, 400, ErrValidation)
	if s := v.em.Stats(); s.PasswordChanges != 10 {
		t.Errorf("PasswordChanges %d", s.PasswordChanges)
	}
}

// §5.4: which statuses may change the password, and what they become.
func TestChangePasswordStatuses(t *testing.T) {
	cases := []struct {
		status, after string
		ok            bool
	}{
		{StatusActive, StatusActive, true},
		{StatusStaged, StatusStaged, true},
		{StatusRecovery, StatusActive, true},
		{StatusPasswordExpired, StatusActive, true},
		{StatusLockedOut, StatusLockedOut, false},
		{StatusSuspended, StatusSuspended, false},
		{StatusDeprovisioned, StatusDeprovisioned, false},
		{StatusProvisioned, StatusProvisioned, false},
	}
	v := start(t, Options{Users: len(cases)})
	for i, c := range cases {
		t.Run(c.status, func(t *testing.T) {
			login := SeedLogin(i + 1)
			if err := v.em.SetUserStatus(login, c.status); err != nil {
				t.Fatal(err)
			}
			id, _ := v.em.UserID(login)
			r := v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody(SeedPassword(i+1), "Changed-Pass-1"))
			if c.ok {
				r.status(t, 200)
			} else {
				r.oktaErr(t, 403, ErrCredentialUpdate)
			}
			if info, _ := v.em.User(login); info.Status != c.after {
				t.Errorf("status %s, want %s", info.Status, c.after)
			}
		})
	}
	// A user without a password cannot change it.
	id, _ := v.em.CreateUser(NewUser{Login: "nopw@example.com"})
	v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody("", "Changed-Pass-1")).oktaErr(t, 403, ErrCredentialUpdate)
}

// §5.5: admin set password (partial update) and PUT replace; create.
func TestAdminSetAndCreate(t *testing.T) {
	v := start(t, Options{Users: 3})
	id, _ := v.em.UserID(SeedLogin(1))
	v.em.mu.Lock()
	v.em.users[id].profile["department"] = "IT"
	v.em.mu.Unlock()
	if err := v.em.SetUserStatus(SeedLogin(1), StatusPasswordExpired); err != nil {
		t.Fatal(err)
	}
	v.clock.Advance(time.Minute)
	r := v.api("POST", "/api/v1/users/"+id, map[string]any{"credentials": map[string]any{"password": map[string]string{"value": "Admin-Set-Pass1"}}})
	u := decodeUser(t, r, 200)
	if u.ID != id || u.Status != StatusActive || u.Profile["department"] != "IT" || u.Profile["login"] != SeedLogin(1) ||
		u.Credentials.Password == nil || u.Links["self"].Href == "" {
		t.Errorf("user %s", r.body)
	}
	if strings.Contains(string(r.body), "Admin-Set-Pass1") {
		t.Error("password echoed")
	}
	if pw, _ := v.em.Password(id); pw != "Admin-Set-Pass1" {
		t.Errorf("password %q", pw)
	}
	if formatOktaTime(time.Time(u.PasswordChanged)) != formatOktaTime(v.clock.Now()) {
		t.Errorf("passwordChanged %v", time.Time(u.PasswordChanged))
	}
	// Policy violation: 400 E0000001 with a password: cause; strict adds history.
	e := v.api("POST", "/api/v1/users/"+id, map[string]any{"credentials": map[string]any{"password": map[string]string{"value": "lowercase1"}}}).oktaErr(t, 400, ErrValidation)
	if e.ErrorSummary != "Api validation failed: password" || !strings.HasPrefix(causes(e)[0], "password: Password requirements were not met.") {
		t.Errorf("%+v", e)
	}
	v.api("POST", "/api/v1/users/"+id, map[string]any{"credentials": map[string]any{"password": map[string]string{"value": "Admin-Set-Pass1"}}}).status(t, 200)
	e = v.api("POST", "/api/v1/users/"+id+"?strict=true", map[string]any{"credentials": map[string]any{"password": map[string]string{"value": "Admin-Set-Pass1"}}}).oktaErr(t, 400, ErrValidation)
	if !slices.Equal(causes(e), []string{"password: Password has been used too recently"}) {
		t.Errorf("causes %q", causes(e))
	}
	v.api("POST", "/api/v1/users/"+id, `{"credentials":{"password":"Admin-Set-Pass2"}}`).oktaErr(t, 400, ErrMalformedBody)
	// Partial profile update keeps the rest; login moves in the index.
	r = v.api("POST", "/api/v1/users/"+id, map[string]any{"profile": map[string]any{"login": "renamed@example.com"}})
	u = decodeUser(t, r, 200)
	if u.Profile["department"] != "IT" || u.Profile["email"] != SeedLogin(1) {
		t.Errorf("partial update lost attributes: %s", r.body)
	}
	v.api("GET", "/api/v1/users/renamed@example.com", nil).status(t, 200)
	v.api("GET", "/api/v1/users/"+SeedLogin(1), nil).oktaErr(t, 404, ErrNotFound)
	// A login taken by someone else.
	e = v.api("POST", "/api/v1/users/"+id, map[string]any{"profile": map[string]any{"login": SeedLogin(2)}}).oktaErr(t, 400, ErrValidation)
	if e.ErrorSummary != "Api validation failed: login" {
		t.Errorf("%+v", e)
	}
	// PUT replaces the profile: attributes not sent are gone.
	r = v.api("PUT", "/api/v1/users/"+id, map[string]any{"profile": map[string]any{"login": "renamed@example.com", "email": "r@example.com", "firstName": "R", "lastName": "N"}})
	u = decodeUser(t, r, 200)
	if _, has := u.Profile["department"]; has || u.Profile["mobilePhone"] != nil || u.Credentials.Password == nil {
		t.Errorf("PUT %s", r.body)
	}
	v.api("PUT", "/api/v1/users/"+id, map[string]any{"profile": map[string]any{"login": "renamed@example.com"}}).oktaErr(t, 400, ErrValidation)

	// Create: ?activate=true with a password is ACTIVE, 200 with the full user.
	r = v.api("POST", "/api/v1/users?activate=true", map[string]any{
		"profile":     map[string]any{"firstName": "Isaac", "lastName": "Brock", "email": "isaac@example.org", "login": "isaac@example.org", "mobilePhone": "555-415-1337"},
		"credentials": map[string]any{"password": map[string]string{"value": "tlpWENT2m"}, "recovery_question": map[string]string{"question": "Who's a major player in the cowboy scene?", "answer": "Annie Oakley"}},
	})
	u = decodeUser(t, r, 200)
	if u.Status != StatusActive || !userIDPattern.MatchString(u.ID) || u.Credentials.RecoveryQuestion == nil || u.Profile["mobilePhone"] != "555-415-1337" || u.Profile["secondEmail"] != nil {
		t.Errorf("created %s", r.body)
	}
	if pw, _ := v.em.Password("isaac@example.org"); pw != "tlpWENT2m" {
		t.Errorf("password %q", pw)
	}
	r = v.api("POST", "/api/v1/users?activate=false", map[string]any{"profile": map[string]any{"firstName": "S", "lastName": "T", "email": "staged@example.org", "login": "staged@example.org"}})
	u = decodeUser(t, r, 200)
	if u.Status != StatusStaged || u.Credentials.Password != nil || time.Time(u.Activated) != (time.Time{}) {
		t.Errorf("staged %s", r.body)
	}
	e = v.api("POST", "/api/v1/users", map[string]any{"profile": map[string]any{"firstName": "I", "lastName": "B", "email": "isaac@example.org", "login": "isaac@example.org"}}).oktaErr(t, 400, ErrValidation)
	if !slices.Equal(causes(e), []string{"login: An object with this field already exists in the current organization"}) {
		t.Errorf("%q", causes(e))
	}
	e = v.api("POST", "/api/v1/users", map[string]any{"profile": map[string]any{"login": "x@example.org"}}).oktaErr(t, 400, ErrValidation)
	if len(e.ErrorCauses) != 3 {
		t.Errorf("%q", causes(e))
	}
	v.api("POST", "/api/v1/users", map[string]any{"profile": map[string]any{"firstName": "I", "lastName": "B", "email": "w@example.org", "login": "w@example.org"},
		"credentials": map[string]any{"password": map[string]string{"value": "weak"}}}).oktaErr(t, 400, ErrValidation)
}

// Lifecycle levers for negative tests.
func TestLifecycle(t *testing.T) {
	v := start(t, Options{Users: 2})
	id, _ := v.em.UserID(SeedLogin(1))
	lc := func(op string) *resp { return v.api("POST", "/api/v1/users/"+id+"/lifecycle/"+op, nil) }
	r := lc("expire_password")
	r.status(t, 200)
	var u userJSON
	r.json(t, &u)
	if u.Status != StatusPasswordExpired {
		t.Errorf("%s", r.body)
	}
	r = lc("reset_password?sendEmail=false")
	r.status(t, 200)
	if !strings.Contains(string(r.body), `"resetPasswordUrl":"`+v.srv.URL+"/reset_password/") {
		t.Errorf("%s", r.body)
	}
	lc("unlock").oktaErr(t, 400, ErrValidation)
	lc("deactivate").status(t, 200)
	var list []userJSON
	v.api("GET", "/api/v1/users", nil).json(t, &list)
	if len(list) != 1 {
		t.Errorf("deprovisioned user listed")
	}
	lc("activate").status(t, 200)
	lc("suspend").status(t, 200)
	lc("unsuspend").status(t, 200)
	lc("nonsense").oktaErr(t, 404, ErrNotFound)
	if info, _ := v.em.User(id); info.Status != StatusActive {
		t.Errorf("status %s", info.Status)
	}
}

// Helpers the gateway's tests use.
func TestHelpers(t *testing.T) {
	v := start(t, Options{Users: 2})
	if err := v.em.SetPassword(SeedLogin(1), "Behind-Back-1"); err != nil {
		t.Fatal(err)
	}
	id, _ := v.em.UserID(SeedLogin(1))
	v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody(SeedPassword(1), "Rotated-Pass-1")).oktaErr(t, 403, ErrCredentialUpdate)
	v.api("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody("Behind-Back-1", "Rotated-Pass-1")).status(t, 200)
	if pw, ok := v.em.Password(SeedLogin(1)); !ok || pw != "Rotated-Pass-1" {
		t.Errorf("Password %q %v", pw, ok)
	}
	if _, ok := v.em.Password("nobody@example.com"); ok {
		t.Error("password of nobody")
	}
	if err := v.em.SetPassword("nobody@example.com", "x"); err != ErrNoSuchUser {
		t.Errorf("SetPassword: %v", err)
	}
	if _, err := v.em.CreateUser(NewUser{Login: SeedLogin(2)}); err == nil {
		t.Error("duplicate login accepted")
	}
	if err := v.em.SetUserStatus(SeedLogin(2), "BOGUS"); err == nil {
		t.Error("bogus status accepted")
	}
	s := v.em.Stats()
	if s.Requests[EndpointChangePassword] != 2 || s.PasswordChanges != 1 {
		t.Errorf("stats %+v", s)
	}
	v.em.ResetStats()
	if s := v.em.Stats(); len(s.Requests) != 0 || s.PasswordChanges != 0 {
		t.Errorf("after reset %+v", s)
	}
	_ = http.StatusOK
}
