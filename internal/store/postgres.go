package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // also registers the "pgx" driver
)

// IsPostgres reports whether storage names a PostgreSQL database (a postgres:// or
// postgresql:// URL) rather than a SQLite file.
func IsPostgres(storage string) bool {
	return strings.HasPrefix(storage, "postgres://") || strings.HasPrefix(storage, "postgresql://")
}

// Open opens the database that storage names: a postgres:// URL or the path of a SQLite file.
// Call Migrate before using it.
func Open(ctx context.Context, storage string) (*DB, error) {
	if IsPostgres(storage) {
		return OpenPostgres(ctx, storage)
	}
	return OpenSQLite(ctx, storage)
}

// OpenPostgres connects to the PostgreSQL database at dsn (a postgres:// URL). Call Migrate
// before using it. Errors name the database without the URL's password.
func OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
	where := redactDSN(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", where, err)
	}
	// A node paused in the middle of a transaction (SIGSTOP, a cut-off network) would hold
	// its row locks, the audit chain's among them, for as long as it is paused, and stop every
	// other node's writes: PostgreSQL ends such a session instead.
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.Itoa(int(IdleInTransactionTimeout.Milliseconds()))
	pool := stdlib.OpenDB(*cfg)
	n := max(8, 4*runtime.GOMAXPROCS(0))
	pool.SetMaxOpenConns(n)
	pool.SetMaxIdleConns(n)
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open %s: %w", where, err)
	}
	// Leases and the node lock have connections of their own: a node whose workers wait on
	// locks must still renew its leases.
	lease := stdlib.OpenDB(*cfg)
	lease.SetMaxOpenConns(3)
	lease.SetMaxIdleConns(3)
	db := &DB{write: pool, read: pool, lease: lease, d: postgresDialect, pgStats: &pgStats{}}
	db.Reader = Reader{q: pool, d: postgresDialect}
	return db, nil
}

// IdleInTransactionTimeout is how long PostgreSQL lets a keyturn session sit in a transaction
// without a statement before it ends the session, releasing its locks.
const IdleInTransactionTimeout = 5 * time.Second

// redactDSN returns dsn without its password, for messages.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "the PostgreSQL database"
	}
	return u.Redacted()
}

// maxAttempts bounds how often postgresTx runs fn when PostgreSQL aborts it for a deadlock or
// a serialization failure.
const maxAttempts = 5

// postgresTx runs fn in one PostgreSQL transaction (READ COMMITTED). As on SQLite, when fn
// returns nil its writes are committed before postgresTx returns, when it fails or panics none
// remain, and once begun the transaction does not see ctx's cancellation, so that the caller
// always learns whether it committed. Concurrent transactions run at once; the store's methods
// keep what callers rely on: revisions are checked in the UPDATE itself or under a row lock
// (Reader.forUpdate), one active run per record by a unique index, and appends to the audit
// chain take turns (Tx.lockAudit). A transaction that PostgreSQL aborts for a deadlock or a
// serialization failure is run again, up to maxAttempts times: fn may then run more than once,
// so it must change nothing but the database and its own variables.
func (db *DB) postgresTx(ctx context.Context, fn func(*Tx) error) error {
	return db.postgresTxOn(ctx, db.write, fn)
}

// postgresTxOn is postgresTx on the connections of pool.
func (db *DB) postgresTxOn(ctx context.Context, pool *sql.DB, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	var err error
	for range maxAttempts {
		if err = db.postgresTxOnce(ctx, pool, fn); !retryable(err) {
			return err
		}
	}
	return err
}

// pgStats counts PostgreSQL transactions for WriterStats.
type pgStats struct {
	commits, txs, busy atomic.Int64
}

func (db *DB) postgresTxOnce(ctx context.Context, pool *sql.DB, fn func(*Tx) error) (err error) {
	start := time.Now()
	db.pgStats.txs.Add(1)
	defer func() { db.pgStats.busy.Add(int64(time.Since(start))) }()
	sqlTx, err := pool.BeginTx(ctx, nil)
	if err != nil {
		if connectionLost(err) {
			return sessionEnded{fmt.Errorf("begin: %w", err)}
		}
		return fmt.Errorf("begin: %w", err)
	}
	committed := false
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("store: transaction panicked: %v", v)
		}
		if !committed {
			_ = sqlTx.Rollback()
		}
	}()
	tx := &Tx{Reader: Reader{q: sqlTx, d: postgresDialect, inTx: true}, tx: sqlTx}
	if err := fn(tx); err != nil {
		if connectionLost(err) { // nothing was committed: the commit was never sent
			return sessionEnded{err}
		}
		return err
	}
	committed = true // whatever Commit returns, the transaction has ended
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	db.pgStats.commits.Add(1)
	return nil
}

// PostgreSQL error codes.
const (
	pgUniqueViolation      = "23505"
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
)

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	var ended sessionEnded
	return errors.As(err, &ended) ||
		errors.As(err, &pgErr) && (pgErr.Code == pgSerializationFailure || pgErr.Code == pgDeadlockDetected)
}

