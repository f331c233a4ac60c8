package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// lockExchange reads a key id's and an address's failures in a transaction of their own.
func lockExchange(t *testing.T, db *DB, keyID, addr string) ExchangeFailures {
	t.Helper()
	var f ExchangeFailures
	mustTx(t, db, func(tx *Tx) (err error) {
		f, err = tx.LockExchangeFailures(context.Background(), keyID, addr)
		return err
	})
	return f
}

// exchangeRows counts the rows of the limiter's tables.
func exchangeRows(t *testing.T, db *DB) (pairs, keys, good int) {
	t.Helper()
	ctx := context.Background()
	for table, n := range map[string]*int{"exchange_pair_failures": &pairs, "exchange_key_failures": &keys, "exchange_good_addresses": &good} {
		if err := db.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(n); err != nil {
			t.Fatal(err)
		}
	}
	return pairs, keys, good
}

// What SaveExchangeFailures stores, LockExchangeFailures reads back, per key id and address;
// only what differs from prev is written, and a zero window or time removes its row.
func testExchangeFailuresRoundTrip(t *testing.T, db *DB) {
	ctx := context.Background()
	if f := lockExchange(t, db, "k1", "192.0.2.1"); f != (ExchangeFailures{}) {
		t.Fatalf("nothing stored yet, read %+v", f)
	}
	want := ExchangeFailures{Pair: FailureWindow{Start: t0, Failures: 3}, Key: FailureWindow{Start: t0.Add(time.Second), Failures: 7},
		GoodAt: t0.Add(-time.Hour)}
	mustTx(t, db, func(tx *Tx) error { return tx.SaveExchangeFailures(ctx, "k1", "192.0.2.1", ExchangeFailures{}, want) })
	mustTx(t, db, func(tx *Tx) error {
		return tx.SaveExchangeFailures(ctx, "k1", "", ExchangeFailures{}, ExchangeFailures{Pair: FailureWindow{Start: t0, Failures: 1}})
	})
	if got := lockExchange(t, db, "k1", "192.0.2.1"); !sameExchange(got, want) {
		t.Fatalf("read %+v, want %+v", got, want)
	}
	if got := lockExchange(t, db, "k1", ""); got.Pair.Failures != 1 || got.Key.Failures != 7 || !got.GoodAt.IsZero() {
		t.Fatalf("another address of the key id: %+v", got)
	}
	if got := lockExchange(t, db, "k2", "192.0.2.1"); got != (ExchangeFailures{}) {
		t.Fatalf("another key id: %+v", got)
	}
	// An update, and removals.
	next := want
	next.Pair.Failures, next.GoodAt = 4, time.Time{}
	mustTx(t, db, func(tx *Tx) error { return tx.SaveExchangeFailures(ctx, "k1", "192.0.2.1", want, next) })
	if got := lockExchange(t, db, "k1", "192.0.2.1"); !sameExchange(got, next) {
		t.Fatalf("after an update read %+v, want %+v", got, next)
	}
	mustTx(t, db, func(tx *Tx) error { return tx.SaveExchangeFailures(ctx, "k1", "192.0.2.1", next, ExchangeFailures{}) })
	if pairs, keys, good := exchangeRows(t, db); pairs != 1 || keys != 0 || good != 0 {
		t.Fatalf("after removing them: %d pairs, %d keys, %d good rows, want 1, 0, 0", pairs, keys, good)
	}
}

func sameExchange(a, b ExchangeFailures) bool {
	return a.Pair.Start.Equal(b.Pair.Start) && a.Pair.Failures == b.Pair.Failures && a.Key.Start.Equal(b.Key.Start) &&
		a.Key.Failures == b.Key.Failures && a.GoodAt.Equal(b.GoodAt)
}

