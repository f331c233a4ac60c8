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

// lockAudit makes a PostgreSQL transaction the only appender to the audit chain until it
// ends, and returns the chain's head: the newest event's seq and hash (0 and nil when there is
// none). It reads the head row FOR UPDATE: a transaction that waited for it then reads the head
// as the one before it committed it. Held until commit, the lock also makes sequence numbers
// follow commit order, which the export cursor (seq > last sent) relies on. (On SQLite the
// single writer already is the only appender.)
func (t *Tx) lockAudit(ctx context.Context) (seq int64, hash []byte, err error) {
	if t.auditHead != nil {
		return t.auditHead.seq, t.auditHead.hash, nil
	}
	if err := t.tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&seq, &hash); err != nil {
		return 0, nil, fmt.Errorf("lock the audit chain: %w", err)
	}
	if seq == 0 {
		hash = nil
	}
	t.auditHead = &auditHead{seq, hash}
	return seq, hash, nil
}

// auditHead is the audit chain's head as a PostgreSQL transaction holding it last wrote it.
type auditHead struct {
	seq  int64
	hash []byte
}
