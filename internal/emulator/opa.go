package emulator

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Okta Privileged Access (okta.md §2): service tokens, service users and their API keys,
// under /v1/teams/{team_name}/….

// OPA roles (x-okta-opa-roles).
const (
	RolePAMAdmin               = "pam_admin"
	RoleResourceAdmin          = "resource_admin"
	RoleSecurityAdmin          = "security_admin"
	RoleDelegatedResourceAdmin = "delegated_resource_admin"
	RoleEndUser                = "end_user"
)

// Service user statuses.
const (
	ServiceUserActive   = "ACTIVE"
	ServiceUserDisabled = "DISABLED"
	ServiceUserDeleted  = "DELETED"
)

var readRoles = []string{RolePAMAdmin, RoleResourceAdmin, RoleSecurityAdmin, RoleDelegatedResourceAdmin}

type apiKey struct {
	id       string
	secret   [32]byte // SHA-256 of the secret
	issued   time.Time
	expires  time.Time // zero: never
	lastUsed time.Time
	deleted  bool
}

type svcUser struct {
	id, name, status string
	deletedAt        time.Time
	roles            []string
	keys             []*apiKey
}

type opaToken struct {
	user *svcUser
	key  *apiKey
	exp  time.Time
}

type opaState struct {
	mu          sync.Mutex
	team        string
	admin       string
	adminKeyID  string
	adminSecret string
	users       map[string]*svcUser // by name
	tokens      map[string]*opaToken
	ttl, grace  time.Duration
	pageSize    int
}

func (s *opaState) init(e *Emulator) {
	s.team = e.opts.OPATeam
	if s.team == "" {
		s.team = "emulator"
	}
	s.admin = e.opts.OPAAdmin
	if s.admin == "" {
		s.admin = "emulator-admin"
	}
	s.ttl, s.grace, s.pageSize = e.opts.OPATokenTTL, e.opts.OPAKeyGrace, e.opts.OPAPageSize
	if s.ttl <= 0 {
		s.ttl = time.Hour
	}
	if s.grace <= 0 {
		s.grace = 48 * time.Hour
	}
	if s.pageSize <= 0 {
		s.pageSize = 100
	}
	s.users = map[string]*svcUser{}
	s.tokens = map[string]*opaToken{}
	s.users[s.admin] = &svcUser{id: newUUID(), name: s.admin, status: ServiceUserActive,
		roles: []string{RolePAMAdmin, RoleResourceAdmin, RoleSecurityAdmin, RoleDelegatedResourceAdmin}}
	s.adminKeyID, s.adminSecret = s.addKeyLocked(s.users[s.admin], e.now())
}

// addKeyLocked adds a never-expiring key to u and returns its id and secret; s.mu held.
func (s *opaState) addKeyLocked(u *svcUser, now time.Time) (id, secret string) {
	b := make([]byte, 64)
	_, _ = rand.Read(b)
	secret = base64.StdEncoding.EncodeToString(b)
	k := &apiKey{id: newUUID(), secret: sha256.Sum256([]byte(secret)), issued: now.UTC().Truncate(time.Second)}
	u.keys = append(u.keys, k)
	return k.id, secret
}

func writeOPAError(w http.ResponseWriter, status int, message, typ string) {
	writeJSON(w, status, struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Type    string `json:"type"`
	}{status, message, typ})
}

type serviceUserJSON struct {
	ID        string      `json:"id"`
	Name      string      `json:"name"`
	TeamName  string      `json:"team_name"`
	Status    string      `json:"status"`
	UserType  string      `json:"user_type"`
	Details   *struct{}   `json:"details"`
	DeletedAt opaNullTime `json:"deleted_at"`
}

func (s *opaState) render(u *svcUser) serviceUserJSON {
	return serviceUserJSON{ID: u.id, Name: u.name, TeamName: s.team, Status: u.status, UserType: "service", DeletedAt: opaNullTime(u.deletedAt)}
}

type keyJSON struct {
	ID        string      `json:"id"`
	IssuedAt  opaTime     `json:"issued_at"`
	ExpiresAt opaTime     `json:"expires_at"`
	LastUsed  opaNullTime `json:"last_used"`
	Secret    string      `json:"secret,omitempty"`
}

