package rotation

import (
	"context"
	"math"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// targets holds one rate limiter per connector target, so that many runs falling due at once
// (or heartbeats) cannot flood one Okta org, OPA team or REST endpoint. Every connector
// operation (a change, a check, an issue, a retirement) takes one token of its target's.
type targets struct {
	limit rate.Limit // rate.Inf: unlimited
	burst int

	mu sync.Mutex
	by map[string]*rate.Limiter // one per target; targets are few (resource records)
}

func newTargets(perSecond float64, burst int) *targets {
	limit := rate.Inf
	if perSecond > 0 {
		limit = rate.Limit(perSecond)
	}
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &targets{limit: limit, burst: burst, by: map[string]*rate.Limiter{}}
}

// wait blocks until key's target may take one more operation, or ctx ends, and says how long
// it waited.
func (t *targets) wait(ctx context.Context, key string) (time.Duration, error) {
	if t.limit == rate.Inf {
		return 0, nil
	}
	t.mu.Lock()
	l, ok := t.by[key]
	if !ok {
		l = rate.NewLimiter(t.limit, t.burst)
		t.by[key] = l
	}
	t.mu.Unlock()
	r := l.Reserve()
	delay := r.Delay()
	if delay == 0 {
		return 0, nil
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
		return delay, nil
	case <-ctx.Done():
		r.Cancel() // give the token back to the callers behind
		return 0, ctx.Err()
	}
}

// targetKey names the system a connector reaches: the connector and the host of the target's
// URL (one Okta org, whichever record points at it), or the resource record when it has no URL.
func targetKey(connectorName, targetURL, resourceUID string) string {
	if u, err := url.Parse(targetURL); err == nil && u.Host != "" {
		return connectorName + " " + strings.ToLower(u.Scheme+"://"+u.Host)
	}
	return connectorName + " record:" + resourceUID
}
