// Package emulator is an in-memory emulator of the Okta Management API (users, SSWS and
// OAuth 2.0 private_key_jwt authentication, the Authn API) and of the Okta Privileged Access
// service-user API (service tokens, service users, API keys), behaving as Okta documents
// (see shared/reference/okta.md), for tests, benchmarks and the sandbox. An *Emulator is an
// http.Handler; all state is in memory and every method is safe for concurrent use.
package emulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint names, as used by Stats.Requests and Stats.RateLimited.
const (
	EndpointOAuthToken        = "POST /oauth2/v1/token"
	EndpointAuthn             = "POST /api/v1/authn"
	EndpointListUsers         = "GET /api/v1/users"
	EndpointCreateUser        = "POST /api/v1/users"
	EndpointGetUser           = "GET /api/v1/users/{idOrLogin}"
	EndpointUpdateUser        = "POST /api/v1/users/{id}"
	EndpointReplaceUser       = "PUT /api/v1/users/{id}"
	EndpointChangePassword    = "POST /api/v1/users/{userId}/credentials/change_password"
	EndpointLifecycle         = "POST /api/v1/users/{id}/lifecycle/{operation}"
	EndpointServiceToken      = "POST /v1/teams/{team_name}/service_token"
	EndpointListServiceUsers  = "GET /v1/teams/{team_name}/service_users"
	EndpointCreateServiceUser = "POST /v1/teams/{team_name}/service_users"
	EndpointGetServiceUser    = "GET /v1/teams/{team_name}/service_users/{user_name}"
	EndpointUpdateServiceUser = "PUT /v1/teams/{team_name}/service_users/{user_name}"
	EndpointListKeys          = "GET /v1/teams/{team_name}/service_users/{user_name}/keys"
	EndpointRotateKeys        = "POST /v1/teams/{team_name}/service_users/{user_name}/keys"
	EndpointDeleteKey         = "DELETE /v1/teams/{team_name}/service_users/{user_name}/keys/{key_id}"
)

// OAuth 2.0 scopes of the Users API; okta.users.manage also grants okta.users.read.
const (
	ScopeUsersRead   = "okta.users.read"
	ScopeUsersManage = "okta.users.manage"
)

// Options configure an Emulator. The zero value is a usable org with one random SSWS token,
// no users, the default password policy and generous rate limits.
type Options struct {
	// Tokens are the valid SSWS API tokens; when empty one random token is made (see Token).
	Tokens []string
	// Users is the number of users to seed: SeedLogin(i) with password SeedPassword(i),
	// i = 1..Users, ACTIVE, firstName "Test", lastName "User%04d".
	Users int
	// OAuthClients are the API Services apps allowed to use /oauth2/v1/token.
	OAuthClients []OAuthClient
	// PasswordPolicy overrides DefaultPasswordPolicy when set.
	PasswordPolicy *PasswordPolicy
	// LockoutThreshold is the number of consecutive failed /api/v1/authn attempts that lock
	// a user out: 0 means 10, negative never locks.
	LockoutThreshold int
	// LockoutDuration unlocks a locked-out user automatically after it; 0 never does.
	LockoutDuration time.Duration
	// AuthnPerUserPerSecond limits /api/v1/authn per username: 0 means 4, negative is unlimited.
	AuthnPerUserPerSecond int
	// AdminSetKeepsExpired leaves a PASSWORD_EXPIRED user expired after an admin set password
	// (POST /api/v1/users/{id}); by default the user becomes ACTIVE.
	AdminSetKeepsExpired bool

	// RateLimit is the per-minute limit of every bucket: 0 means DefaultRateLimit.
	RateLimit int
	// RateLimits overrides RateLimit per bucket (Bucket* constants).
	RateLimits map[string]int
	// RateWindow is the length of a rate-limit window: 0 means a minute, as Okta's. Tests
	// shorten it; the limits then count per window.
	RateWindow time.Duration
	// ConcurrentLimit answers 429 when more requests than this are in flight; 0 is unlimited.
	ConcurrentLimit int

	// AccessTokenTTL is the lifetime of OAuth access tokens: 0 means one hour.
	AccessTokenTTL time.Duration
	// BaseURL is the absolute URL used in links and accepted as a JWT audience base; empty
	// means scheme://Host of each request.
	BaseURL string

	// OPATeam is the Okta Privileged Access team name: "" means "emulator".
	OPATeam string
	// OPAAdmin is the name of the seeded service user holding every role: "" means
	// "emulator-admin". Its first key is AdminKey.
	OPAAdmin string
	// OPATokenTTL is the lifetime of OPA bearer tokens: 0 means one hour.
	OPATokenTTL time.Duration
	// OPAKeyGrace is how long older keys keep working after a rotation: 0 means 48 hours.
	OPAKeyGrace time.Duration
	// OPAPageSize is the default `count` of service-user lists: 0 means 100.
	OPAPageSize int

	// Faults injects failures and latency (also changeable later with SetFaults).
	Faults Faults
	// Now is the clock: nil means time.Now.
	Now func() time.Time
}

