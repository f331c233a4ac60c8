package auth

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/store"
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

// live reports whether w is a window that has not ended.
func (w failureWindow) live(window time.Duration, now time.Time) bool {
	return !w.start.IsZero() && now.Before(w.start.Add(window))
}

// exchangeState is what the limiter knows of one key id and one address.
type exchangeState struct {
	pair failureWindow // the address's failures for the key id; zero: none
	key  failureWindow // the key id's failures from every address; zero: none
	good time.Time     // when the address last got a token for the key id; zero: never
}

// admit decides an attempt: it returns how long the address must wait before it tries the key
// id again, or 0 and the state with the attempt counted as a failure until succeed or forgive
// undoes it.
func (l limits) admit(s exchangeState, now time.Time) (time.Duration, exchangeState) {
	pairLive := s.pair.live(l.pairWindow, now)
	if pairLive && s.pair.failures >= l.pairLimit {
		return s.pair.start.Add(l.pairWindow).Sub(now), s
	}
	keyLive := s.key.live(l.keyWindow, now)
	knownGood := !s.good.IsZero() && now.Sub(s.good) < goodFor
	if pairLive && s.pair.failures > 0 && keyLive && s.key.failures >= l.keyLimit && !knownGood {
		return s.pair.start.Add(l.pairWindow).Sub(now), s
	}
	if !pairLive {
		s.pair = failureWindow{start: now}
	}
	s.pair.failures++
	if !keyLive {
		s.key = failureWindow{start: now}
	}
	s.key.failures++
	return 0, s
}

// succeed undoes an attempt that got a token: the address's failures for the key id are
// forgotten, and the address is known-good for it from now on.
func succeed(s exchangeState, now time.Time) exchangeState {
	if s.key.failures > 0 {
		s.key.failures--
	}
	s.pair, s.good = failureWindow{}, now
	return s
}

// forgiven undoes an attempt that failed for another reason than its credentials.
func forgiven(s exchangeState) exchangeState {
	if s.key.failures > 0 {
		s.key.failures--
	}
	if s.pair.failures > 0 {
		s.pair.failures--
	}
	return s
}

// state returns what the limiter holds of pk.
func (l *failureLimiter) state(pk pairKey) exchangeState {
	return exchangeState{pair: l.pairs[pk], key: l.keys[pk.key], good: l.good[pk]}
}

// attempt returns how long the address must wait before it tries the key id again, or 0 when
// it may try now; then the attempt counts as a failure until succeeded or forgive undoes it.
func (l *failureLimiter) attempt(key uuid.UUID, client string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	pk := newPairKey(key, client)
	prev := l.state(pk)
	wait, next := l.admit(prev, now)
	if wait > 0 {
		return wait
	}
	if !prev.pair.live(l.pairWindow, now) {
		makeRoom(l.pairs, l.entries, func(w failureWindow) bool { return !now.Before(w.start.Add(l.pairWindow)) },
			func(w failureWindow) bool { return w.failures >= l.pairLimit })
	}
	l.pairs[pk] = next.pair
	if !prev.key.live(l.keyWindow, now) {
		makeRoom(l.keys, l.entries, func(w failureWindow) bool { return !now.Before(w.start.Add(l.keyWindow)) },
			func(w failureWindow) bool { return w.failures >= l.keyLimit })
	}
	l.keys[key] = next.key
	return 0
}

// succeeded undoes an attempt that got a token (see succeed).
func (l *failureLimiter) succeeded(key uuid.UUID, client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pk := newPairKey(key, client)
	prev := l.state(pk)
	next := succeed(prev, now)
	if !prev.key.start.IsZero() {
		l.keys[key] = next.key
	}
	delete(l.pairs, pk)
	if prev.good.IsZero() {
		makeRoom(l.good, l.entries, func(at time.Time) bool { return now.Sub(at) >= goodFor }, func(time.Time) bool { return false })
	}
	l.good[pk] = now
}

