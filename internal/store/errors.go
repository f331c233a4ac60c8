package store

import (
	"errors"
	"fmt"
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
	return err
}