// Emulator is the emulated Okta org and OPA team; it implements http.Handler.
type Emulator struct {
	opts    Options
	now     func() time.Time
	policy  PasswordPolicy
	typeID  string
	limiter *rateLimiter
	faults  faultState
	stats   statsState
	routes  []*route

	inflight  atomic.Int64
	closed    chan struct{}
	closeOnce sync.Once

	tokMu  sync.RWMutex
	tokens map[string]bool

	mu        sync.RWMutex // guards the users
	users     map[string]*user
	byLogin   map[string]*user
	byShort   map[string][]*user
	order     []*user // by seq
	seq       int64
	passwords atomic.Int64

	oauth oauthState
	opa   opaState
}

// New returns an emulator configured by opts, with its seeded users and OPA admin.
func New(opts Options) *Emulator {
	e := &Emulator{
		opts:    opts,
		now:     opts.Now,
		policy:  DefaultPasswordPolicy(),
		typeID:  "oty" + randomAlnum(17),
		limiter: newRateLimiter(opts.RateLimit, opts.RateLimits, opts.RateWindow),
		closed:  make(chan struct{}),
		tokens:  map[string]bool{},
		users:   map[string]*user{},
		byLogin: map[string]*user{},
		byShort: map[string][]*user{},
	}
	if e.now == nil {
		e.now = time.Now
	}
	if opts.PasswordPolicy != nil {
		e.policy = *opts.PasswordPolicy
	}
	if e.opts.LockoutThreshold == 0 {
		e.opts.LockoutThreshold = 10
	}
	if e.opts.AuthnPerUserPerSecond == 0 {
		e.opts.AuthnPerUserPerSecond = 4
	}
	if e.opts.AccessTokenTTL <= 0 {
		e.opts.AccessTokenTTL = time.Hour
	}
	e.opts.BaseURL = strings.TrimSuffix(e.opts.BaseURL, "/")
	e.stats.s = newStats()
	e.faults.set(opts.Faults)
	for _, t := range opts.Tokens {
		e.tokens[t] = true
	}
	if len(opts.Tokens) == 0 {
		t := "00" + randomString(40)
		e.opts.Tokens = []string{t}
		e.tokens[t] = true
	}
	e.routes = e.routeTable()
	e.oauth.init()
	for _, c := range opts.OAuthClients {
		e.AddOAuthClient(c)
	}
	now := e.clock()
	for i := 1; i <= opts.Users; i++ {
		u := &user{status: StatusActive, created: now, activated: now, statusChanged: now, lastUpdated: now,
			profile: newProfile("Test", fmt.Sprintf("User%04d", i), SeedLogin(i), SeedLogin(i))}
		u.setPassword(SeedPassword(i), now, e.policy.HistoryCount)
		e.insertLocked(u)
	}
	e.opa.init(e)
	return e
}