// sessionEnded is a transaction that failed before its commit was sent because its database
// session ended (PostgreSQL ended it, say, after the process sat paused in the transaction
// past IdleInTransactionTimeout): nothing of it was committed, so it is run again on another
// connection.
type sessionEnded struct{ err error }

func (e sessionEnded) Error() string { return e.err.Error() }
func (e sessionEnded) Unwrap() error { return e.err }

// connectionLost reports whether err says the database session is gone: the server ended it
// (a FATAL error, class 57 or 08, or 25P03), or the connection broke.
func connectionLost(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Severity == "FATAL" || strings.HasPrefix(pgErr.Code, "57") || strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "25P03"
	}
	var netErr net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &netErr) || pgconn.SafeToRetry(err)
}

// NodeLockKey is the PostgreSQL advisory lock held by the process that runs as node on a
// database: a hash of its name.
func NodeLockKey(node string) int64 {
	h := fnv.New64a()
	h.Write([]byte("keyturn-node:" + node))
	return int64(h.Sum64() >> 1) // non-negative, as pg_locks shows it (classid << 32 | objid)
}

// ErrNodeLocked is returned by LockNode when another process runs as the same node.
var ErrNodeLocked = errors.New("store: another keyturn server runs as this node on this database (give each node its own --node)")

// LockNode makes this process the only one that runs as node on a PostgreSQL database until
// release is called, or returns ErrNodeLocked: a node starting takes over the rotation runs its
// name holds (TakeOverRuns), which is only safe if no live process has its name. It holds a
// session advisory lock on a connection of its own, which PostgreSQL releases if the process
// dies. On SQLite it does nothing: the data directory's lock does this there.
//
// The session can end under a live process (a database restart, pg_terminate_backend), and
// the lock with it. So the lock is checked every check interval: when it is gone, it is taken
// again on a new connection as soon as the database answers; when another process took it
// meanwhile, lost is called (once), and this process must stop at once.
func (db *DB) LockNode(ctx context.Context, node string, check time.Duration, lost func(error)) (release func() error, err error) {
	if !db.d.postgres {
		return func() error { return nil }, nil
	}
	key := NodeLockKey(node)
	conn, err := db.takeNodeLock(ctx, key)
	if err != nil {
		return nil, err
	}
	w := &nodeWatch{db: db, key: key, conn: conn, done: make(chan struct{}), stopped: make(chan struct{})}
	go w.run(check, lost)
	return w.release, nil
}

// takeNodeLock takes a node's lock on a new connection, which it returns.
func (db *DB) takeNodeLock(ctx context.Context, key int64) (*sql.Conn, error) {
	conn, err := db.lease.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock the node: %w", err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Close()
		return nil, fmt.Errorf("lock the node: %w", err)
	}
	if !ok {
		conn.Close()
		return nil, ErrNodeLocked
	}
	return conn, nil
}

// nodeWatch keeps a node's lock: it checks the lock's session and takes the lock again when
// the session ended.
type nodeWatch struct {
	db      *DB
	key     int64
	mu      sync.Mutex
	conn    *sql.Conn // nil while the lock is not held
	done    chan struct{}
	stopped chan struct{}
}

func (w *nodeWatch) run(check time.Duration, lost func(error)) {
	defer close(w.stopped)
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), check)
		err := w.keep(ctx)
		cancel()
		if errors.Is(err, ErrNodeLocked) {
			lost(fmt.Errorf("the node lock's database session ended, and another keyturn server took the lock: %w", err))
			return
		}
	}
}

// keep checks that the lock's session still holds it, and takes it again when not. It returns
// ErrNodeLocked when another process holds it now; other errors (the database does not
// answer) are retried at the next check.
func (w *nodeWatch) keep(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		var held bool
		err := w.conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
			AND pid = pg_backend_pid() AND granted AND ((classid::bigint << 32) | objid::bigint) = $1)`, w.key).Scan(&held)
		if err == nil && held {
			return nil
		}
		w.conn.Close()
		w.conn = nil
	}
	conn, err := w.db.takeNodeLock(ctx, w.key)
	if err != nil {
		return err
	}
	w.conn = conn
	return nil
}

func (w *nodeWatch) release() error {
	close(w.done)
	<-w.stopped
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn == nil {
		return nil
	}
	_, err := w.conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, w.key)
	return errors.Join(err, w.conn.Close())
}

// leaseTx runs fn in a transaction on the connections kept for leases (PostgreSQL), or as Tx
// does (SQLite, whose single writer has no one to wait for but itself).
func (db *DB) leaseTx(ctx context.Context, fn func(*Tx) error) error {
	if db.lease == nil {
		return db.Tx(ctx, fn)
	}
	return db.postgresTxOn(ctx, db.lease, fn)
}