func renderKey(k *apiKey) keyJSON {
	return keyJSON{ID: k.id, IssuedAt: opaTime(k.issued), ExpiresAt: opaTime(k.expires), LastUsed: opaNullTime(k.lastUsed)}
}

// keyUsable reports whether k may mint a token at now.
func keyUsable(k *apiKey, now time.Time) bool {
	return !k.deleted && (k.expires.IsZero() || now.Before(k.expires))
}

// findKeyLocked finds a key by id and checks its secret; s.mu held.
func (s *opaState) findKeyLocked(keyID, secret string) (*svcUser, *apiKey) {
	sum := sha256.Sum256([]byte(secret))
	for _, u := range s.users {
		for _, k := range u.keys {
			if k.id == keyID && subtle.ConstantTimeCompare(k.secret[:], sum[:]) == 1 {
				return u, k
			}
		}
	}
	return nil, nil
}

// ---- POST /v1/teams/{team_name}/service_token -------------------------------------------

func (e *Emulator) handleServiceToken(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		KeyID     string `json:"key_id"`
		KeySecret string `json:"key_secret"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeOPAError(w, http.StatusBadRequest, "The request body is not valid JSON.", "bad_request")
		return
	}
	if req.KeyID == "" || req.KeySecret == "" || len(req.KeySecret) > 512 {
		writeOPAError(w, http.StatusBadRequest, "key_id and key_secret (1 to 512 characters) are required.", "bad_request")
		return
	}
	s := &e.opa
	now := e.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	u, k := s.findKeyLocked(req.KeyID, req.KeySecret)
	if !strings.EqualFold(c.params["team_name"], s.team) || u == nil || !keyUsable(k, now) || u.status != ServiceUserActive {
		writeOPAError(w, http.StatusUnauthorized, "Unauthorized: the API key is not valid.", "authentication_error")
		return
	}
	k.lastUsed = now
	exp := now.Add(s.ttl).UTC().Truncate(time.Second)
	claims, _ := json.Marshal(map[string]any{"exp": exp.Unix(), "iss": "scaleft.auth.token", "jti": newUUID(),
		"roles": u.roles, "team": s.team, "user": u.name})
	hdr := `{"alg":"RS256","kid":"` + newUUID() + `","typ":"JWT"}`
	sig := make([]byte, 256)
	_, _ = rand.Read(sig)
	tok := base64.RawURLEncoding.EncodeToString([]byte(hdr)) + "." + base64.RawURLEncoding.EncodeToString(claims) + "." +
		base64.RawURLEncoding.EncodeToString(sig)
	if len(s.tokens) > 4096 {
		for t, ot := range s.tokens {
			if !now.Before(ot.exp) || ot.key.deleted {
				delete(s.tokens, t)
			}
		}
	}
	s.tokens[tok] = &opaToken{user: u, key: k, exp: exp}
	writeJSON(w, http.StatusOK, struct {
		BearerToken string  `json:"bearer_token"`
		ExpiresAt   opaTime `json:"expires_at"`
		TeamName    string  `json:"team_name"`
	}{tok, opaTime(exp), s.team})
}

// authorizeOPA checks the bearer token of an OPA call; false after answering 401/404.
func (e *Emulator) authorizeOPA(w http.ResponseWriter, r *http.Request, team string) (*opaToken, bool) {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	s := &e.opa
	now := e.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[strings.TrimSpace(cred)]
	if !strings.EqualFold(scheme, "Bearer") || t == nil || !now.Before(t.exp) || t.key.deleted || t.user.status != ServiceUserActive {
		writeOPAError(w, http.StatusUnauthorized, "Unauthorized: the bearer token is missing, expired or revoked.", "authentication_error")
		return nil, false
	}
	if !strings.EqualFold(team, s.team) {
		writeOPAError(w, http.StatusNotFound, "Not Found: no team "+team, "not_found")
		return nil, false
	}
	return t, true
}

// allowed checks that the caller holds one of roles; false after answering 403. s.mu held.
func allowed(w http.ResponseWriter, t *opaToken, roles ...string) bool {
	for _, r := range roles {
		if slices.Contains(t.user.roles, r) {
			return true
		}
	}
	writeOPAError(w, http.StatusForbidden, "Missing capability: "+strings.Join(roles, " or "), "authorization_error")
	return false
}

// ---- service users ------------------------------------------------------------------------

func encodeOffset(name string) string { return base64.RawURLEncoding.EncodeToString([]byte(name)) }

func (e *Emulator) handleListServiceUsers(w http.ResponseWriter, r *http.Request, c *call) {
	s := &e.opa
	q := r.URL.Query()
	count := s.pageSize
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeOPAError(w, http.StatusBadRequest, "count must be a positive integer", "bad_request")
			return
		}
		count = min(n, 1000)
	}
	var offset string
	hasOffset := q.Has("offset") && q.Get("offset") != ""
	if hasOffset {
		b, err := base64.RawURLEncoding.DecodeString(q.Get("offset"))
		if err != nil {
			writeOPAError(w, http.StatusBadRequest, "offset is not valid", "bad_request")
			return
		}
		offset = string(b)
	}
	desc := q.Get("descending") == "true"
	prev := q.Get("prev") == "true"
	statuses := map[string]bool{}
	for _, v := range strings.Split(q.Get("status"), ",") {
		if v = strings.ToUpper(strings.TrimSpace(v)); v != "" {
			statuses[v] = true
		}
	}
	ids := map[string]bool{}
	for _, v := range strings.Split(q.Get("id"), ",") {
		if v = strings.TrimSpace(v); v != "" {
			ids[v] = true
		}
	}
	startsWith, contains := strings.ToLower(q.Get("starts_with")), strings.ToLower(q.Get("contains"))

	s.mu.Lock()
	if !allowed(w, c.opaTok, readRoles...) {
		s.mu.Unlock()
		return
	}
	var all []*svcUser
	for _, u := range s.users {
		ln := strings.ToLower(u.name)
		switch {
		case len(statuses) > 0 && !statuses[u.status]:
		case len(statuses) == 0 && u.status == ServiceUserDeleted:
		case len(ids) > 0 && !ids[u.id]:
		case startsWith != "" && !strings.HasPrefix(ln, startsWith):
		case contains != "" && !strings.Contains(ln, contains):
		default:
			all = append(all, u)
		}
	}
	before := func(a, b string) bool { return (a < b) != desc && a != b }
	sort.Slice(all, func(i, j int) bool { return before(all[i].name, all[j].name) })
	lo, hi := 0, len(all)
	if hasOffset {
		// forward: the items after offset; prev: the items before it
		idx := sort.Search(len(all), func(i int) bool { return !before(all[i].name, offset) })
		if prev {
			hi = idx
		} else {
			lo = idx
			if lo < len(all) && all[lo].name == offset {
				lo++
			}
		}
	}
	if prev {
		lo = max(lo, hi-count)
	} else {
		hi = min(hi, lo+count)
	}
	page := all[lo:hi]
	out := make([]serviceUserJSON, len(page))
	for i, u := range page {
		out[i] = s.render(u)
	}
	hasPrev, hasNext := lo > 0 && len(page) > 0, hi < len(all) && len(page) > 0
	s.mu.Unlock()

	var links []string
	link := func(name string, isPrev bool, rel string) {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("count", strconv.Itoa(count))
		nq.Set("offset", encodeOffset(name))
		nq.Del("prev")
		if isPrev {
			nq.Set("prev", "true")
		}
		links = append(links, "<"+e.baseURL(r)+r.URL.Path+"?"+encodeQuery(nq)+`>; rel="`+rel+`"`)
	}
	if hasPrev {
		link(page[0].name, true, "prev")
	}
	if hasNext {
		link(page[len(page)-1].name, false, "next")
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	writeJSON(w, http.StatusOK, map[string]any{"list": out})
}

func validServiceUserName(n string) bool {
	return n != "" && len(n) <= 255 && !strings.ContainsAny(n, "/\x00")
}

func (e *Emulator) handleCreateServiceUser(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !validServiceUserName(req.Name) {
		writeOPAError(w, http.StatusBadRequest, "name is required (1 to 255 characters).", "bad_request")
		return
	}
	s := &e.opa
	s.mu.Lock()
	defer s.mu.Unlock()
	if !allowed(w, c.opaTok, RoleResourceAdmin) {
		return
	}
	if s.users[req.Name] != nil {
		writeOPAError(w, http.StatusConflict, "A user named "+req.Name+" already exists.", "conflict")
		return
	}
	u := &svcUser{id: newUUID(), name: req.Name, status: ServiceUserActive}
	s.users[u.name] = u
	writeJSON(w, http.StatusCreated, s.render(u))
}

func (e *Emulator) handleGetServiceUser(w http.ResponseWriter, r *http.Request, c *call) {
	s := &e.opa
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.pathUserLocked(w, c, false, readRoles...)
	if u == nil {
		return
	}
	writeJSON(w, http.StatusOK, s.render(u))
}

func (e *Emulator) handleUpdateServiceUser(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		Name   *string `json:"name"`
		Status string  `json:"status"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeOPAError(w, http.StatusBadRequest, "The request body is not valid JSON.", "bad_request")
		return
	}
	status := strings.ToUpper(req.Status)
	if status != ServiceUserActive && status != ServiceUserDisabled && status != ServiceUserDeleted {
		writeOPAError(w, http.StatusBadRequest, "status must be ACTIVE, DISABLED or DELETED.", "bad_request")
		return
	}
	s := &e.opa
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.pathUserLocked(w, c, false, RoleResourceAdmin)
	if u == nil {
		return
	}
	if u.status == ServiceUserDeleted {
		writeOPAError(w, http.StatusBadRequest, "A deleted user cannot be changed.", "bad_request")
		return
	}
	if u == c.opaTok.user && status != ServiceUserActive {
		writeOPAError(w, http.StatusBadRequest, "Users can't disable or delete their own account.", "bad_request")
		return
	}
	if req.Name != nil && *req.Name != u.name {
		if !validServiceUserName(*req.Name) {
			writeOPAError(w, http.StatusBadRequest, "name must be 1 to 255 characters.", "bad_request")
			return
		}
		if s.users[*req.Name] != nil {
			writeOPAError(w, http.StatusConflict, "A user named "+*req.Name+" already exists.", "conflict")
			return
		}
		delete(s.users, u.name)
		u.name = *req.Name
		s.users[u.name] = u
	}
	u.status = status
	if status == ServiceUserDeleted {
		u.deletedAt = e.now()
	}
	writeJSON(w, http.StatusOK, s.render(u))
}