// clock is the emulator's time, truncated to Okta's millisecond precision.
func (e *Emulator) clock() time.Time { return e.now().UTC().Truncate(time.Millisecond) }

// Token returns the first SSWS API token.
func (e *Emulator) Token() string { return e.opts.Tokens[0] }

// AddToken makes another SSWS API token valid.
func (e *Emulator) AddToken(token string) {
	e.tokMu.Lock()
	e.tokens[token] = true
	e.tokMu.Unlock()
}

// RevokeToken makes an SSWS API token invalid.
func (e *Emulator) RevokeToken(token string) {
	e.tokMu.Lock()
	delete(e.tokens, token)
	e.tokMu.Unlock()
}

// SetFaults replaces the fault configuration.
func (e *Emulator) SetFaults(f Faults) { e.faults.set(f) }

// SetRateLimit sets the per-minute limit of one bucket (Bucket* constants); the current
// window keeps its count.
func (e *Emulator) SetRateLimit(bucket string, perMinute int) { e.limiter.set(bucket, perMinute) }

// Stats returns a copy of the counters.
func (e *Emulator) Stats() Stats {
	s := e.stats.snapshot()
	s.PasswordChanges = e.passwords.Load()
	return s
}

// ResetStats zeroes the counters.
func (e *Emulator) ResetStats() {
	e.stats.update(func(s *Stats) { *s = newStats() })
	e.passwords.Store(0)
}

// Close releases requests hanging on an injected timeout; the handler keeps serving.
func (e *Emulator) Close() { e.closeOnce.Do(func() { close(e.closed) }) }

// authKind is how a route authenticates its caller.
type authKind int

const (
	authNone         authKind = iota
	authOkta                  // SSWS, Bearer or DPoP with a scope
	authOktaOptional          // /api/v1/authn: anonymous, or a valid SSWS token
	authOPA                   // OPA bearer token
)

// call is what a handler gets besides the request.
type call struct {
	params map[string]string
	now    time.Time
	opaTok *opaToken
}

type route struct {
	endpoint string
	method   string
	segs     []string
	bucket   string
	auth     authKind
	scope    string
	handle   func(w http.ResponseWriter, r *http.Request, c *call)
}

func (e *Emulator) routeTable() []*route {
	mk := func(endpoint, bucket string, auth authKind, scope string, h func(http.ResponseWriter, *http.Request, *call)) *route {
		method, path, _ := strings.Cut(endpoint, " ")
		return &route{endpoint: endpoint, method: method, segs: strings.Split(strings.TrimPrefix(path, "/"), "/"),
			bucket: bucket, auth: auth, scope: scope, handle: h}
	}
	return []*route{
		mk(EndpointOAuthToken, BucketOAuthToken, authNone, "", e.handleToken),
		mk(EndpointAuthn, BucketAuthn, authOktaOptional, "", e.handleAuthn),
		mk(EndpointListUsers, BucketUsersList, authOkta, ScopeUsersRead, e.handleListUsers),
		mk(EndpointCreateUser, BucketUsersList, authOkta, ScopeUsersManage, e.handleCreateUser),
		mk(EndpointGetUser, BucketUsersGet, authOkta, ScopeUsersRead, e.handleGetUser),
		mk(EndpointUpdateUser, BucketUsersUpdate, authOkta, ScopeUsersManage, e.handleUpdateUser),
		mk(EndpointReplaceUser, BucketUsersUpdate, authOkta, ScopeUsersManage, e.handleReplaceUser),
		mk(EndpointChangePassword, BucketUsersCredentials, authOkta, ScopeUsersManage, e.handleChangePassword),
		mk(EndpointLifecycle, BucketUsersCredentials, authOkta, ScopeUsersManage, e.handleLifecycle),
		mk(EndpointServiceToken, BucketOPA, authNone, "", e.handleServiceToken),
		mk(EndpointListServiceUsers, BucketOPA, authOPA, "", e.handleListServiceUsers),
		mk(EndpointCreateServiceUser, BucketOPA, authOPA, "", e.handleCreateServiceUser),
		mk(EndpointGetServiceUser, BucketOPA, authOPA, "", e.handleGetServiceUser),
		mk(EndpointUpdateServiceUser, BucketOPA, authOPA, "", e.handleUpdateServiceUser),
		mk(EndpointListKeys, BucketOPA, authOPA, "", e.handleListKeys),
		mk(EndpointRotateKeys, BucketOPA, authOPA, "", e.handleRotateKeys),
		mk(EndpointDeleteKey, BucketOPA, authOPA, "", e.handleDeleteKey),
	}
}

