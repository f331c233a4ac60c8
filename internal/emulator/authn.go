package emulator

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// POST /api/v1/authn (okta.md §1.10): primary authentication as a password check.

type authnRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type hints struct {
	Allow []string `json:"allow"`
}

type authnLink struct {
	Name  string `json:"name,omitempty"`
	Href  string `json:"href"`
	Hints hints  `json:"hints"`
}

type authnUser struct {
	ID              string            `json:"id"`
	PasswordChanged oktaTime          `json:"passwordChanged"`
	Profile         map[string]string `json:"profile"`
}

type complexityJSON struct {
	MinLength       int  `json:"minLength"`
	MinLowerCase    int  `json:"minLowerCase"`
	MinUpperCase    int  `json:"minUpperCase"`
	MinNumber       int  `json:"minNumber"`
	MinSymbol       int  `json:"minSymbol"`
	ExcludeUsername bool `json:"excludeUsername"`
}

type authnEmbedded struct {
	User   *authnUser `json:"user,omitempty"`
	Policy any        `json:"policy,omitempty"`
}

type authnResponse struct {
	StateToken   string               `json:"stateToken,omitempty"`
	ExpiresAt    *oktaTime            `json:"expiresAt,omitempty"`
	Status       string               `json:"status"`
	SessionToken string               `json:"sessionToken,omitempty"`
	Embedded     authnEmbedded        `json:"_embedded"`
	Links        map[string]authnLink `json:"_links,omitempty"`
}

func (e *Emulator) handleAuthn(w http.ResponseWriter, r *http.Request, c *call) {
	var req authnRequest
	if !decodeBody(w, r, &req) {
		return
	}
	now := c.now
	base := e.baseURL(r)
	fail := func() {
		e.stats.update(func(s *Stats) { s.AuthnFailures++ })
		writeOktaError(w, http.StatusUnauthorized, ErrAuthnFailed, "Authentication failed")
	}

	e.mu.Lock()
	u := e.byLogin[strings.ToLower(req.Username)]
	if u == nil && req.Username != "" && !strings.Contains(req.Username, "@") {
		if us := e.byShort[strings.ToLower(req.Username)]; len(us) == 1 {
			u = us[0]
		}
	}
	if u == nil {
		e.mu.Unlock()
		fail()
		return
	}
	e.unlockIfDue(u, now)
	if limit := e.opts.AuthnPerUserPerSecond; limit > 0 {
		recent := u.authnTimes[:0]
		for _, t := range u.authnTimes {
			if now.Sub(t) < time.Second {
				recent = append(recent, t)
			}
		}
		u.authnTimes = recent
		if len(recent) >= limit {
			e.mu.Unlock()
			e.stats.update(func(s *Stats) { s.RateLimited[EndpointAuthn]++; s.Sent429++ })
			// The per-user limit's own headers: a one-second window.
			w.Header().Set("X-Rate-Limit-Limit", strconv.Itoa(limit))
			w.Header().Set("X-Rate-Limit-Remaining", "0")
			w.Header().Set("X-Rate-Limit-Reset", strconv.FormatInt(resetSeconds(recent[0].Add(time.Second)), 10))
			writeOktaError(w, http.StatusTooManyRequests, ErrRateLimited, "API call exceeded rate limit due to too many requests.")
			return
		}
		u.authnTimes = append(u.authnTimes, now)
	}
	cancel := authnLink{Href: base + "/api/v1/authn/cancel", Hints: hints{Allow: []string{"POST"}}}
	if u.status == StatusLockedOut {
		e.mu.Unlock()
		writeJSON(w, http.StatusOK, authnResponse{Status: StatusLockedOut, Links: map[string]authnLink{
			"next":   {Name: "unlock", Href: base + "/api/v1/authn/recovery/unlock", Hints: hints{Allow: []string{"POST"}}},
			"cancel": cancel,
		}})
		return
	}
	if !u.hasPassword || req.Password != u.password {
		if u.hasPassword && (u.status == StatusActive || u.status == StatusPasswordExpired || u.status == StatusRecovery) {
			u.failed++
			if t := e.opts.LockoutThreshold; t > 0 && u.failed >= t {
				u.setStatus(StatusLockedOut, now)
				u.lockedAt = now
			}
		}
		e.mu.Unlock()
		fail()
		return
	}
	embedded := &authnUser{ID: u.id, PasswordChanged: oktaTime(u.passwordChanged), Profile: map[string]string{
		"login": u.login(), "firstName": u.str("firstName"), "lastName": u.str("lastName"),
		"locale": "en_US", "timeZone": "America/Los_Angeles",
	}}
	exp := oktaTime(now.Add(5 * time.Minute))
	switch u.status {
	case StatusActive:
		u.failed = 0
		u.lastLogin = now
		e.mu.Unlock()
		writeJSON(w, http.StatusOK, authnResponse{ExpiresAt: &exp, Status: "SUCCESS", SessionToken: "20111" + randomString(37),
			Embedded: authnEmbedded{User: embedded}})
	case StatusPasswordExpired:
		u.failed = 0
		p := e.policy
		e.mu.Unlock()
		policy := map[string]any{"complexity": complexityJSON{MinLength: p.MinLength, MinLowerCase: p.MinLowerCase,
			MinUpperCase: p.MinUpperCase, MinNumber: p.MinNumber, MinSymbol: p.MinSymbol, ExcludeUsername: p.ExcludeUsername}}
		if p.HistoryCount > 0 {
			policy["expiration"] = map[string]int{"passwordExpireDays": 0}
			policy["age"] = map[string]int{"minAgeMinutes": int(p.MinAge.Minutes()), "historyCount": p.HistoryCount}
		}
		writeJSON(w, http.StatusOK, authnResponse{StateToken: "00" + randomString(40), ExpiresAt: &exp, Status: StatusPasswordExpired,
			Embedded: authnEmbedded{User: embedded, Policy: policy},
			Links: map[string]authnLink{
				"next":   {Name: "changePassword", Href: base + "/api/v1/authn/credentials/change_password", Hints: hints{Allow: []string{"POST"}}},
				"cancel": cancel,
			}})
	default: // STAGED, PROVISIONED, RECOVERY, SUSPENDED, DEPROVISIONED cannot sign in
		e.mu.Unlock()
		fail()
	}
}
