package emulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// User statuses (okta.md §1.4).
const (
	StatusStaged          = "STAGED"
	StatusProvisioned     = "PROVISIONED"
	StatusActive          = "ACTIVE"
	StatusRecovery        = "RECOVERY"
	StatusPasswordExpired = "PASSWORD_EXPIRED"
	StatusLockedOut       = "LOCKED_OUT"
	StatusSuspended       = "SUSPENDED"
	StatusDeprovisioned   = "DEPROVISIONED"
)

var validStatus = map[string]bool{StatusStaged: true, StatusProvisioned: true, StatusActive: true, StatusRecovery: true,
	StatusPasswordExpired: true, StatusLockedOut: true, StatusSuspended: true, StatusDeprovisioned: true}

// user is one Okta user; guarded by Emulator.mu.
type user struct {
	id     string
	seq    int64
	status string

	created, activated, statusChanged, lastLogin, lastUpdated, passwordChanged time.Time

	profile          map[string]any
	password         string
	hasPassword      bool
	history          []string // most recent first, the current password included
	changes          int64    // passwords set through the API (change_password and admin set)
	recoveryQuestion string

	failed     int         // consecutive failed authn attempts
	lockedAt   time.Time   // when the lockout began
	authnTimes []time.Time // recent authn requests, for the per-username limit
}

func newProfile(first, last, login, email string) map[string]any {
	return map[string]any{"firstName": first, "lastName": last, "mobilePhone": nil, "secondEmail": nil, "login": login, "email": email}
}

func (u *user) str(key string) string {
	s, _ := u.profile[key].(string)
	return s
}

func (u *user) login() string { return u.str("login") }

func (u *user) setPassword(pw string, now time.Time, historyCount int) {
	u.password, u.hasPassword = pw, true
	u.history = append([]string{pw}, u.history...)
	if keep := max(historyCount, 1); len(u.history) > keep {
		u.history = u.history[:keep]
	}
	u.passwordChanged, u.lastUpdated = now, now
}

func (u *user) setStatus(status string, now time.Time) {
	if u.status == status {
		return
	}
	u.status, u.statusChanged, u.lastUpdated = status, now, now
	if status == StatusActive && u.activated.IsZero() {
		u.activated = now
	}
	if status != StatusLockedOut {
		u.failed, u.lockedAt = 0, time.Time{}
	}
}

// unlockIfDue ends a lockout whose LockoutDuration has passed.
func (e *Emulator) unlockIfDue(u *user, now time.Time) {
	if d := e.opts.LockoutDuration; d > 0 && u.status == StatusLockedOut && !u.lockedAt.IsZero() && !now.Before(u.lockedAt.Add(d)) {
		u.setStatus(StatusActive, now)
	}
}

// insertLocked gives u an id and sequence number and indexes it; e.mu must be held.
func (e *Emulator) insertLocked(u *user) {
	for {
		u.id = "00u" + randomAlnum(17)
		if e.users[u.id] == nil {
			break
		}
	}
	e.seq++
	u.seq = e.seq
	e.users[u.id] = u
	e.order = append(e.order, u)
	e.indexLogin(u, "")
}

func shortName(login string) string {
	if i := strings.IndexByte(login, '@'); i >= 0 {
		return strings.ToLower(login[:i])
	}
	return strings.ToLower(login)
}

// indexLogin moves u from the old login's index entries to its current login's.
func (e *Emulator) indexLogin(u *user, old string) {
	if old != "" {
		delete(e.byLogin, strings.ToLower(old))
		s := shortName(old)
		e.byShort[s] = slices.DeleteFunc(e.byShort[s], func(x *user) bool { return x == u })
		if len(e.byShort[s]) == 0 {
			delete(e.byShort, s)
		}
	}
	l := u.login()
	e.byLogin[strings.ToLower(l)] = u
	s := shortName(l)
	e.byShort[s] = append(e.byShort[s], u)
}

// lookupLocked finds a user by id, login (case-insensitive) or unambiguous login shortname.
func (e *Emulator) lookupLocked(key string) *user {
	if u := e.users[key]; u != nil {
		return u
	}
	if u := e.byLogin[strings.ToLower(key)]; u != nil {
		return u
	}
	if !strings.Contains(key, "@") {
		if us := e.byShort[strings.ToLower(key)]; len(us) == 1 {
			return us[0]
		}
	}
	return nil
}

