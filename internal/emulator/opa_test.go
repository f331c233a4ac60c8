package emulator

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	uuidPattern    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	opaTimePattern = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
)

type serviceToken struct {
	BearerToken string `json:"bearer_token"`
	ExpiresAt   string `json:"expires_at"`
	TeamName    string `json:"team_name"`
}

// mint exchanges a key for a bearer token.
func (v *env) mint(t testing.TB, keyID, secret string) string {
	t.Helper()
	return v.mintFor(t, keyID, secret)
}

// mintAdmin mints a token with the OPA admin's key.
func (v *env) mintAdmin(t testing.TB) string {
	t.Helper()
	k, s := v.em.AdminKey()
	return v.mintFor(t, k, s)
}

func (v *env) mintFor(t testing.TB, keyID, secret string) string {
	t.Helper()
	r := v.raw("POST", "/v1/teams/"+v.em.OPATeam()+"/service_token", map[string]string{"key_id": keyID, "key_secret": secret})
	r.status(t, 200)
	var st serviceToken
	r.json(t, &st)
	return st.BearerToken
}

func (v *env) opa(method, path, bearer string, body any) *resp {
	v.t.Helper()
	return v.raw(method, "/v1/teams/"+v.em.OPATeam()+path, body, "Authorization", "Bearer "+bearer)
}

func opaErr(t testing.TB, r *resp, status int) {
	t.Helper()
	r.status(t, status)
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Type    string `json:"type"`
	}
	r.json(t, &e)
	if e.Code != status || e.Message == "" || e.Type == "" {
		t.Errorf("OPA error %s", r.body)
	}
}

// §5.9: service_token.
func TestServiceToken(t *testing.T) {
	v := start(t, Options{OPATeam: "william-faulkner"})
	keyID, secret := v.em.AdminKey()
	r := v.raw("POST", "/v1/teams/william-faulkner/service_token", map[string]string{"key_id": keyID, "key_secret": secret})
	r.status(t, 200)
	var st serviceToken
	r.json(t, &st)
	if st.TeamName != "william-faulkner" || strings.Count(st.BearerToken, ".") != 2 || st.ExpiresAt != v.clock.Now().Add(time.Hour).Format(time.RFC3339) {
		t.Errorf("%s", r.body)
	}
	if keys := topLevelKeys(t, r.body); !slices.Equal(keys, []string{"bearer_token", "expires_at", "team_name"}) {
		t.Errorf("keys %v", keys)
	}
	if r.Header.Get("X-Rate-Limit-Limit") != "" || r.Header.Get("Date") == "" {
		t.Errorf("OPA headers %v", r.Header)
	}
	for name, body := range map[string]any{
		"wrong secret":   map[string]string{"key_id": keyID, "key_secret": secret + "x"},
		"unknown key id": map[string]string{"key_id": newUUID(), "key_secret": secret},
	} {
		t.Run(name, func(t *testing.T) {
			opaErr(t, v.raw("POST", "/v1/teams/william-faulkner/service_token", body), 401)
		})
	}
	opaErr(t, v.raw("POST", "/v1/teams/other-team/service_token", map[string]string{"key_id": keyID, "key_secret": secret}), 401)
	opaErr(t, v.raw("POST", "/v1/teams/william-faulkner/service_token", "{"), 400)
	opaErr(t, v.raw("POST", "/v1/teams/william-faulkner/service_token", map[string]string{"key_id": keyID}), 400)

	// The bearer works, then expires; a team mismatch is 404.
	v.opa("GET", "/service_users", st.BearerToken, nil).status(t, 200)
	opaErr(t, v.raw("GET", "/v1/teams/other-team/service_users", nil, "Authorization", "Bearer "+st.BearerToken), 404)
	opaErr(t, v.opa("GET", "/service_users", "nonsense", nil), 401)
	opaErr(t, v.raw("GET", "/v1/teams/william-faulkner/service_users", nil), 401)
	v.clock.Advance(time.Hour)
	opaErr(t, v.opa("GET", "/service_users", st.BearerToken, nil), 401)
}

