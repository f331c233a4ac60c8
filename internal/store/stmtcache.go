package store

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache prepares each distinct query once per pool; SQLite spends most of a simple
// query's time parsing it otherwise.
type stmtCache struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache { return &stmtCache{db: db, stmts: map[string]*sql.Stmt{}} }

func (c *stmtCache) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.stmts[query]
	c.mu.Unlock()
	if ok {
		return st, nil
	}
	// Prepare without holding the lock: preparing waits for a connection, and the holder of
	// the write connection may need the lock to finish its transaction.
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.stmts[query]; ok {
		st.Close()
		return prev, nil
	}
	c.stmts[query] = st
	return st, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	clear(c.stmts)
}

// pool runs queries on a connection pool through prepared statements.
type pool struct{ cache *stmtCache }

func (p pool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := p.cache.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (p pool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.cache.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs a single-row query. A cancellable ctx is honoured before the query
// starts but not during it: for a query this short, the two goroutines that database/sql and
// the driver would start to watch ctx cost more than the query.
func (p pool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if ctx.Err() != nil {
		return p.cache.db.QueryRowContext(ctx, query, args...) // fails with ctx's error at Scan
	}
	ctx = context.WithoutCancel(ctx)
	st, err := p.cache.stmt(ctx, query)
	if err != nil {
		// Let the error surface from Scan, as database/sql does for a failed query.
		return p.cache.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// txQuerier runs queries in a transaction through the write pool's prepared statements. The
// write pool has one connection, which the transaction holds, so a statement not prepared yet
// runs unprepared and is prepared once the transaction has ended. Queries ignore cancellation:
// interrupting a statement would make SQLite roll back the whole group-committed batch.
type txQuerier struct {
	tx         *sql.Tx
	cache      *stmtCache
	unprepared *[]string
}

// stmt returns the prepared statement for query bound to the transaction, or nil.
func (t txQuerier) stmt(ctx context.Context, query string) *sql.Stmt {
	t.cache.mu.Lock()
	st, ok := t.cache.stmts[query]
	t.cache.mu.Unlock()
	if !ok {
		*t.unprepared = append(*t.unprepared, query)
		return nil
	}
	return t.tx.StmtContext(ctx, st)
}

func (t txQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx) // see committer.runOne
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

func (t txQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = context.WithoutCancel(ctx) // see committer.runOne
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

func (t txQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = context.WithoutCancel(ctx) // see committer.runOne
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}