// ---- API keys -----------------------------------------------------------------------------

func (e *Emulator) handleListKeys(w http.ResponseWriter, r *http.Request, c *call) {
	s := &e.opa
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.pathUserLocked(w, c, false, RoleResourceAdmin)
	if u == nil {
		return
	}
	out := make([]keyJSON, len(u.keys))
	for i, k := range u.keys {
		out[i] = renderKey(k)
	}
	writeJSON(w, http.StatusOK, map[string]any{"list": out})
}

func (e *Emulator) handleRotateKeys(w http.ResponseWriter, r *http.Request, c *call) {
	s := &e.opa
	now := e.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.pathUserLocked(w, c, true, RoleResourceAdmin)
	if u == nil {
		return
	}
	id, secret := s.rotateLocked(u, now)
	k := renderKey(u.keys[len(u.keys)-1])
	k.ID, k.Secret = id, secret
	writeJSON(w, http.StatusOK, k)
}

// pathUserLocked checks the caller holds one of roles and returns the service user named in
// the path, or writes the error and returns nil; live also refuses a DELETED user. s.mu held.
func (s *opaState) pathUserLocked(w http.ResponseWriter, c *call, live bool, roles ...string) *svcUser {
	if !allowed(w, c.opaTok, roles...) {
		return nil
	}
	u := s.users[c.params["user_name"]]
	if u == nil || (live && u.status == ServiceUserDeleted) {
		writeOPAError(w, http.StatusNotFound, "Not Found", "not_found")
		return nil
	}
	return u
}