// §5.9/§5.10: service users: create (201), get, list with one comma-joined Link, update.
func TestServiceUsers(t *testing.T) {
	v := start(t, Options{OPATeam: "william-faulkner"})
	tok := v.mintAdmin(t)
	r := v.opa("POST", "/service_users", tok, map[string]string{"name": "OPA User"})
	r.status(t, 201)
	var su map[string]any
	r.json(t, &su)
	if keys := topLevelKeys(t, r.body); !slices.Equal(keys, []string{"id", "name", "team_name", "status", "user_type", "details", "deleted_at"}) {
		t.Errorf("keys %v", keys)
	}
	if !uuidPattern.MatchString(su["id"].(string)) || su["name"] != "OPA User" || su["team_name"] != "william-faulkner" ||
		su["status"] != "ACTIVE" || su["user_type"] != "service" || su["details"] != nil || su["deleted_at"] != nil {
		t.Errorf("%s", r.body)
	}
	opaErr(t, v.opa("POST", "/service_users", tok, map[string]string{"name": "OPA User"}), 409)
	opaErr(t, v.opa("POST", "/service_users", tok, map[string]string{}), 400)
	r = v.opa("GET", "/service_users/"+url.PathEscape("OPA User"), tok, nil)
	r.status(t, 200)
	var got map[string]any
	r.json(t, &got)
	if got["id"] != su["id"] {
		t.Errorf("get %s", r.body)
	}
	opaErr(t, v.opa("GET", "/service_users/nobody", tok, nil), 404)

	// 7 more users, 9 in all with the admin; pages of 2.
	for i := 0; i < 7; i++ {
		if _, err := v.em.CreateServiceUser(fmt.Sprintf("svc-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	next := v.srv.URL + "/v1/teams/william-faulkner/service_users?count=2"
	pages := 0
	for next != "" {
		r := v.raw("GET", next, nil, "Authorization", "Bearer "+tok)
		r.status(t, 200)
		var page struct {
			List []suResp `json:"list"`
		}
		r.json(t, &page)
		for _, u := range page.List {
			names = append(names, u.Name)
		}
		pages++
		if n := len(r.Header.Values("Link")); n > 1 {
			t.Fatalf("%d Link headers: OPA sends one", n)
		}
		lh := r.Header.Get("Link")
		if pages > 1 && pages < 5 && (!strings.Contains(lh, `rel="prev", <`) || !strings.Contains(lh, `rel="next"`)) {
			t.Errorf("page %d Link %q: want prev and next joined by a comma", pages, lh)
		}
		next = ""
		for _, part := range strings.Split(lh, ", <") {
			if strings.HasSuffix(part, `rel="next"`) {
				next = strings.TrimPrefix(strings.SplitN(part, ">", 2)[0], "<")
				nu, _ := url.Parse(next)
				if nu.Query().Get("count") != "2" || nu.Query().Get("offset") == "" {
					t.Errorf("next %q", next)
				}
			}
		}
	}
	want := []string{"OPA User", "emulator-admin", "svc-00", "svc-01", "svc-02", "svc-03", "svc-04", "svc-05", "svc-06"}
	if !slices.Equal(names, want) || pages != 5 {
		t.Errorf("pages %d names %v", pages, names)
	}
	// Filters and order.
	for q, n := range map[string]int{"starts_with=svc": 7, "contains=0": 7, "status=DISABLED": 0, "id=" + su["id"].(string): 1} {
		var page struct{ List []any }
		v.opa("GET", "/service_users?"+q, tok, nil).json(t, &page)
		if len(page.List) != n {
			t.Errorf("%s: %d", q, len(page.List))
		}
	}
	var page struct{ List []suResp }
	v.opa("GET", "/service_users?descending=true&count=1", tok, nil).json(t, &page)
	if page.List[0].Name != "svc-06" {
		t.Errorf("descending %v", page.List)
	}

	// Update: disable, enable, delete; users cannot disable themselves.
	r = v.opa("PUT", "/service_users/svc-00", tok, map[string]string{"name": "svc-00", "status": "DISABLED"})
	r.status(t, 200)
	r.json(t, &got)
	if got["status"] != "DISABLED" {
		t.Errorf("%s", r.body)
	}
	v.opa("PUT", "/service_users/svc-00", tok, map[string]string{"status": "ACTIVE"}).status(t, 200)
	opaErr(t, v.opa("PUT", "/service_users/svc-00", tok, map[string]string{"status": "SLEEPY"}), 400)
	opaErr(t, v.opa("PUT", "/service_users/emulator-admin", tok, map[string]string{"status": "DISABLED"}), 400)
	r = v.opa("PUT", "/service_users/svc-01", tok, map[string]string{"status": "DELETED"})
	r.json(t, &got)
	if got["status"] != "DELETED" || !opaTimePattern.MatchString(fmt.Sprint(got["deleted_at"])) {
		t.Errorf("deleted %s", r.body)
	}
	v.opa("GET", "/service_users", tok, nil).json(t, &page)
	if len(page.List) != 8 {
		t.Errorf("deleted user listed: %d", len(page.List))
	}
	v.opa("GET", "/service_users?status=DELETED", tok, nil).json(t, &page)
	if len(page.List) != 1 {
		t.Errorf("status=DELETED: %d", len(page.List))
	}
	// Renaming through PUT.
	v.opa("PUT", "/service_users/svc-02", tok, map[string]string{"name": "svc-renamed", "status": "ACTIVE"}).status(t, 200)
	v.opa("GET", "/service_users/svc-renamed", tok, nil).status(t, 200)

	// Roles: a service user without any cannot list; without resource_admin cannot create.
	if _, err := v.em.CreateServiceUser("reader", RoleSecurityAdmin); err != nil {
		t.Fatal(err)
	}
	rk, rs, _ := v.em.AddServiceUserKey("reader")
	rtok := v.mint(t, rk, rs)
	v.opa("GET", "/service_users", rtok, nil).status(t, 200)
	opaErr(t, v.opa("POST", "/service_users", rtok, map[string]string{"name": "x"}), 403)
	opaErr(t, v.opa("GET", "/service_users/reader/keys", rtok, nil), 403)
	_ = v.em.SetServiceUserRoles("reader")
	opaErr(t, v.opa("GET", "/service_users", rtok, nil), 403)
}

type suResp struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Status    string  `json:"status"`
	DeletedAt *string `json:"deleted_at"`
}

type keyResponse struct {
	ID        string  `json:"id"`
	IssuedAt  string  `json:"issued_at"`
	ExpiresAt string  `json:"expires_at"`
	LastUsed  *string `json:"last_used"`
	Secret    string  `json:"secret"`
}

// §5.9: keys: list without secrets; POST rotates all (200, the only copy of the secret, older
// keys expire in 48 h and stop minting then); DELETE kills the key and its tokens at once.
func TestServiceUserKeys(t *testing.T) {
	v := start(t, Options{})
	admin := v.mintAdmin(t)
	if _, err := v.em.CreateServiceUser("robot"); err != nil {
		t.Fatal(err)
	}
	oldID, oldSecret, _ := v.em.AddServiceUserKey("robot")
	oldTok := v.mint(t, oldID, oldSecret)
	_ = oldTok

	v.clock.Advance(time.Minute)
	r := v.opa("POST", "/service_users/robot/keys", admin, nil)
	r.status(t, 200)
	var nk keyResponse
	r.json(t, &nk)
	if !uuidPattern.MatchString(nk.ID) || nk.ExpiresAt != "0001-01-01T00:00:00Z" || nk.LastUsed != nil || nk.Secret == "" || len(nk.Secret) > 255 ||
		nk.IssuedAt != v.clock.Now().Format(time.RFC3339) {
		t.Errorf("rotate %s", r.body)
	}
	if keys := topLevelKeys(t, r.body); !slices.Equal(keys, []string{"id", "issued_at", "expires_at", "last_used", "secret"}) {
		t.Errorf("keys %v", keys)
	}
	r = v.opa("GET", "/service_users/robot/keys", admin, nil)
	r.status(t, 200)
	if strings.Contains(string(r.body), "secret") || strings.Contains(string(r.body), nk.Secret) {
		t.Errorf("key list shows secrets: %s", r.body)
	}
	var list struct {
		List []keyResponse `json:"list"`
	}
	r.json(t, &list)
	if len(list.List) != 2 {
		t.Fatalf("%s", r.body)
	}
	oldKey, newKey := list.List[0], list.List[1]
	if oldKey.ID != oldID || oldKey.ExpiresAt != v.clock.Now().Add(48*time.Hour).Format(time.RFC3339) || oldKey.LastUsed == nil ||
		!opaTimePattern.MatchString(*oldKey.LastUsed) || newKey.ID != nk.ID || newKey.ExpiresAt != "0001-01-01T00:00:00Z" {
		t.Errorf("after rotation %s", r.body)
	}
	// Both keys mint until the old one's expiry; then only the new one.
	v.clock.Advance(47 * time.Hour)
	v.mint(t, oldID, oldSecret)
	newTok := v.mint(t, nk.ID, nk.Secret)
	v.clock.Advance(time.Hour)
	opaErr(t, v.raw("POST", "/v1/teams/emulator/service_token", map[string]string{"key_id": oldID, "key_secret": oldSecret}), 401)
	if v.em.ServiceKeyValid(oldID, oldSecret) || !v.em.ServiceKeyValid(nk.ID, nk.Secret) {
		t.Error("ServiceKeyValid")
	}
	// A second rotation leaves the already-expiring key's date alone and sets the new one's.
	admin = v.mintAdmin(t)
	v.opa("POST", "/service_users/robot/keys", admin, nil).status(t, 200)
	v.opa("GET", "/service_users/robot/keys", admin, nil).json(t, &list)
	if len(list.List) != 3 || list.List[0].ExpiresAt == list.List[1].ExpiresAt || list.List[1].ExpiresAt != v.clock.Now().Add(48*time.Hour).Format(time.RFC3339) {
		t.Errorf("second rotation %+v", list.List)
	}

	// DELETE: 204, and a token minted from the key dies at once.
	if _, err := v.em.CreateServiceUser("robot-admin", RoleResourceAdmin); err != nil {
		t.Fatal(err)
	}
	k1, s1, _ := v.em.AddServiceUserKey("robot-admin")
	k2, s2, _ := v.em.AddServiceUserKey("robot-admin")
	t1, t2 := v.mint(t, k1, s1), v.mint(t, k2, s2)
	v.opa("GET", "/service_users", t1, nil).status(t, 200)
	r = v.opa("DELETE", "/service_users/robot-admin/keys/"+k1, admin, nil)
	r.status(t, 204)
	if len(r.body) != 0 {
		t.Errorf("204 with a body %q", r.body)
	}
	opaErr(t, v.opa("GET", "/service_users", t1, nil), 401)
	v.opa("GET", "/service_users", t2, nil).status(t, 200)
	opaErr(t, v.raw("POST", "/v1/teams/emulator/service_token", map[string]string{"key_id": k1, "key_secret": s1}), 401)
	opaErr(t, v.opa("DELETE", "/service_users/robot-admin/keys/"+k1, admin, nil), 404)
	if ids, _ := v.em.ServiceUserKeyIDs("robot-admin"); !slices.Equal(ids, []string{k2}) {
		t.Errorf("keys %v", ids)
	}
	// A disabled service user's tokens stop working and it cannot mint.
	v.opa("PUT", "/service_users/robot-admin", admin, map[string]string{"status": "DISABLED"}).status(t, 200)
	opaErr(t, v.opa("GET", "/service_users", t2, nil), 401)
	opaErr(t, v.raw("POST", "/v1/teams/emulator/service_token", map[string]string{"key_id": k2, "key_secret": s2}), 401)
	_ = newTok
	// Rotating a deleted or unknown user's keys is 404.
	opaErr(t, v.opa("POST", "/service_users/nobody/keys", admin, nil), 404)
	opaErr(t, v.opa("PATCH", "/service_users/robot", admin, nil), 405)
}

// §5.9: 429 with X-RateLimit-Retry-At past the OPA limit.
func TestOPARateLimit(t *testing.T) {
	v := start(t, Options{RateLimits: map[string]int{BucketOPA: 3}})
	tok := v.mintAdmin(t)
	v.opa("GET", "/service_users", tok, nil).status(t, 200)
	v.opa("GET", "/service_users", tok, nil).status(t, 200)
	r := v.opa("GET", "/service_users", tok, nil)
	opaErr(t, r, 429)
	at, err := strconv.ParseInt(r.Header.Get("X-RateLimit-Retry-At"), 10, 64)
	if err != nil || at != v.clock.Now().Add(time.Minute).Unix() {
		t.Errorf("X-RateLimit-Retry-At %q", r.Header.Get("X-RateLimit-Retry-At"))
	}
	v.clock.Advance(time.Minute)
	v.opa("GET", "/service_users", tok, nil).status(t, 200)
	if s := v.em.Stats(); s.RateLimited[EndpointListServiceUsers] != 1 {
		t.Errorf("%+v", s)
	}
	// An injected 429 carries the header too.
	v.em.SetFaults(Faults{RateLimitRate: 1})
	r = v.opa("GET", "/service_users", tok, nil)
	opaErr(t, r, 429)
	if r.Header.Get("X-RateLimit-Retry-At") == "" {
		t.Error("no X-RateLimit-Retry-At")
	}
}
