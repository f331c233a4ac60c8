package store

import (
	"context"
	"fmt"
	"time"
)

// FailureWindow counts the failed token exchanges of a window that started at Start. The zero
// FailureWindow is no window (no row).
type FailureWindow struct {
	Start    time.Time
	Failures int
}

// ExchangeFailures is what the failed-exchange limiter knows of one key id and one address.
type ExchangeFailures struct {
	Pair   FailureWindow // the address's failures for the key id
	Key    FailureWindow // the key id's failures from every address
	GoodAt time.Time     // when the address last got a token for the key id; zero: never
}

// exchangeLockClass is the first key of the PostgreSQL advisory locks that LockExchangeFailures
// takes; the second is a hash of the key id. Two-key advisory locks never collide with the
// one-key engine lock.
const exchangeLockClass = 0x6b74_6578 // "ktex"

// LockExchangeFailures returns what is known of a key id and an address, and makes the
// transaction the only one that changes the key id's counts until it ends: on PostgreSQL
// through a transaction-scoped advisory lock on the key id (taken before the rows are read, so
// a transaction that waited for it reads what the one before it committed); on SQLite the
// single writer already does that.
func (t *Tx) LockExchangeFailures(ctx context.Context, keyID, addr string) (ExchangeFailures, error) {
	var f ExchangeFailures
	if t.d.postgres {
		if _, err := t.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`,
			int32(exchangeLockClass), keyID); err != nil {
			return f, fmt.Errorf("lock the exchange failures of a key id: %w", err)
		}
	}
	rows, err := t.tx.QueryContext(ctx,
		`SELECT 0, window_start, failures FROM exchange_pair_failures WHERE key_id = $1 AND addr = $2
		 UNION ALL SELECT 1, window_start, failures FROM exchange_key_failures WHERE key_id = $1
		 UNION ALL SELECT 2, succeeded_at, 0 FROM exchange_good_addresses WHERE key_id = $1 AND addr = $2`,
		keyID, addr)
	if err != nil {
		return f, fmt.Errorf("read the exchange failures of a key id: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			which    int
			at       int64
			failures int
		)
		if err := rows.Scan(&which, &at, &failures); err != nil {
			return f, fmt.Errorf("read the exchange failures of a key id: %w", err)
		}
		switch which {
		case 0:
			f.Pair = FailureWindow{Start: fromNanos(at), Failures: failures}
		case 1:
			f.Key = FailureWindow{Start: fromNanos(at), Failures: failures}
		case 2:
			f.GoodAt = fromNanos(at)
		}
	}
	if err := rows.Err(); err != nil {
		return f, fmt.Errorf("read the exchange failures of a key id: %w", err)
	}
	return f, nil
}

// SaveExchangeFailures stores next for a key id and an address, writing only what differs from
// prev (what LockExchangeFailures returned): a zero window or time removes its row.
func (t *Tx) SaveExchangeFailures(ctx context.Context, keyID, addr string, prev, next ExchangeFailures) error {
	if next.Pair != prev.Pair {
		var err error
		if next.Pair.Start.IsZero() {
			_, err = t.tx.ExecContext(ctx, `DELETE FROM exchange_pair_failures WHERE key_id = $1 AND addr = $2`, keyID, addr)
		} else {
			_, err = t.tx.ExecContext(ctx,
				`INSERT INTO exchange_pair_failures (key_id, addr, window_start, failures) VALUES ($1, $2, $3, $4)
				 ON CONFLICT (key_id, addr) DO UPDATE SET window_start = excluded.window_start, failures = excluded.failures`,
				keyID, addr, nanos(next.Pair.Start), next.Pair.Failures)
		}
		if err != nil {
			return fmt.Errorf("save the exchange failures of a key id and address: %w", err)
		}
	}
	if next.Key != prev.Key {
		var err error
		if next.Key.Start.IsZero() {
			_, err = t.tx.ExecContext(ctx, `DELETE FROM exchange_key_failures WHERE key_id = $1`, keyID)
		} else {
			_, err = t.tx.ExecContext(ctx,
				`INSERT INTO exchange_key_failures (key_id, window_start, failures) VALUES ($1, $2, $3)
				 ON CONFLICT (key_id) DO UPDATE SET window_start = excluded.window_start, failures = excluded.failures`,
				keyID, nanos(next.Key.Start), next.Key.Failures)
		}
		if err != nil {
			return fmt.Errorf("save the exchange failures of a key id: %w", err)
		}
	}
	if !next.GoodAt.Equal(prev.GoodAt) {
		var err error
		if next.GoodAt.IsZero() {
			_, err = t.tx.ExecContext(ctx, `DELETE FROM exchange_good_addresses WHERE key_id = $1 AND addr = $2`, keyID, addr)
		} else {
			_, err = t.tx.ExecContext(ctx,
				`INSERT INTO exchange_good_addresses (key_id, addr, succeeded_at) VALUES ($1, $2, $3)
				 ON CONFLICT (key_id, addr) DO UPDATE SET succeeded_at = excluded.succeeded_at`,
				keyID, addr, nanos(next.GoodAt))
		}
		if err != nil {
			return fmt.Errorf("save a good address of a key id: %w", err)
		}
	}
	return nil
}

// ExchangePrune says which of the failed-exchange limiter's rows PruneExchangeFailures removes.
type ExchangePrune struct {
	// Rows whose window started, or whose success was, before these have ended.
	PairsBefore, KeysBefore, GoodBefore time.Time
	// The failures at which a window blocks: such windows are the last to go when a table
	// must shrink.
	PairBlocking, KeyBlocking int
	// MaxRows bounds each table: one that holds MaxRows rows or more after its ended rows are
	// gone is cut to nine tenths of it, non-blocking and oldest rows first.
	MaxRows int
}

// PruneExchangeFailures removes the limiter's ended rows, and cuts each table that still holds
// p.MaxRows rows or more, as the limiter's in-memory tables are cut.
func (t *Tx) PruneExchangeFailures(ctx context.Context, p ExchangePrune) error {
	keep := p.MaxRows - p.MaxRows/10 - 1
	tables := []struct {
		name, ended string
		before      time.Time
		cut         func(n int) (string, []any) // deletes n rows, those to go first
	}{
		{"exchange_pair_failures", "window_start", p.PairsBefore, func(n int) (string, []any) {
			return `(key_id, addr) IN (SELECT key_id, addr FROM exchange_pair_failures
			   ORDER BY CASE WHEN failures >= $1 THEN 1 ELSE 0 END, window_start LIMIT $2)`, []any{p.PairBlocking, n}
		}},
		{"exchange_key_failures", "window_start", p.KeysBefore, func(n int) (string, []any) {
			return `key_id IN (SELECT key_id FROM exchange_key_failures
			   ORDER BY CASE WHEN failures >= $1 THEN 1 ELSE 0 END, window_start LIMIT $2)`, []any{p.KeyBlocking, n}
		}},
		{"exchange_good_addresses", "succeeded_at", p.GoodBefore, func(n int) (string, []any) {
			return `(key_id, addr) IN (SELECT key_id, addr FROM exchange_good_addresses
			   ORDER BY succeeded_at LIMIT $1)`, []any{n}
		}},
	}
	for _, tb := range tables {
		if _, err := t.tx.ExecContext(ctx, `DELETE FROM `+tb.name+` WHERE `+tb.ended+` < $1`, nanos(tb.before)); err != nil {
			return fmt.Errorf("prune %s: %w", tb.name, err)
		}
		var n int
		if err := t.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+tb.name).Scan(&n); err != nil {
			return fmt.Errorf("prune %s: %w", tb.name, err)
		}
		if n < p.MaxRows {
			continue
		}
		where, args := tb.cut(n - keep)
		if _, err := t.tx.ExecContext(ctx, `DELETE FROM `+tb.name+` WHERE `+where, args...); err != nil {
			return fmt.Errorf("prune %s: %w", tb.name, err)
		}
	}
	return nil
}
