package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// maxBatch bounds how many transactions share one commit.
const maxBatch = 128

// ErrClosed is returned by Tx after Close.
var ErrClosed = errors.New("store: database closed")

// Tx runs fn as one atomic, durable change: when fn returns nil its writes are committed (and
// on disk) before Tx returns; when it returns an error, none of its writes remain.
//
// Concurrent calls are group-committed: a single writer runs them one after another inside one
// SQLite transaction, each under its own savepoint, and commits once, so many changes share
// one fsync. Each fn sees the writes of those before it, exactly as if they ran serially.
// fn must not call Tx itself.
//
// On PostgreSQL each call is its own transaction (see postgresTx).
func (db *DB) Tx(ctx context.Context, fn func(*Tx) error) error {
	if db.commits == nil {
		return db.postgresTx(ctx, fn)
	}
	return db.commits.do(ctx, fn)
}

type txRequest struct {
	ctx  context.Context
	fn   func(*Tx) error
	done chan error
}

// committer owns the write connection and runs every write transaction.
type committer struct {
	write   *sql.DB
	stmts   *stmtCache
	queue   chan *txRequest
	quit    chan struct{} // closed by stop
	stopped chan struct{} // closed once loop has returned
	wg      sync.WaitGroup
	once    sync.Once

	batches, txs, busy atomic.Int64 // for WriterStats
}

// WriterStats describes the single writer's work since the database was opened.
type WriterStats struct {
	Batches      int64         // commits, each one fsync
	Transactions int64         // Tx calls run, committed or not
	Busy         time.Duration // time spent running batches, commits included
}

// WriterStats reports the writer's work: Busy near the elapsed time means it is saturated.
// On PostgreSQL, which has no single writer, Batches counts commits, and Busy adds up the
// time of transactions that run at once, so it may grow faster than the clock.
func (db *DB) WriterStats() WriterStats {
	c := db.commits
	if c == nil {
		p := db.pgStats
		return WriterStats{Batches: p.commits.Load(), Transactions: p.txs.Load(), Busy: time.Duration(p.busy.Load())}
	}
	return WriterStats{Batches: c.batches.Load(), Transactions: c.txs.Load(), Busy: time.Duration(c.busy.Load())}
}

func startCommitter(write *sql.DB, stmts *stmtCache) *committer {
	c := &committer{write: write, stmts: stmts, queue: make(chan *txRequest, maxBatch),
		quit: make(chan struct{}), stopped: make(chan struct{})}
	c.wg.Go(func() {
		defer close(c.stopped)
		c.loop()
	})
	return c
}

func (c *committer) do(ctx context.Context, fn func(*Tx) error) error {
	select {
	case <-c.quit:
		return ErrClosed
	default:
	}
	req := &txRequest{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case c.queue <- req:
	case <-c.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, wait for the outcome even if ctx ends: the caller must learn whether the
	// change was committed. A request queued while stop raced with it may never be taken:
	// once the loop has returned, every request it took has its outcome in done already, and
	// one it did not take never ran.
	select {
	case err := <-req.done:
		return err
	case <-c.stopped:
		select {
		case err := <-req.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (c *committer) stop() {
	c.once.Do(func() { close(c.quit) })
	c.wg.Wait()
}

func (c *committer) loop() {
	for {
		var first *txRequest
		select {
		case first = <-c.queue:
		case <-c.quit:
			c.drain()
			return
		}
		batch := []*txRequest{first}
	collect:
		for len(batch) < maxBatch {
			select {
			case req := <-c.queue:
				batch = append(batch, req)
			default:
				break collect
			}
		}
		c.run(batch)
	}
}

// drain refuses what is still queued after stop.
func (c *committer) drain() {
	for {
		select {
		case req := <-c.queue:
			req.done <- ErrClosed
		default:
			return
		}
	}
}

// run executes a batch in one transaction and delivers each request's outcome.
func (c *committer) run(batch []*txRequest) {
	start := time.Now()
	defer func() {
		c.busy.Add(int64(time.Since(start)))
		c.batches.Add(1)
		c.txs.Add(int64(len(batch)))
	}()
	errs := make([]error, len(batch))
	var unprepared []string
	defer func() {
		for i, req := range batch {
			req.done <- errs[i]
		}
		for _, q := range unprepared {
			_, _ = c.stmts.stmt(context.Background(), q) // a failure here only costs speed
		}
	}()
	sqlTx, err := c.write.BeginTx(context.Background(), nil)
	if err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("begin: %w", err)
		}
		return
	}
	q := txQuerier{tx: sqlTx, cache: c.stmts, unprepared: &unprepared}
	tx := &Tx{Reader: Reader{q: q, d: sqliteDialect, inTx: true}, tx: q}
	committed := false
	for i, req := range batch {
		if err := req.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		var broken error
		errs[i], broken = c.runOne(tx, req)
		if broken != nil {
			// The savepoint machinery failed (for example SQLite rolled the whole transaction
			// back after an I/O error): nothing of this batch can be trusted to commit.
			_ = sqlTx.Rollback()
			for j := range errs {
				if errs[j] == nil || j >= i {
					errs[j] = fmt.Errorf("store: batch aborted: %w", broken)
				}
			}
			return
		}
		committed = committed || errs[i] == nil
	}
	if !committed {
		_ = sqlTx.Rollback()
		return
	}
	if err := sqlTx.Commit(); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("commit: %w", err)
			}
		}
	}
}

// runOne runs one request under a savepoint, undoing its writes if it fails or panics. It
// returns the request's error, and broken when the savepoint itself could not be set, rolled
// back to or released, which leaves the transaction in an unknown state. The request's
// queries do not see the caller's cancellation: interrupting a statement would make SQLite
// roll back the whole batch.
func (c *committer) runOne(tx *Tx, req *txRequest) (err, broken error) {
	ctx := context.Background()
	if _, err := tx.tx.ExecContext(ctx, "SAVEPOINT change"); err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("store: transaction panicked: %v", v)
		}
		if err != nil {
			if _, rbErr := tx.tx.ExecContext(ctx, "ROLLBACK TO change"); rbErr != nil {
				broken = fmt.Errorf("rollback to savepoint: %w", rbErr)
				return
			}
		}
		if _, relErr := tx.tx.ExecContext(ctx, "RELEASE change"); relErr != nil {
			broken = fmt.Errorf("release savepoint: %w", relErr)
		}
	}()
	return req.fn(tx), nil
}