// rotateLocked expires u's keys after the grace period and adds a new one; s.mu held.
func (s *opaState) rotateLocked(u *svcUser, now time.Time) (id, secret string) {
	deadline := now.Add(s.grace).UTC().Truncate(time.Second)
	for _, k := range u.keys {
		if k.expires.IsZero() || k.expires.After(deadline) {
			k.expires = deadline
		}
	}
	return s.addKeyLocked(u, now)
}

func (e *Emulator) handleDeleteKey(w http.ResponseWriter, r *http.Request, c *call) {
	s := &e.opa
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.pathUserLocked(w, c, false, RoleResourceAdmin)
	if u == nil {
		return
	}
	i := slices.IndexFunc(u.keys, func(k *apiKey) bool { return k.id == c.params["key_id"] })
	if i < 0 {
		writeOPAError(w, http.StatusNotFound, "Not Found", "not_found")
		return
	}
	u.keys[i].deleted = true // tokens minted from it die now
	u.keys = slices.Delete(u.keys, i, i+1)
	w.WriteHeader(http.StatusNoContent)
}

// ---- helpers for tests and the sandbox ------------------------------------------------------

// ErrNoSuchUser is returned by helper methods for an unknown user or service user.
var ErrNoSuchUser = errors.New("emulator: no such user")

