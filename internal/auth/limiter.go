package auth

import (
	"net/netip"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Defaults for the limits on failed token exchanges.
const (
	// DefaultFailureLimit failures of one key id from one address within DefaultFailureWindow
	// block that key id from that address, even with the correct secret, until the window ends.
	DefaultFailureLimit  = 10
	DefaultFailureWindow = time.Minute
	// DefaultKeyFailureLimit failures of one key id from every address together within
	// DefaultKeyFailureWindow put the key id under attack: then an address that has failed
	// for it in its current window, and has not succeeded with it before, may not try again
	// until its window ends. An address that has not failed, or that has succeeded with the
	// key id, is never held up by it.
	DefaultKeyFailureLimit  = 100
	DefaultKeyFailureWindow = 15 * time.Minute
	// DefaultLimiterEntries bounds each of the limiter's tables (failures per key id and
	// address, per key id, and known-good addresses per key id).
	DefaultLimiterEntries = 100_000
)

// goodFor is how long an address that got a token for a key id stays known-good for it.
const goodFor = 7 * 24 * time.Hour

// limits configure a failureLimiter.
type limits struct {
	pairLimit  int           // failures per key id and address
	pairWindow time.Duration // the window those are counted in
	keyLimit   int           // failures per key id from every address
	keyWindow  time.Duration // the window those are counted in
	entries    int           // the most entries each table holds
}

// failureLimiter limits token exchanges that fail. Every attempt counts as a failure from the
// moment it is let through until it succeeds, so concurrent guesses cannot overtake the count.
// Only key ids that parse as UUIDs and parsed addresses are kept, and each table holds at most
// entries of them, so its memory is bounded whatever callers send.
type failureLimiter struct {
	limits
	mu    sync.Mutex
	pairs map[pairKey]failureWindow
	keys  map[uuid.UUID]failureWindow
	good  map[pairKey]time.Time // when the address last got a token for the key id
}

type pairKey struct {
	key  uuid.UUID
	addr netip.Addr // an IPv4 address, an IPv6 /64, or the zero Addr for any that does not parse
}

type failureWindow struct {
	start    time.Time
	failures int
}

func newFailureLimiter(l limits) *failureLimiter {
	return &failureLimiter{limits: l, pairs: map[pairKey]failureWindow{}, keys: map[uuid.UUID]failureWindow{},
		good: map[pairKey]time.Time{}}
}

// newPairKey counts an IPv6 client by its /64, which one host or site commonly holds whole,
// so that its addresses are not so many fresh starts.
func newPairKey(key uuid.UUID, client string) pairKey {
	addr, err := netip.ParseAddr(client)
	if err != nil {
		return pairKey{key: key}
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		addr = netip.PrefixFrom(addr, 64).Masked().Addr()
	}
	return pairKey{key: key, addr: addr}
}

// live returns the window of subject in m if it has not ended.
func live[K comparable](m map[K]failureWindow, subject K, window time.Duration, now time.Time) (failureWindow, bool) {
	w, ok := m[subject]
	if !ok || !now.Before(w.start.Add(window)) {
		return failureWindow{}, false
	}
	return w, true
}

// attempt returns how long the address must wait before it tries the key id again, or 0 when
// it may try now; then the attempt counts as a failure until succeeded or forgive undoes it.
func (l *failureLimiter) attempt(key uuid.UUID, client string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	pk := newPairKey(key, client)
	pair, pairLive := live(l.pairs, pk, l.pairWindow, now)
	if pairLive && pair.failures >= l.pairLimit {
		return pair.start.Add(l.pairWindow).Sub(now)
	}
	kw, keyLive := live(l.keys, key, l.keyWindow, now)
	if pairLive && pair.failures > 0 && keyLive && kw.failures >= l.keyLimit && !l.knownGood(pk, now) {
		return pair.start.Add(l.pairWindow).Sub(now)
	}
	if !pairLive {
		pair = failureWindow{start: now}
		makeRoom(l.pairs, l.entries, func(w failureWindow) bool { return !now.Before(w.start.Add(l.pairWindow)) },
			func(w failureWindow) bool { return w.failures >= l.pairLimit })
	}
	pair.failures++
	l.pairs[pk] = pair
	if !keyLive {
		kw = failureWindow{start: now}
		makeRoom(l.keys, l.entries, func(w failureWindow) bool { return !now.Before(w.start.Add(l.keyWindow)) },
			func(w failureWindow) bool { return w.failures >= l.keyLimit })
	}
	kw.failures++
	l.keys[key] = kw
	return 0
}

func (l *failureLimiter) knownGood(pk pairKey, now time.Time) bool {
	at, ok := l.good[pk]
	return ok && now.Sub(at) < goodFor
}

// succeeded undoes an attempt that got a token: the address's failures for the key id are
// forgotten, and the address is known-good for it from now on.
func (l *failureLimiter) succeeded(key uuid.UUID, client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pk := newPairKey(key, client)
	l.undo(pk)
	delete(l.pairs, pk)
	if _, ok := l.good[pk]; !ok {
		makeRoom(l.good, l.entries, func(at time.Time) bool { return now.Sub(at) >= goodFor }, func(time.Time) bool { return false })
	}
	l.good[pk] = now
}

// forgive undoes an attempt that failed for another reason than its credentials.
func (l *failureLimiter) forgive(key uuid.UUID, client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pk := newPairKey(key, client)
	l.undo(pk)
	if w, ok := l.pairs[pk]; ok && w.failures > 0 {
		w.failures--
		l.pairs[pk] = w
	}
}

// undo takes an attempt off the key id's count.
func (l *failureLimiter) undo(pk pairKey) {
	if w, ok := l.keys[pk.key]; ok && w.failures > 0 {
		w.failures--
		l.keys[pk.key] = w
	}
}

// makeRoom makes room in m for one more entry when it holds limit or more. It drops the ended
// entries first, then, while more than nine tenths of limit remain, those that block nobody,
// then any: a full table costs one pass per limit/10 new entries.
func makeRoom[K comparable, V any](m map[K]V, limit int, ended, blocking func(V) bool) {
	if len(m) < limit {
		return
	}
	for k, v := range m {
		if ended(v) {
			delete(m, k)
		}
	}
	keep := limit - limit/10 - 1
	for _, spare := range []bool{false, true} {
		for k, v := range m {
			if len(m) <= keep {
				return
			}
			if spare || !blocking(v) {
				delete(m, k)
			}
		}
	}
}

// size returns how many entries each table holds.
func (l *failureLimiter) size() (pairs, keys, good int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pairs), len(l.keys), len(l.good)
}
