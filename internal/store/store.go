// Package store is keyturn's SQL access: one database/sql implementation over SQLite
// (modernc, pure Go; the default) or PostgreSQL (pgx), with embedded goose migrations for
// each (migrations/sqlite, migrations/postgres, same versions). Every change runs in one
// transaction. What differs between the two engines is in dialect.go and postgres.go.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations
var migrations embed.FS

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned when a write loses an optimistic-concurrency check or a uniqueness rule.
var ErrConflict = errors.New("store: conflict")

// querier is what both a connection pool and a transaction can do.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Reader holds the read-only queries; DB and Tx both embed it.
type Reader struct {
	q    querier
	d    *dialect
	inTx bool // q is a write transaction
}

// DB is an open keyturn database. On SQLite: a single-connection pool for writes (SQLite has
// one writer) and a pool of read-only connections that read concurrently under WAL. On
// PostgreSQL: one pool for both.
type DB struct {
	Reader
	write      *sql.DB
	read       *sql.DB
	lease      *sql.DB    // PostgreSQL: connections for leases and the node lock only
	writeStmts *stmtCache // nil on PostgreSQL, where pgx caches prepared statements itself
	readStmts  *stmtCache
	d          *dialect
	commits    *committer // SQLite's single writer; nil on PostgreSQL
	pgStats    *pgStats   // PostgreSQL's WriterStats
}

// Tx is a write transaction; see DB.Tx.
type Tx struct {
	Reader
	tx        querier
	auditHead *auditHead // PostgreSQL: the audit chain's head, once this transaction holds it
}

// SQLitePath returns the database file inside a data directory.
func SQLitePath(dataDir string) string { return filepath.Join(dataDir, "keyturn.db") }

// OpenSQLite opens (creating if needed) the SQLite database at path. Commits are durable
// (WAL with synchronous=FULL). Call Migrate before using it.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	base := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + url.Values{
		"_pragma": {"foreign_keys(1)", "busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)"},
		"_txlock": {"immediate"},
	}.Encode()
	write, err := sql.Open("sqlite", base)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// The database and its -wal/-shm files hold only ciphertext, but keep them private anyway.
	_ = os.Chmod(path, 0o600)

	read, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	db := &DB{write: write, read: read, writeStmts: newStmtCache(write), readStmts: newStmtCache(read), d: sqliteDialect}
	db.Reader = Reader{q: pool{db.readStmts}, d: sqliteDialect}
	db.commits = startCommitter(write, db.writeStmts)
	return db, nil
}

// Migrate applies every pending schema migration.
func (db *DB) Migrate(ctx context.Context) error {
	p, err := db.migrator()
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	return nil
}

// MigrateTo applies the pending schema migrations up to version only, so that a test of an
// upgrade can start from an older schema.
func (db *DB) MigrateTo(ctx context.Context, version int64) error {
	p, err := db.migrator()
	if err != nil {
		return err
	}
	if _, err := p.UpTo(ctx, version); err != nil {
		return fmt.Errorf("migrations up to %d: %w", version, err)
	}
	return nil
}

func (db *DB) migrator() (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, db.d.migrations)
	if err != nil {
		return nil, err
	}
	var opts []goose.ProviderOption
	if db.d.postgres {
		// Nodes that start at once take turns migrating.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(db.d.goose, db.write, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.read.PingContext(ctx) }

// Close closes the pools.
func (db *DB) Close() error {
	if db.commits == nil {
		return errors.Join(db.write.Close(), db.lease.Close())
	}
	db.commits.stop()
	db.readStmts.close()
	db.writeStmts.close()
	return errors.Join(db.read.Close(), db.write.Close())
}

// Dialect names the database engine: "sqlite" or "postgres".
func (db *DB) Dialect() string { return db.d.name }

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func nullNanos(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func fromNullNanos(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

// affectedOne turns "no row changed" into ErrNotFound.
func affectedOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}