// OPATeam returns the OPA team name.
func (e *Emulator) OPATeam() string { return e.opa.team }

// OPAAdmin returns the name of the seeded OPA service user holding every role.
func (e *Emulator) OPAAdmin() string { return e.opa.admin }

// AdminKey returns the id and secret of the OPA admin service user's first API key.
func (e *Emulator) AdminKey() (keyID, secret string) { return e.opa.adminKeyID, e.opa.adminSecret }

// CreateServiceUser creates an ACTIVE OPA service user with the given roles and returns its id.
func (e *Emulator) CreateServiceUser(name string, roles ...string) (string, error) {
	if !validServiceUserName(name) {
		return "", fmt.Errorf("emulator: invalid service user name %q", name)
	}
	s := &e.opa
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[name] != nil {
		return "", fmt.Errorf("emulator: service user %q exists", name)
	}
	u := &svcUser{id: newUUID(), name: name, status: ServiceUserActive, roles: slices.Clone(roles)}
	s.users[name] = u
	return u.id, nil
}

// AddServiceUserKey adds a never-expiring API key to a service user, leaving its other keys
// alone, and returns the key id and its secret.
func (e *Emulator) AddServiceUserKey(name string) (keyID, secret string, err error) {
	s := &e.opa
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[name]
	if u == nil {
		return "", "", ErrNoSuchUser
	}
	keyID, secret = s.addKeyLocked(u, e.now())
	return keyID, secret, nil
}

// RotateServiceUserKeys does what POST …/keys does, behind the API's back: it expires the
// user's keys after the grace period and returns a new key id and secret.
func (e *Emulator) RotateServiceUserKeys(name string) (keyID, secret string, err error) {
	s := &e.opa
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[name]
	if u == nil {
		return "", "", ErrNoSuchUser
	}
	keyID, secret = s.rotateLocked(u, e.now())
	return keyID, secret, nil
}

// SetServiceUserRoles replaces a service user's roles.
func (e *Emulator) SetServiceUserRoles(name string, roles ...string) error {
	s := &e.opa
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[name]
	if u == nil {
		return ErrNoSuchUser
	}
	u.roles = slices.Clone(roles)
	return nil
}

// ServiceKeyValid reports whether keyID and secret would mint a service token now.
func (e *Emulator) ServiceKeyValid(keyID, secret string) bool {
	s := &e.opa
	s.mu.Lock()
	defer s.mu.Unlock()
	u, k := s.findKeyLocked(keyID, secret)
	return u != nil && keyUsable(k, e.now()) && u.status == ServiceUserActive
}

// ServiceUserKeyIDs returns the ids of a service user's keys (deleted keys excluded), oldest first.
func (e *Emulator) ServiceUserKeyIDs(name string) ([]string, error) {
	s := &e.opa
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[name]
	if u == nil {
		return nil, ErrNoSuchUser
	}
	ids := make([]string, len(u.keys))
	for i, k := range u.keys {
		ids[i] = k.id
	}
	return ids, nil
}
