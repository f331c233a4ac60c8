package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// TargetBucket names a connector target's token bucket, shared by every node on one
// PostgreSQL database, and its rate: PerSecond tokens a second, at most Burst at once.
//
// Each call is one statement that brings the bucket's tokens up to date (PerSecond for each
// second since the last call, up to Burst) and takes from it, so nodes never take more between
// them than one bucket allows. Time is the caller's: the bucket's time never goes back, so a
// node whose clock is ahead of the others' adds at most PerSecond × the difference, once.
type TargetBucket struct {
	Key       string
	PerSecond float64
	Burst     int
}

// errBucketsNotShared is returned by the bucket methods on SQLite, whose one node keeps its
// limits in memory.
var errBucketsNotShared = errors.New("store: target rate buckets are kept on PostgreSQL only")

// refill is the bucket's tokens brought up to now ($2 burst, $4 now, $5 tokens a nanosecond).
const refill = `LEAST($2::float8, b.tokens + GREATEST($4::bigint - b.at, 0) * $5::float8)`

// ReserveTargetTokens takes n tokens of b at now, going below zero when there are fewer (the
// operation then waits its turn), and returns the tokens left: -x means x tokens are owed,
// which come after x / PerSecond seconds.
func (db *DB) ReserveTargetTokens(ctx context.Context, b TargetBucket, now time.Time, n int) (float64, error) {
	if !db.d.postgres {
		return 0, errBucketsNotShared
	}
	var left float64
	err := db.write.QueryRowContext(ctx, `INSERT INTO target_rate_buckets AS b (key, tokens, at) VALUES ($1, $2::float8 - $3::float8, $4::bigint)
		ON CONFLICT (key) DO UPDATE SET tokens = `+refill+` - $3::float8, at = GREATEST(b.at, $4::bigint)
		RETURNING tokens`, b.Key, float64(b.Burst), float64(n), nanos(now), b.PerSecond/1e9).Scan(&left)
	if err != nil {
		return 0, fmt.Errorf("reserve tokens of a target's rate limit: %w", err)
	}
	return left, nil
}

// AllowTargetTokens takes n tokens of b at now if they are there, and reports whether it did.
func (db *DB) AllowTargetTokens(ctx context.Context, b TargetBucket, now time.Time, n int) (bool, error) {
	if !db.d.postgres {
		return false, errBucketsNotShared
	}
	var left float64
	err := db.write.QueryRowContext(ctx, `INSERT INTO target_rate_buckets AS b (key, tokens, at) VALUES ($1, $2::float8 - $3::float8, $4::bigint)
		ON CONFLICT (key) DO UPDATE SET tokens = `+refill+` - $3::float8, at = GREATEST(b.at, $4::bigint)
		WHERE `+refill+` >= $3::float8
		RETURNING tokens`, b.Key, float64(b.Burst), float64(n), nanos(now), b.PerSecond/1e9).Scan(&left)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("take tokens of a target's rate limit: %w", err)
	}
	return true, nil
}

// ReturnTargetTokens gives n tokens back to b (an operation that reserved them and did not
// run), up to its burst.
func (db *DB) ReturnTargetTokens(ctx context.Context, b TargetBucket, n int) error {
	if !db.d.postgres {
		return errBucketsNotShared
	}
	if _, err := db.write.ExecContext(ctx, `UPDATE target_rate_buckets SET tokens = LEAST($2::float8, tokens + $3::float8) WHERE key = $1`,
		b.Key, float64(b.Burst), float64(n)); err != nil {
		return fmt.Errorf("give back tokens of a target's rate limit: %w", err)
	}
	return nil
}

// TargetTokens returns the tokens b holds at now, below zero when some are owed (Burst for a
// bucket nobody took from yet).
func (db *DB) TargetTokens(ctx context.Context, b TargetBucket, now time.Time) (float64, error) {
	if !db.d.postgres {
		return 0, errBucketsNotShared
	}
	var tokens float64
	var at int64
	err := db.read.QueryRowContext(ctx, `SELECT tokens, at FROM target_rate_buckets WHERE key = $1`, b.Key).Scan(&tokens, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return float64(b.Burst), nil
	}
	if err != nil {
		return 0, fmt.Errorf("read a target's rate limit: %w", err)
	}
	return math.Min(float64(b.Burst), tokens+float64(max(nanos(now)-at, 0))*b.PerSecond/1e9), nil
}
