package auth

import (
	"sync"
	"time"
)

// Defaults for the limit on failed token exchanges, per key id and per client address.
const (
	DefaultFailureLimit  = 10
	DefaultFailureWindow = time.Minute
)

// maxTracked bounds the limiter's memory; past it, expired windows are dropped first.
const maxTracked = 100_000

// failureLimiter refuses every attempt for a subject (a key id or a client address) once it
// has failed limit times within a window that starts at its first failure. While refused,
// even a correct secret is refused, so guessing cannot continue at full speed.
type failureLimiter struct {
	limit  int
	window time.Duration
	mu     sync.Mutex
	seen   map[string]*failureWindow
}

type failureWindow struct {
	start    time.Time
	failures int
}

func newFailureLimiter(limit int, window time.Duration) *failureLimiter {
	return &failureLimiter{limit: limit, window: window, seen: map[string]*failureWindow{}}
}

// blocked returns how long the subject must wait, or 0 when it may try.
func (l *failureLimiter) blocked(subject string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.seen[subject]
	if !ok {
		return 0
	}
	end := w.start.Add(l.window)
	if !now.Before(end) {
		delete(l.seen, subject)
		return 0
	}
	if w.failures >= l.limit {
		return end.Sub(now)
	}
	return 0
}

// fail records a failed attempt.
func (l *failureLimiter) fail(subject string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.seen[subject]
	if !ok || !now.Before(w.start.Add(l.window)) {
		if len(l.seen) >= maxTracked {
			l.prune(now)
		}
		w = &failureWindow{start: now}
		l.seen[subject] = w
	}
	w.failures++
}

func (l *failureLimiter) prune(now time.Time) {
	for k, w := range l.seen {
		if !now.Before(w.start.Add(l.window)) {
			delete(l.seen, k)
		}
	}
	if len(l.seen) >= maxTracked { // all windows live: drop the ones with fewest failures
		for k, w := range l.seen {
			if w.failures < l.limit {
				delete(l.seen, k)
			}
		}
	}
}
