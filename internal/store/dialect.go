package store

import (
	"context"
	"fmt"

	"github.com/pressly/goose/v3"
)

// dialect holds what differs between the SQL engines. The queries themselves are shared:
// they use $n placeholders, which both engines accept, and BIGINT unix-nanosecond times.
type dialect struct {
	name       string
	goose      goose.Dialect
	migrations string // directory under migrations/
	// postgres is true for PostgreSQL: many writers at once (READ COMMITTED transactions),
	// where SQLite has a single writer that runs transactions one after another.
	postgres bool
}

var (
	sqliteDialect   = &dialect{name: "sqlite", goose: goose.DialectSQLite3, migrations: "migrations/sqlite"}
	postgresDialect = &dialect{name: "postgres", goose: goose.DialectPostgres, migrations: "migrations/postgres", postgres: true}
)

// auditLockKey is the PostgreSQL advisory lock that orders appends to the audit chain.
const auditLockKey = 0x6b74_6175_6469_7401 // "ktaudit" + 1

// forUpdate is appended to a read that the transaction goes on to change from what it read
// (read, check a revision, write): on PostgreSQL it locks the row until commit, so concurrent
// transactions take turns as SQLite's single writer makes them. Outside a transaction, and
// on SQLite, it is empty.
func (r Reader) forUpdate() string {
	if r.inTx && r.d.postgres {
		return " FOR UPDATE"
	}
	return ""
}

// lockAudit makes a transaction the only appender to the audit chain until it ends. On
// SQLite the single writer already is; on PostgreSQL a transaction-scoped advisory lock,
// taken in its own statement so that the next statement's snapshot sees the events of the
// transaction that held it before. Held until commit, it also makes sequence numbers follow
// commit order, which the export cursor (seq > last sent) relies on.
func (t *Tx) lockAudit(ctx context.Context) error {
	if !t.d.postgres || t.auditLocked {
		return nil
	}
	if _, err := t.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(auditLockKey)); err != nil {
		return fmt.Errorf("lock the audit chain: %w", err)
	}
	t.auditLocked = true
	return nil
}