// splitPath splits an escaped path into unescaped segments, so that an encoded "/" stays
// inside its segment.
func splitPath(escaped string) ([]string, bool) {
	segs := strings.Split(strings.TrimPrefix(escaped, "/"), "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, false
		}
		segs[i] = u
	}
	return segs, true
}

// match finds the route for method and segs; known reports whether some route has the path.
func (e *Emulator) match(method string, segs []string) (rt *route, params map[string]string, known bool) {
	for _, r := range e.routes {
		if len(r.segs) != len(segs) {
			continue
		}
		var p map[string]string
		ok := true
		for i, s := range r.segs {
			if strings.HasPrefix(s, "{") {
				if segs[i] == "" {
					ok = false
					break
				}
				if p == nil {
					p = map[string]string{}
				}
				p[strings.Trim(s, "{}")] = segs[i]
			} else if s != segs[i] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		known = true
		if r.method == method {
			return r, p, true
		}
	}
	return nil, nil, known
}

const maxBody = 1 << 20

// ServeHTTP serves the Okta and OPA APIs: common headers, rate limits, injected faults,
// authentication, then the endpoint.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := e.now()
	segs, okPath := splitPath(r.URL.EscapedPath())
	var rt *route
	var params map[string]string
	var known bool
	if okPath {
		rt, params, known = e.match(r.Method, segs)
	}
	opa := len(segs) >= 2 && segs[0] == "v1" && segs[1] == "teams"
	h := w.Header()
	h.Set("Date", now.UTC().Format(http.TimeFormat))
	if !opa {
		h.Set("X-Okta-Request-Id", requestID())
	}
	endpoint, bucket := "unknown", BucketOther
	if opa {
		bucket = BucketOPA
	}
	if rt != nil {
		endpoint, bucket = rt.endpoint, rt.bucket
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	limit, remaining, reset, within := e.limiter.take(bucket, now)
	e.stats.update(func(s *Stats) {
		s.Requests[endpoint]++
		s.WindowPeak[bucket] = max(s.WindowPeak[bucket], limit-remaining)
	})
	if !opa {
		h.Set("X-Rate-Limit-Limit", strconv.Itoa(limit))
		h.Set("X-Rate-Limit-Remaining", strconv.Itoa(remaining))
		h.Set("X-Rate-Limit-Reset", strconv.FormatInt(resetSeconds(reset), 10))
	}
	n := e.inflight.Add(1)
	defer e.inflight.Add(-1)
	if c := e.opts.ConcurrentLimit; c > 0 && n > int64(c) && within {
		within, reset = false, now.Add(time.Second)
		if !opa {
			h.Set("X-Rate-Limit-Limit", strconv.Itoa(c))
			h.Set("X-Rate-Limit-Reset", strconv.FormatInt(resetSeconds(reset), 10))
		}
	}
	if !within {
		e.tooManyRequests(w, endpoint, opa, reset)
		return
	}

	kind, latency, f := e.faults.draw(r)
	if latency > 0 && !e.sleep(r.Context(), latency) {
		e.abandon(w, r)
		return
	}
	serve := func(w http.ResponseWriter) {
		e.serve(w, r, rt, params, known, opa, len(body) > maxBody)
	}
	if kind != "" {
		e.stats.update(func(s *Stats) { s.Faults[kind]++ })
	}
	switch kind {
	case Fault500:
		if opa {
			writeOPAError(w, http.StatusInternalServerError, "Internal Server Error", "internal_error")
		} else {
			writeOktaError(w, http.StatusInternalServerError, ErrInternal, "Internal Server Error")
		}
	case Fault429:
		e.tooManyRequests(w, endpoint, opa, reset)
	case FaultTimeout:
		var buf *bufferedResponse
		if f.AfterApply {
			buf = newBufferedResponse(h)
			serve(buf)
		}
		if !e.hang(r.Context(), f.TimeoutDelay) {
			e.abandon(w, r)
			return
		}
		if buf != nil {
			buf.flush(w)
		} else {
			serve(w)
		}
	case FaultReset:
		if f.AfterApply {
			serve(newBufferedResponse(h))
		}
		resetConnection(w)
	default:
		serve(w)
	}
}

func (e *Emulator) serve(w http.ResponseWriter, r *http.Request, rt *route, params map[string]string, known, opa, tooLarge bool) {
	if rt == nil {
		switch {
		case opa && known:
			writeOPAError(w, http.StatusMethodNotAllowed, "Method Not Allowed", "method_not_allowed")
		case opa:
			writeOPAError(w, http.StatusNotFound, "Not Found", "not_found")
		case known:
			writeOktaError(w, http.StatusMethodNotAllowed, ErrMethodNotAllowed, "The endpoint does not support the provided HTTP method")
		default:
			writeOktaError(w, http.StatusNotFound, ErrNotFound, "Not found: Resource not found: "+r.URL.Path+" (ApiEndpoint)")
		}
		return
	}
	if tooLarge {
		if opa {
			writeOPAError(w, http.StatusRequestEntityTooLarge, "request body too large", "bad_request")
		} else {
			malformedBody(w)
		}
		return
	}
	c := &call{params: params}
	switch rt.auth {
	case authOkta, authOktaOptional:
		if !e.authorizeOkta(w, r, rt) {
			return
		}
	case authOPA:
		tok, ok := e.authorizeOPA(w, r, params["team_name"])
		if !ok {
			return
		}
		c.opaTok = tok
	}
	c.now = e.clock()
	rt.handle(w, r, c)
}

func (e *Emulator) tooManyRequests(w http.ResponseWriter, endpoint string, opa bool, reset time.Time) {
	e.stats.update(func(s *Stats) { s.RateLimited[endpoint]++; s.Sent429++ })
	if opa {
		w.Header().Set("X-RateLimit-Retry-At", strconv.FormatInt(resetSeconds(reset), 10))
		writeOPAError(w, http.StatusTooManyRequests, "Too Many Requests", "rate_limit_exceeded")
		return
	}
	w.Header().Set("X-Rate-Limit-Remaining", "0")
	writeOktaError(w, http.StatusTooManyRequests, ErrRateLimited, "API call exceeded rate limit due to too many requests.")
}

// sleep waits d; false if the client went away or the emulator was closed first.
func (e *Emulator) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-e.closed:
		return false
	}
}

// abandon ends a request nobody will answer: if the client is still there (the emulator was
// closed), its connection is reset rather than answered with an empty 200.
func (e *Emulator) abandon(w http.ResponseWriter, r *http.Request) {
	if r.Context().Err() == nil {
		resetConnection(w)
	}
}

// hang waits d (forever when 0) and reports whether the client is still waiting.
func (e *Emulator) hang(ctx context.Context, d time.Duration) bool {
	if d > 0 {
		return e.sleep(ctx, d)
	}
	select {
	case <-ctx.Done():
	case <-e.closed:
	}
	return false
}

// baseURL is the absolute URL of the org as the client reached it.
func (e *Emulator) baseURL(r *http.Request) string {
	if e.opts.BaseURL != "" {
		return e.opts.BaseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// newUUID returns a random version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0xf])
	}
	return string(out)
}
