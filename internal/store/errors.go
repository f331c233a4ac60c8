package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// sqlite3 extended result codes for constraint violations.
const (
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

// wrapConflict turns a uniqueness violation into ErrConflict naming what already exists.
func wrapConflict(err error, what string) error {
	if err == nil {
		return nil
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		switch coded.Code() {
		case sqliteConstraintUnique, sqliteConstraintPrimaryKey:
			return fmt.Errorf("%s already exists: %w", what, ErrConflict)
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgUniqueViolation {
		return fmt.Errorf("%s already exists: %w", what, ErrConflict)
	}
	return err
}

// insert runs an INSERT that may break a uniqueness rule, turning that into ErrConflict naming
// what already exists. On PostgreSQL a failed statement aborts the whole transaction, where
// SQLite undoes only the statement; so there the INSERT does nothing on a conflict instead of
// failing, and the transaction can carry on after ErrConflict on both engines.
func (t *Tx) insert(ctx context.Context, what, q string, args ...any) error {
	if !t.d.postgres {
		_, err := t.tx.ExecContext(ctx, q, args...)
		return wrapConflict(err, what)
	}
	res, err := t.tx.ExecContext(ctx, q+` ON CONFLICT DO NOTHING`, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	return fmt.Errorf("%s already exists: %w", what, ErrConflict)
}
