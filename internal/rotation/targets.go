package rotation

import (
	"context"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// targets holds one rate limiter per connector target, so that many runs falling due at once
// (or heartbeats) cannot flood one Okta org, OPA team or REST endpoint. Every connector
// operation (a change, a check, an issue, a retirement) takes one token of its target's.
//
// A run that has not started yet is admitted only once its target has the tokens of a typical
// run (a change and a check) to spare, which it takes at once; until then it waits on the
// target's list, holding no worker, and is handed back in turn with its tokens taken. So a
// burst against one target does not hold up the runs of the others.
type targets struct {
	clock  Clock
	limit  rate.Limit // rate.Inf: unlimited
	burst  int
	perRun int // tokens a run takes when it is admitted: min(2, burst)

	mu sync.Mutex
	by map[string]*target // targets are few (resource records); none is dropped
}

type target struct {
	lim     *rate.Limiter
	waiting []waiter        // runs put off until the target has room, urgent ones first, then oldest first
	passes  map[string]bool // runs handed back from waiting, their tokens taken
	armed   bool            // the next hand-back is due, while runs wait
}

// waiter is a run on a target's waiting list.
type waiter struct {
	run    string
	urgent bool // asked for by someone (on demand, a reconcile), not by the schedule
}

func newTargets(perSecond float64, burst int, clock Clock) *targets {
	limit := rate.Inf
	if perSecond > 0 {
		limit = rate.Limit(perSecond)
	}
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &targets{clock: clock, limit: limit, burst: burst, perRun: min(2, burst), by: map[string]*target{}}
}

// get returns key's target; the caller holds t.mu.
func (t *targets) get(key string) *target {
	tg, ok := t.by[key]
	if !ok {
		tg = &target{lim: rate.NewLimiter(t.limit, t.burst), passes: map[string]bool{}}
		t.by[key] = tg
	}
	return tg
}

// wait blocks until key's target may take one more operation, or ctx ends, and says how long
// it waited.
func (t *targets) wait(ctx context.Context, key string) (time.Duration, error) {
	if t.limit == rate.Inf {
		return 0, nil
	}
	t.mu.Lock()
	now := t.clock.Now()
	r := t.get(key).lim.ReserveN(now, 1)
	t.mu.Unlock()
	delay := r.DelayFrom(now)
	if delay == 0 {
		return 0, nil
	}
	due := make(chan struct{})
	stop := t.clock.AfterFunc(delay, func() { close(due) })
	select {
	case <-due:
		return delay, nil
	case <-ctx.Done():
		stop()
		t.mu.Lock()
		r.CancelAt(t.clock.Now()) // give the token back to the callers behind
		t.mu.Unlock()
		return 0, ctx.Err()
	}
}

// allow takes one of key's tokens if one is there now; it never waits.
func (t *targets) allow(key string) bool {
	if t.limit == rate.Inf {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.get(key).lim.AllowN(t.clock.Now(), 1)
}

// admit reports whether run may start against key now, and how many of its operations are
// paid for. When the target has not the tokens to spare (or other runs wait for it), run joins
// its waiting list and is given to release once its turn comes, its tokens taken; release must
// queue it again, and admit then lets it through. An urgent run goes ahead of every run the
// schedule put on the list: a credential rotated by hand (after a leak, say) does not wait
// behind a night's scheduled batch.
func (t *targets) admit(key, run string, urgent bool, release func(run string)) (ok bool, paid int) {
	if t.limit == rate.Inf {
		return true, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tg := t.get(key)
	if tg.passes[run] {
		delete(tg.passes, run)
		return true, t.perRun
	}
	if len(tg.waiting) == 0 && tg.lim.AllowN(t.clock.Now(), t.perRun) {
		return true, t.perRun
	}
	at := len(tg.waiting)
	if urgent {
		at = 0
		for at < len(tg.waiting) && tg.waiting[at].urgent {
			at++
		}
	}
	tg.waiting = slices.Insert(tg.waiting, at, waiter{run: run, urgent: urgent})
	if !tg.armed {
		t.schedule(key, tg, release)
	}
	return false, 0
}

// schedule arms the next hand-back of key's waiting runs for when a run's tokens are there;
// the caller holds t.mu.
func (t *targets) schedule(key string, tg *target, release func(string)) {
	short := float64(t.perRun) - tg.lim.TokensAt(t.clock.Now()) // counting the reservations of runs under way
	delay := time.Duration(max(short, 0) / float64(t.limit) * float64(time.Second))
	tg.armed = true
	t.clock.AfterFunc(delay, func() { t.handBack(key, release) })
}

// handBack gives the oldest waiting run of key back, with its tokens taken, and arms the next.
func (t *targets) handBack(key string, release func(string)) {
	t.mu.Lock()
	tg := t.by[key]
	var run string
	if len(tg.waiting) > 0 && tg.lim.AllowN(t.clock.Now(), t.perRun) {
		run = tg.waiting[0].run
		tg.waiting = slices.Delete(tg.waiting, 0, 1)
		tg.passes[run] = true
	}
	tg.armed = false
	if len(tg.waiting) > 0 {
		t.schedule(key, tg, release)
	}
	t.mu.Unlock()
	if run != "" {
		release(run)
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
