package rotation

import (
	"context"
	"math"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/keyturn/keyturn/internal/store"
)

// targets holds one rate limiter per connector target, so that many runs falling due at once
// (or heartbeats) cannot flood one Okta org, OPA team or REST endpoint. Every connector
// operation (a change, a check, an issue, a retirement) takes one token of its target's.
//
// A run that has not started yet is admitted only once its target has the tokens of a typical
// run (a change and a check) to spare, which it takes at once; until then it waits on the
// target's list, holding no worker, and is handed back in turn with its tokens taken. So a
// burst against one target does not hold up the runs of the others.
//
// On one node (SQLite) the tokens are in memory. Nodes sharing a PostgreSQL database take them
// from one bucket per target in the database (see sharedOn), so the rate holds per cluster; the
// waiting lists stay each node's own.
type targets struct {
	clock  Clock
	limit  rate.Limit // rate.Inf: unlimited
	burst  int
	perRun int          // tokens a run takes when it is admitted: min(2, burst)
	shared tokenBuckets // the cluster's buckets; nil: this node's limiters only

	mu sync.Mutex
	by map[string]*target // targets are few (resource records); none is dropped
}

// tokenBuckets keeps token buckets that every node of a cluster takes from: *store.DB on
// PostgreSQL. Each call is one statement.
type tokenBuckets interface {
	ReserveTargetTokens(ctx context.Context, b store.TargetBucket, now time.Time, n int) (left float64, err error)
	AllowTargetTokens(ctx context.Context, b store.TargetBucket, now time.Time, n int) (bool, error)
	ReturnTargetTokens(ctx context.Context, b store.TargetBucket, n int) error
	TargetTokens(ctx context.Context, b store.TargetBucket, now time.Time) (float64, error)
}

// bucketTimeout bounds a shared bucket's statement where no caller's context does.
const bucketTimeout = 5 * time.Second

type target struct {
	key string
	// lim is this node's limiter: the target's tokens on one node; on a cluster, the fallback
	// while the database does not answer (the node cannot commit a run's step then either).
	lim *rate.Limiter

	mu      sync.Mutex      // guards what follows
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

// sharedOn makes the limits hold for every node on db when db is PostgreSQL (on SQLite, one
// node runs and they stay in memory), and returns t.
func (t *targets) sharedOn(db *store.DB) *targets {
	if db != nil && db.Dialect() == "postgres" {
		t.shared = db
	}
	return t
}

// get returns key's target.
func (t *targets) get(key string) *target {
	t.mu.Lock()
	defer t.mu.Unlock()
	tg, ok := t.by[key]
	if !ok {
		tg = &target{key: key, lim: rate.NewLimiter(t.limit, t.burst), passes: map[string]bool{}}
		t.by[key] = tg
	}
	return tg
}

// bucket is tg's bucket in the database.
func (t *targets) bucket(tg *target) store.TargetBucket {
	return store.TargetBucket{Key: tg.key, PerSecond: float64(t.limit), Burst: t.burst}
}

// reserve takes one of tg's tokens at now, owing it when there is none, and returns how long
// until it is there and how to give it back.
func (t *targets) reserve(ctx context.Context, tg *target, now time.Time) (time.Duration, func(now time.Time)) {
	if t.shared != nil {
		left, err := t.shared.ReserveTargetTokens(ctx, t.bucket(tg), now, 1)
		if err == nil {
			var delay time.Duration
			if left < 0 {
				delay = time.Duration(math.Ceil(-left / float64(t.limit) * float64(time.Second)))
			}
			return delay, func(time.Time) {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bucketTimeout)
				defer cancel()
				_ = t.shared.ReturnTargetTokens(ctx, t.bucket(tg), 1) // kept, it only slows the next ones
			}
		}
	}
	r := tg.lim.ReserveN(now, 1)
	return r.DelayFrom(now), r.CancelAt
}

// allowN takes n of tg's tokens if they are there now.
func (t *targets) allowN(tg *target, n int) bool {
	now := t.clock.Now()
	if t.shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), bucketTimeout)
		defer cancel()
		if ok, err := t.shared.AllowTargetTokens(ctx, t.bucket(tg), now, n); err == nil {
			return ok
		}
	}
	return tg.lim.AllowN(now, n)
}

// tokens returns tg's tokens now, less those owed.
func (t *targets) tokens(tg *target) float64 {
	now := t.clock.Now()
	if t.shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), bucketTimeout)
		defer cancel()
		if n, err := t.shared.TargetTokens(ctx, t.bucket(tg), now); err == nil {
			return n
		}
	}
	return tg.lim.TokensAt(now)
}

// wait blocks until key's target may take one more operation, or ctx ends, and says how long
// it waited.
func (t *targets) wait(ctx context.Context, key string) (time.Duration, error) {
	if t.limit == rate.Inf {
		return 0, nil
	}
	tg := t.get(key)
	now := t.clock.Now()
	delay, giveBack := t.reserve(ctx, tg, now)
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
		giveBack(t.clock.Now()) // give the token back to the callers behind
		return 0, ctx.Err()
	}
}

// allow takes one of key's tokens if one is there now; it never waits.
func (t *targets) allow(key string) bool {
	if t.limit == rate.Inf {
		return true
	}
	return t.allowN(t.get(key), 1)
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
	tg := t.get(key)
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if tg.passes[run] {
		delete(tg.passes, run)
		return true, t.perRun
	}
	if len(tg.waiting) == 0 && t.allowN(tg, t.perRun) {
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
		t.schedule(tg, release)
	}
	return false, 0
}

// schedule arms the next hand-back of tg's waiting runs for when a run's tokens are there;
// the caller holds tg.mu. (On a cluster, another node may take them first: the hand-back then
// arms the next.)
func (t *targets) schedule(tg *target, release func(string)) {
	short := float64(t.perRun) - t.tokens(tg) // counting the reservations of runs under way
	delay := time.Duration(max(short, 0) / float64(t.limit) * float64(time.Second))
	tg.armed = true
	t.clock.AfterFunc(delay, func() { t.handBack(tg, release) })
}

// handBack gives the oldest waiting run of tg back, with its tokens taken, and arms the next.
func (t *targets) handBack(tg *target, release func(string)) {
	tg.mu.Lock()
	var run string
	if len(tg.waiting) > 0 && t.allowN(tg, t.perRun) {
		run = tg.waiting[0].run
		tg.waiting = slices.Delete(tg.waiting, 0, 1)
		tg.passes[run] = true
	}
	tg.armed = false
	if len(tg.waiting) > 0 {
		t.schedule(tg, release)
	}
	tg.mu.Unlock()
	if run != "" {
		release(run)
	}
}

// defaultPorts are the ports of database and directory URLs that leave theirs out, so that a server is one
// target whether its records name the port or not.
var defaultPorts = map[string]string{"mysql": "3306", "ldap": "389", "ldaps": "636"}

// targetKey names the system a connector reaches: the connector and the host of the target's
// URL (one Okta org, whichever record points at it), else its pamHostname (host:port, one
// database server), or the resource record when it has neither.
func targetKey(connectorName, targetURL, hostPort, resourceUID string) string {
	if u, err := url.Parse(targetURL); err == nil && u.Host != "" {
		host := u.Host
		if p, ok := defaultPorts[strings.ToLower(u.Scheme)]; ok && u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), p) // one server, whether or not the record names its port
		}
		return connectorName + " " + strings.ToLower(u.Scheme+"://"+host)
	}
	if hostPort != "" {
		return connectorName + " " + strings.ToLower(hostPort)
	}
	return connectorName + " record:" + resourceUID
}