// Writers that read a key id's counts and save them plus one, all at once and from several
// addresses: LockExchangeFailures makes them take turns, so no count is lost (on PostgreSQL,
// whose transactions run at once, as on SQLite).
func testExchangeFailuresTakeTurns(t *testing.T, db *DB) {
	ctx := context.Background()
	const each = 10
	concurrently(writers, func(w int) {
		addr := fmt.Sprintf("192.0.2.%d", w%2)
		for range each {
			if err := db.Tx(ctx, func(tx *Tx) error {
				prev, err := tx.LockExchangeFailures(ctx, "k", addr)
				if err != nil {
					return err
				}
				next := prev
				if next.Pair.Start.IsZero() {
					next.Pair.Start = t0
				}
				if next.Key.Start.IsZero() {
					next.Key.Start = t0
				}
				next.Pair.Failures++
				next.Key.Failures++
				return tx.SaveExchangeFailures(ctx, "k", addr, prev, next)
			}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	a, b := lockExchange(t, db, "k", "192.0.2.0"), lockExchange(t, db, "k", "192.0.2.1")
	if a.Key.Failures != writers*each || a.Pair.Failures+b.Pair.Failures != writers*each {
		t.Fatalf("%d writers counted %d times each: key %d, pairs %d + %d", writers, each, a.Key.Failures, a.Pair.Failures, b.Pair.Failures)
	}
}

// PruneExchangeFailures removes the ended windows and old successes, keeps the live ones, and
// cuts a table that still holds MaxRows rows or more to nine tenths of it, keeping the
// blocking windows.
func testPruneExchangeFailures(t *testing.T, db *DB) {
	ctx := context.Background()
	save := func(key, addr string, f ExchangeFailures) {
		mustTx(t, db, func(tx *Tx) error { return tx.SaveExchangeFailures(ctx, key, addr, ExchangeFailures{}, f) })
	}
	ended, live := t0.Add(-2*time.Minute), t0
	save("old", "a", ExchangeFailures{Pair: FailureWindow{ended, 1}, Key: FailureWindow{ended, 1}, GoodAt: ended})
	save("new", "a", ExchangeFailures{Pair: FailureWindow{live, 1}, Key: FailureWindow{live, 1}, GoodAt: live})
	prune := ExchangePrune{PairsBefore: t0.Add(-time.Minute), KeysBefore: t0.Add(-time.Minute), GoodBefore: t0.Add(-time.Minute),
		PairBlocking: 3, KeyBlocking: 3, MaxRows: 20}
	mustTx(t, db, func(tx *Tx) error { return tx.PruneExchangeFailures(ctx, prune) })
	if pairs, keys, good := exchangeRows(t, db); pairs != 1 || keys != 1 || good != 1 {
		t.Fatalf("after pruning: %d pairs, %d keys, %d good rows, want 1 each", pairs, keys, good)
	}
	if f := lockExchange(t, db, "new", "a"); f.Pair.Failures != 1 || f.Key.Failures != 1 || f.GoodAt.IsZero() {
		t.Fatalf("the live rows were pruned: %+v", f)
	}
	// 30 live rows, the 5 newest of them blocking: the table is cut to 17, blocking ones kept.
	for i := range 30 {
		failures := 1
		if i < 5 {
			failures = 3
		}
		at := live.Add(time.Duration(-i) * time.Second)
		save(fmt.Sprintf("k%02d", i), "a", ExchangeFailures{Pair: FailureWindow{at, failures}, Key: FailureWindow{at, failures}, GoodAt: at})
	}
	mustTx(t, db, func(tx *Tx) error { return tx.PruneExchangeFailures(ctx, prune) })
	if pairs, keys, good := exchangeRows(t, db); pairs != 17 || keys != 17 || good != 17 {
		t.Fatalf("after cutting: %d pairs, %d keys, %d good rows, want 17 each", pairs, keys, good)
	}
	for i := range 5 {
		if f := lockExchange(t, db, fmt.Sprintf("k%02d", i), "a"); f.Pair.Failures != 3 || f.Key.Failures != 3 {
			t.Fatalf("a blocking window was cut: %+v", f)
		}
	}
	// The good addresses go oldest first: the newest is kept.
	if f := lockExchange(t, db, "new", "a"); f.GoodAt.IsZero() {
		t.Fatal("the newest good address was cut")
	}
}