// profileJSON renders a profile with the standard attributes first, nulls included.
type profileJSON map[string]any

var profileOrder = []string{"firstName", "lastName", "mobilePhone", "secondEmail", "login", "email"}

// MarshalJSON implements json.Marshaler.
func (p profileJSON) MarshalJSON() ([]byte, error) {
	keys := make([]string, 0, len(p))
	for _, k := range profileOrder {
		if _, ok := p[k]; ok {
			keys = append(keys, k)
		}
	}
	var rest []string
	for k := range p {
		if !slices.Contains(profileOrder, k) {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	keys = append(keys, rest...)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		var vb bytes.Buffer
		enc := json.NewEncoder(&vb)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(p[k]); err != nil {
			return nil, err
		}
		b.Write(bytes.TrimSuffix(vb.Bytes(), []byte("\n")))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

type link struct {
	Href   string `json:"href"`
	Method string `json:"method,omitempty"`
}

type idRef struct {
	ID string `json:"id"`
}

type providerJSON struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

type questionJSON struct {
	Question string `json:"question"`
}

// credentialsJSON is the credentials object: password is {} when set and absent otherwise.
type credentialsJSON struct {
	Password         *struct{}     `json:"password,omitempty"`
	RecoveryQuestion *questionJSON `json:"recovery_question,omitempty"`
	Provider         providerJSON  `json:"provider"`
}

type userJSON struct {
	ID              string          `json:"id"`
	Status          string          `json:"status"`
	Created         oktaTime        `json:"created"`
	Activated       oktaTime        `json:"activated"`
	StatusChanged   oktaTime        `json:"statusChanged"`
	LastLogin       oktaTime        `json:"lastLogin"`
	LastUpdated     oktaTime        `json:"lastUpdated"`
	PasswordChanged oktaTime        `json:"passwordChanged"`
	Type            idRef           `json:"type"`
	Profile         profileJSON     `json:"profile"`
	Credentials     credentialsJSON `json:"credentials"`
	Links           map[string]link `json:"_links"`
}

func (u *user) credentials() credentialsJSON {
	c := credentialsJSON{Provider: providerJSON{Type: "OKTA", Name: "OKTA"}}
	if u.hasPassword {
		c.Password = &struct{}{}
	}
	if u.recoveryQuestion != "" {
		c.RecoveryQuestion = &questionJSON{Question: u.recoveryQuestion}
	}
	return c
}

// render copies u into its JSON form; full adds the lifecycle links of single-user responses.
func (e *Emulator) render(u *user, base string, full bool) userJSON {
	p := make(profileJSON, len(u.profile))
	for k, v := range u.profile {
		p[k] = v
	}
	self := base + "/api/v1/users/" + u.id
	links := map[string]link{"self": {Href: self}}
	if full {
		post := func(name, path string) { links[name] = link{Href: self + path, Method: "POST"} }
		switch u.status {
		case StatusActive:
			post("suspend", "/lifecycle/suspend")
			post("resetPassword", "/lifecycle/reset_password")
			post("expirePassword", "/lifecycle/expire_password")
			post("deactivate", "/lifecycle/deactivate")
		case StatusPasswordExpired, StatusRecovery:
			post("resetPassword", "/lifecycle/reset_password")
			post("deactivate", "/lifecycle/deactivate")
		case StatusLockedOut:
			post("unlock", "/lifecycle/unlock")
			post("resetPassword", "/lifecycle/reset_password")
			post("deactivate", "/lifecycle/deactivate")
		case StatusSuspended:
			post("unsuspend", "/lifecycle/unsuspend")
			post("deactivate", "/lifecycle/deactivate")
		case StatusStaged, StatusProvisioned:
			post("activate", "/lifecycle/activate")
			post("deactivate", "/lifecycle/deactivate")
		case StatusDeprovisioned:
			post("activate", "/lifecycle/activate")
		}
		if u.hasPassword && changePasswordAllowed(u.status) {
			post("changePassword", "/credentials/change_password")
			post("changeRecoveryQuestion", "/credentials/change_recovery_question")
		}
	}
	return userJSON{
		ID: u.id, Status: u.status,
		Created: oktaTime(u.created), Activated: oktaTime(u.activated), StatusChanged: oktaTime(u.statusChanged),
		LastLogin: oktaTime(u.lastLogin), LastUpdated: oktaTime(u.lastUpdated), PasswordChanged: oktaTime(u.passwordChanged),
		Type: idRef{ID: e.typeID}, Profile: p, Credentials: u.credentials(), Links: links,
	}
}

func changePasswordAllowed(status string) bool {
	switch status {
	case StatusStaged, StatusActive, StatusPasswordExpired, StatusRecovery:
		return true
	}
	return false
}

func etag(u *user) string { return `W/"` + strconv.FormatInt(u.lastUpdated.UnixMilli(), 36) + `"` }

// ---- GET /api/v1/users ----------------------------------------------------------------

const maxLimit = 200

func (e *Emulator) handleListUsers(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	text, filter, search := q.Get("q"), q.Get("filter"), q.Get("search")
	limit := maxLimit
	if text != "" {
		limit = 10
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			validationFailed(w, "limit", "limit: The value must be a number.")
			return
		}
		if n > 0 {
			limit = min(n, maxLimit)
		}
	}
	var preds []func(*user) bool
	if text != "" {
		t := strings.ToLower(text)
		preds = append(preds, func(u *user) bool {
			for _, k := range []string{"firstName", "lastName", "email"} {
				if strings.HasPrefix(strings.ToLower(u.str(k)), t) {
					return true
				}
			}
			return false
		})
	}
	for _, expr := range []struct {
		s      string
		search bool
	}{{filter, false}, {search, true}} {
		if expr.s == "" {
			continue
		}
		p, err := compileExpr(expr.s, expr.search)
		if err != nil {
			writeOktaError(w, http.StatusBadRequest, ErrInvalidSearch, "Invalid search criteria.", err.Error())
			return
		}
		preds = append(preds, p)
	}
	hideDeprovisioned := filter == "" && search == ""
	match := func(u *user) bool {
		if hideDeprovisioned && u.status == StatusDeprovisioned {
			return false
		}
		for _, p := range preds {
			if !p(u) {
				return false
			}
		}
		return true
	}
	sortBy, desc := "", false
	if search != "" {
		sortBy = q.Get("sortBy")
		desc = strings.EqualFold(q.Get("sortOrder"), "desc")
		if sortBy != "" && !knownAttr(sortBy) {
			writeOktaError(w, http.StatusBadRequest, ErrInvalidSearch, "Invalid search criteria.", "sortBy: unknown attribute "+sortBy)
			return
		}
	}
	after := q.Get("after")
	if text != "" {
		after = "" // q is not paged
	}
	base := e.baseURL(r)

	e.mu.RLock()
	var cursor *user
	if after != "" {
		if cursor = e.users[after]; cursor == nil {
			e.mu.RUnlock()
			validationFailed(w, "after", "after: The cursor is not valid.")
			return
		}
	}
	var page []*user
	more := false
	if sortBy == "" {
		start := 0
		if cursor != nil {
			start = sort.Search(len(e.order), func(i int) bool { return e.order[i].seq > cursor.seq })
		}
		for _, u := range e.order[start:] {
			if !match(u) {
				continue
			}
			if len(page) == limit {
				more = true
				break
			}
			page = append(page, u)
		}
	} else {
		var all []*user
		for _, u := range e.order {
			if match(u) {
				all = append(all, u)
			}
		}
		less := func(a, b *user) bool {
			ka, kb := sortKey(a, sortBy), sortKey(b, sortBy)
			if ka != kb {
				return (ka < kb) != desc
			}
			return a.seq < b.seq
		}
		sort.SliceStable(all, func(i, j int) bool { return less(all[i], all[j]) })
		start := 0
		if cursor != nil {
			start = sort.Search(len(all), func(i int) bool { return less(cursor, all[i]) })
		}
		all = all[start:]
		if len(all) > limit {
			all, more = all[:limit], true
		}
		page = all
	}
	out := make([]userJSON, len(page))
	for i, u := range page {
		out[i] = e.render(u, base, false)
	}
	e.mu.RUnlock()

	self := base + r.URL.Path
	if r.URL.RawQuery != "" {
		self += "?" + r.URL.RawQuery
	}
	w.Header().Add("Link", "<"+self+`>; rel="self"`)
	if more && text == "" {
		nq := r.URL.Query()
		nq.Set("after", page[len(page)-1].id)
		w.Header().Add("Link", "<"+base+r.URL.Path+"?"+encodeQuery(nq)+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, out)
}

// encodeQuery encodes v with %20 for spaces, as Okta's links do.
func encodeQuery(v url.Values) string { return strings.ReplaceAll(v.Encode(), "+", "%20") }

// ---- GET /api/v1/users/{idOrLogin} ------------------------------------------------------

func (e *Emulator) handleGetUser(w http.ResponseWriter, r *http.Request, c *call) {
	key := c.params["idOrLogin"]
	e.mu.RLock()
	u := e.lookupLocked(key)
	var out userJSON
	var tag string
	if u != nil {
		out, tag = e.render(u, e.baseURL(r), true), etag(u)
	}
	e.mu.RUnlock()
	if u == nil {
		userNotFound(w, key)
		return
	}
	w.Header().Set("ETag", tag)
	writeJSON(w, http.StatusOK, out)
}

// ---- request bodies ---------------------------------------------------------------------

// passwordValue is a password object {"value": …}; a plain string does not decode into it,
// which is how Okta refuses {"oldPassword": "…"} with E0000003.
type passwordValue struct {
	Value *string `json:"value"`
}

type questionValue struct {
	Question string `json:"question"`
	Answer   string `json:"answer"`
}

type credentialsRequest struct {
	Password         *passwordValue `json:"password"`
	RecoveryQuestion *questionValue `json:"recovery_question"`
}

type userRequest struct {
	Profile     map[string]any      `json:"profile"`
	Credentials *credentialsRequest `json:"credentials"`
}

// decodeBody decodes the JSON body into v; false (after answering E0000003) if it is not
// well-formed for v.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		malformedBody(w)
		return false
	}
	if dec.More() {
		malformedBody(w)
		return false
	}
	return true
}

func (cr *credentialsRequest) newPassword() (string, bool) {
	if cr == nil || cr.Password == nil || cr.Password.Value == nil {
		return "", false
	}
	return *cr.Password.Value, true
}

// checkProfile validates the required attributes of a full profile and returns causes.
func (e *Emulator) checkProfile(p map[string]any, self *user) (field string, causes []string) {
	for _, k := range []string{"login", "email", "firstName", "lastName"} {
		if v, ok := p[k]; !ok || v == nil || v == "" {
			causes = append(causes, k+": The field cannot be left blank")
			if field == "" {
				field = k
			}
			continue
		}
		if _, ok := p[k].(string); !ok {
			causes = append(causes, k+": The value must be a string")
			if field == "" {
				field = k
			}
		}
	}
	if len(causes) > 0 {
		return field, causes
	}
	login, email := p["login"].(string), p["email"].(string)
	if !strings.Contains(login, "@") {
		return "login", []string{"login: Username must be in the form of an email address"}
	}
	if !strings.Contains(email, "@") {
		return "email", []string{"email: Does not match required pattern"}
	}
	if o := e.byLogin[strings.ToLower(login)]; o != nil && o != self {
		return "login", []string{"login: An object with this field already exists in the current organization"}
	}
	return "", nil
}

// ---- POST /api/v1/users -----------------------------------------------------------------

func (e *Emulator) handleCreateUser(w http.ResponseWriter, r *http.Request, c *call) {
	var req userRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Profile == nil {
		validationFailed(w, "login", "login: The field cannot be left blank", "email: The field cannot be left blank",
			"firstName: The field cannot be left blank", "lastName: The field cannot be left blank")
		return
	}
	q := r.URL.Query()
	activate := !strings.EqualFold(q.Get("activate"), "false")
	pw, hasPW := req.Credentials.newPassword()

	e.mu.Lock()
	if field, causes := e.checkProfile(req.Profile, nil); len(causes) > 0 {
		e.mu.Unlock()
		validationFailed(w, field, causes...)
		return
	}
	p := newProfile("", "", "", "")
	for k, v := range req.Profile {
		p[k] = v
	}
	if hasPW && !e.policy.complexityOK(pw, p["login"].(string), str(p["firstName"]), str(p["lastName"])) {
		e.mu.Unlock()
		validationFailed(w, "password", "password: "+e.policy.notMet())
		return
	}
	now := c.now
	u := &user{status: StatusStaged, created: now, statusChanged: now, lastUpdated: now, profile: p}
	if hasPW {
		u.setPassword(pw, now, e.policy.HistoryCount)
	}
	if rq := req.Credentials; rq != nil && rq.RecoveryQuestion != nil {
		u.recoveryQuestion = rq.RecoveryQuestion.Question
	}
	if activate {
		switch {
		case !hasPW:
			u.status = StatusProvisioned
		case q.Get("nextLogin") == "changePassword":
			u.status, u.activated = StatusPasswordExpired, now
		default:
			u.status, u.activated = StatusActive, now
		}
	}
	e.insertLocked(u)
	out := e.render(u, e.baseURL(r), true)
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// ---- POST/PUT /api/v1/users/{id} ------------------------------------------------------

func (e *Emulator) handleUpdateUser(w http.ResponseWriter, r *http.Request, c *call) {
	e.updateUser(w, r, c, false)
}

func (e *Emulator) handleReplaceUser(w http.ResponseWriter, r *http.Request, c *call) {
	e.updateUser(w, r, c, true)
}

func (e *Emulator) updateUser(w http.ResponseWriter, r *http.Request, c *call, replace bool) {
	var req userRequest
	if !decodeBody(w, r, &req) {
		return
	}
	strict := r.URL.Query().Get("strict") == "true"
	key := c.params["id"]
	now := c.now

	e.mu.Lock()
	u := e.lookupLocked(key)
	if u == nil {
		e.mu.Unlock()
		userNotFound(w, key)
		return
	}
	// The profile after the update.
	p := profileJSON{}
	if !replace {
		for k, v := range u.profile {
			p[k] = v
		}
	} else {
		p = profileJSON(newProfile("", "", "", ""))
	}
	for k, v := range req.Profile {
		p[k] = v
	}
	if replace || req.Profile != nil {
		if field, causes := e.checkProfile(p, u); len(causes) > 0 {
			e.mu.Unlock()
			validationFailed(w, field, causes...)
			return
		}
	}
	pw, setPW := req.Credentials.newPassword()
	if setPW {
		switch {
		case !e.policy.complexityOK(pw, str(p["login"]), str(p["firstName"]), str(p["lastName"])):
			e.mu.Unlock()
			validationFailed(w, "password", "password: "+e.policy.notMet())
			return
		case strict && e.policy.HistoryCount > 0 && u.hasPassword && e.policy.inHistory(pw, u.history):
			e.mu.Unlock()
			validationFailed(w, "password", "password: Password has been used too recently")
			return
		case strict && e.policy.MinAge > 0 && !u.passwordChanged.IsZero() && now.Sub(u.passwordChanged) < e.policy.MinAge:
			e.mu.Unlock()
			validationFailed(w, "password", "password: "+e.policy.notMet())
			return
		}
	}
	oldLogin := u.login()
	if replace || req.Profile != nil {
		u.profile = p
		u.lastUpdated = now
		if oldLogin != u.login() {
			e.indexLogin(u, oldLogin)
		}
	}
	if setPW {
		u.setPassword(pw, now, e.policy.HistoryCount)
		u.changes++
		e.passwords.Add(1)
		if u.status == StatusPasswordExpired && !e.opts.AdminSetKeepsExpired {
			u.setStatus(StatusActive, now)
		}
	}
	if rq := req.Credentials; rq != nil && rq.RecoveryQuestion != nil {
		u.recoveryQuestion = rq.RecoveryQuestion.Question
		u.lastUpdated = now
	}
	out := e.render(u, e.baseURL(r), true)
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// ---- POST /api/v1/users/{userId}/credentials/change_password ------------------------------

type changePasswordRequest struct {
	OldPassword    *passwordValue `json:"oldPassword"`
	NewPassword    *passwordValue `json:"newPassword"`
	RevokeSessions *bool          `json:"revokeSessions"`
}

func (e *Emulator) handleChangePassword(w http.ResponseWriter, r *http.Request, c *call) {
	var req changePasswordRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.NewPassword == nil || req.NewPassword.Value == nil {
		validationFailed(w, "newPassword", "newPassword: The field cannot be left blank")
		return
	}
	strict := r.URL.Query().Get("strict") == "true"
	id := c.params["userId"]
	now := c.now

	e.mu.Lock()
	u := e.users[id] // the id only: a login here is not found
	if u == nil {
		e.mu.Unlock()
		userNotFound(w, id)
		return
	}
	e.unlockIfDue(u, now)
	if !u.hasPassword || !changePasswordAllowed(u.status) {
		e.mu.Unlock()
		credentialUpdateFailed(w)
		return
	}
	if req.OldPassword == nil || req.OldPassword.Value == nil || *req.OldPassword.Value != u.password {
		e.mu.Unlock()
		credentialUpdateFailed(w, "Old Password is not correct")
		return
	}
	pw := *req.NewPassword.Value
	if !e.policy.complexityOK(pw, u.login(), u.str("firstName"), u.str("lastName")) ||
		(e.policy.HistoryCount > 0 && e.policy.inHistory(pw, u.history)) ||
		(strict && e.policy.MinAge > 0 && !u.passwordChanged.IsZero() && now.Sub(u.passwordChanged) < e.policy.MinAge) {
		e.mu.Unlock()
		credentialUpdateFailed(w, e.policy.notMet())
		return
	}
	u.setPassword(pw, now, e.policy.HistoryCount)
	u.changes++
	if u.status == StatusRecovery || u.status == StatusPasswordExpired {
		u.setStatus(StatusActive, now)
	}
	out := u.credentials()
	e.mu.Unlock()
	e.passwords.Add(1)
	writeJSON(w, http.StatusOK, out)
}

// ---- POST /api/v1/users/{id}/lifecycle/{operation} ----------------------------------------

func (e *Emulator) handleLifecycle(w http.ResponseWriter, r *http.Request, c *call) {
	op, key := c.params["operation"], c.params["id"]
	now := c.now
	base := e.baseURL(r)
	sendEmail := r.URL.Query().Get("sendEmail")

	e.mu.Lock()
	u := e.lookupLocked(key)
	if u == nil {
		e.mu.Unlock()
		userNotFound(w, key)
		return
	}
	e.unlockIfDue(u, now)
	refuse := func(msg string) {
		e.mu.Unlock()
		writeOktaError(w, http.StatusBadRequest, ErrValidation, "Api validation failed: "+op, msg)
	}
	var out any = struct{}{}
	switch op {
	case "activate":
		if u.status != StatusStaged && u.status != StatusProvisioned && u.status != StatusDeprovisioned {
			refuse("Activation failed because the user is already active")
			return
		}
		if u.hasPassword {
			u.setStatus(StatusActive, now)
		} else {
			u.setStatus(StatusProvisioned, now)
			u.activated = now
		}
		if sendEmail == "false" {
			t := randomString(20)
			out = map[string]string{"activationUrl": base + "/welcome/" + t, "activationToken": t}
		}
	case "deactivate":
		if u.status == StatusDeprovisioned {
			refuse("The user is already deactivated")
			return
		}
		u.setStatus(StatusDeprovisioned, now)
	case "suspend":
		if u.status != StatusActive {
			refuse("Only active users can be suspended")
			return
		}
		u.setStatus(StatusSuspended, now)
	case "unsuspend":
		if u.status != StatusSuspended {
			refuse("The user is not suspended")
			return
		}
		u.setStatus(StatusActive, now)
	case "unlock":
		if u.status != StatusLockedOut {
			refuse("The user is not locked out")
			return
		}
		u.setStatus(StatusActive, now)
	case "expire_password":
		if !u.hasPassword || (u.status != StatusActive && u.status != StatusPasswordExpired) {
			refuse("Only active users with a password can have it expired")
			return
		}
		u.setStatus(StatusPasswordExpired, now)
		out = e.render(u, base, true)
	case "reset_password":
		if u.status == StatusDeprovisioned || u.status == StatusStaged {
			refuse("The user cannot reset the password in status " + u.status)
			return
		}
		u.setStatus(StatusRecovery, now)
		out = map[string]string{"resetPasswordUrl": base + "/reset_password/" + randomString(20)}
	default:
		e.mu.Unlock()
		writeOktaError(w, http.StatusNotFound, ErrNotFound, "Not found: Resource not found: "+r.URL.Path+" (ApiEndpoint)")
		return
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}