// forgive undoes an attempt that failed for another reason than its credentials.
func (l *failureLimiter) forgive(key uuid.UUID, client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pk := newPairKey(key, client)
	prev := l.state(pk)
	next := forgiven(prev)
	if !prev.key.start.IsZero() {
		l.keys[key] = next.key
	}
	if !prev.pair.start.IsZero() {
		l.pairs[pk] = next.pair
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

// failureCounter counts failed token exchanges for IssueToken: in this process's memory
// (memoryCounter, for the one server of a SQLite vault) or in the database (sharedLimiter,
// for every node on a PostgreSQL one).
type failureCounter interface {
	// Attempt returns how long the address must wait, or 0 when it may try now; the attempt
	// then counts as a failure until Succeeded or Forgive undoes it.
	Attempt(ctx context.Context, key uuid.UUID, client string, now time.Time) (time.Duration, error)
	// Succeeded undoes an attempt that got a token.
	Succeeded(ctx context.Context, key uuid.UUID, client string, now time.Time) error
	// Forgive undoes an attempt that failed for another reason than its credentials.
	Forgive(ctx context.Context, key uuid.UUID, client string, now time.Time) error
}

// memoryCounter is a failureCounter over a failureLimiter.
type memoryCounter struct{ l *failureLimiter }

func (m memoryCounter) Attempt(_ context.Context, key uuid.UUID, client string, now time.Time) (time.Duration, error) {
	return m.l.attempt(key, client, now), nil
}

func (m memoryCounter) Succeeded(_ context.Context, key uuid.UUID, client string, now time.Time) error {
	m.l.succeeded(key, client, now)
	return nil
}

func (m memoryCounter) Forgive(_ context.Context, key uuid.UUID, client string, _ time.Time) error {
	m.l.forgive(key, client)
	return nil
}

// sharedLimiter is a failureCounter that keeps the windows in the database, so that every
// node on it counts the same failures: an attacker who spreads guesses over several nodes gets
// no more tries than against one. Each call is one transaction that holds the key id's lock
// (store.Tx.LockExchangeFailures), so concurrent attempts on any node cannot overtake the count.
// Every pruneInterval attempts, a node removes the ended windows and cuts each table to its
// bound.
type sharedLimiter struct {
	limits
	db       *store.DB
	attempts atomic.Int64
}

// pruneEvery is how many attempts a node lets through between two prunes of the shared
// tables, at most: a tenth of the tables' bound when that is fewer.
const pruneEvery = 1000

// pruneInterval is how many attempts a node lets through between two prunes.
func (l *sharedLimiter) pruneInterval() int64 { return int64(max(1, min(pruneEvery, l.entries/10))) }

// addrKey is how an address is stored: its text, or "" for one that does not parse.
func (pk pairKey) addrKey() string {
	if !pk.addr.IsValid() {
		return ""
	}
	return pk.addr.String()
}

// change applies f to the state of a key id and an address in one transaction.
func (l *sharedLimiter) change(ctx context.Context, key uuid.UUID, client string,
	f func(exchangeState) (time.Duration, exchangeState)) (time.Duration, error) {
	pk := newPairKey(key, client)
	id, addr := key.String(), pk.addrKey()
	var wait time.Duration
	err := l.db.Tx(ctx, func(tx *store.Tx) error {
		prev, err := tx.LockExchangeFailures(ctx, id, addr)
		if err != nil {
			return err
		}
		var next exchangeState
		wait, next = f(exchangeState{pair: failureWindow{prev.Pair.Start, prev.Pair.Failures},
			key: failureWindow{prev.Key.Start, prev.Key.Failures}, good: prev.GoodAt})
		return tx.SaveExchangeFailures(ctx, id, addr, prev, store.ExchangeFailures{
			Pair:   store.FailureWindow{Start: next.pair.start, Failures: next.pair.failures},
			Key:    store.FailureWindow{Start: next.key.start, Failures: next.key.failures},
			GoodAt: next.good})
	})
	if err != nil {
		return 0, fmt.Errorf("count failed token exchanges: %w", err)
	}
	return wait, nil
}

func (l *sharedLimiter) Attempt(ctx context.Context, key uuid.UUID, client string, now time.Time) (time.Duration, error) {
	if l.attempts.Add(1)%l.pruneInterval() == 0 {
		if err := l.prune(ctx, now); err != nil {
			return 0, err
		}
	}
	return l.change(ctx, key, client, func(s exchangeState) (time.Duration, exchangeState) {
		wait, next := l.admit(s, now)
		if wait > 0 {
			return wait, s
		}
		return 0, next
	})
}

func (l *sharedLimiter) Succeeded(ctx context.Context, key uuid.UUID, client string, now time.Time) error {
	_, err := l.change(ctx, key, client, func(s exchangeState) (time.Duration, exchangeState) {
		return 0, succeed(s, now)
	})
	return err
}

func (l *sharedLimiter) Forgive(ctx context.Context, key uuid.UUID, client string, _ time.Time) error {
	_, err := l.change(ctx, key, client, func(s exchangeState) (time.Duration, exchangeState) {
		return 0, forgiven(s)
	})
	return err
}

// prune removes the ended windows and cuts each table to the limiter's bound.
func (l *sharedLimiter) prune(ctx context.Context, now time.Time) error {
	p := store.ExchangePrune{PairsBefore: now.Add(-l.pairWindow), KeysBefore: now.Add(-l.keyWindow),
		GoodBefore: now.Add(-goodFor), PairBlocking: l.pairLimit, KeyBlocking: l.keyLimit, MaxRows: l.entries}
	if err := l.db.Tx(ctx, func(tx *store.Tx) error { return tx.PruneExchangeFailures(ctx, p) }); err != nil {
		return fmt.Errorf("prune failed token exchanges: %w", err)
	}
	return nil
}
