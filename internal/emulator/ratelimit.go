package emulator

import (
	"sync"
	"time"
)

// Rate-limit buckets: each counts requests per minute against its own limit (okta.md §1.9).
const (
	BucketUsersList        = "users.list"        // GET and POST /api/v1/users
	BucketUsersGet         = "users.get"         // GET /api/v1/users/{idOrLogin}
	BucketUsersUpdate      = "users.update"      // POST and PUT /api/v1/users/{id}
	BucketUsersCredentials = "users.credentials" // /api/v1/users/{id}/credentials/* and /lifecycle/*
	BucketAuthn            = "authn"             // POST /api/v1/authn
	BucketOAuthToken       = "oauth.token"       // POST /oauth2/v1/token
	BucketOther            = "other"             // any other Okta path
	BucketOPA              = "opa"               // every /v1/teams/{team}/… call
)

// DefaultRateLimit is the per-minute limit of a bucket when Options set none: far above a
// real org's (okta.md §1.9), so that benchmarks measure the gateway and not the limiter.
const DefaultRateLimit = 6000

// window is one bucket's fixed window (a minute, as Okta's), starting at its first request.
type window struct {
	limit int
	start time.Time
	count int
}

type rateLimiter struct {
	mu      sync.Mutex
	span    time.Duration // the window's length
	def     int
	limits  map[string]int
	windows map[string]*window
}

func newRateLimiter(def int, limits map[string]int, span time.Duration) *rateLimiter {
	if def <= 0 {
		def = DefaultRateLimit
	}
	if span <= 0 {
		span = time.Minute
	}
	l := &rateLimiter{span: span, def: def, limits: map[string]int{}, windows: map[string]*window{}}
	for k, v := range limits {
		l.limits[k] = v
	}
	return l
}

func (l *rateLimiter) set(bucket string, perMinute int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limits[bucket] = perMinute
	if w := l.windows[bucket]; w != nil {
		w.limit = l.limitOf(bucket)
	}
}

func (l *rateLimiter) limitOf(bucket string) int {
	if v, ok := l.limits[bucket]; ok && v > 0 {
		return v
	}
	return l.def
}

// take counts one request in bucket and returns the limit, the requests remaining in the
// window, when the window resets, and whether the request is within the limit.
func (l *rateLimiter) take(bucket string, now time.Time) (limit, remaining int, reset time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.windows[bucket]
	if w == nil {
		w = &window{limit: l.limitOf(bucket), start: now}
		l.windows[bucket] = w
	}
	if !now.Before(w.start.Add(l.span)) {
		w.start, w.count = now, 0
	}
	w.count++
	remaining = max(w.limit-w.count, 0)
	return w.limit, remaining, w.start.Add(l.span), w.count <= w.limit
}

// resetSeconds is a window end as X-Rate-Limit-Reset wants it: epoch seconds, rounded up.
func resetSeconds(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}
