package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// copyTables lists, parents first, every table the migrations create that CopyToPostgres
// copies row by row. A table a migration adds must be added here: CopyToPostgres refuses to
// copy while a table of either database is neither here nor in copySkipped.
var copyTables = []string{
	"keyring", "teams", "service_users", "api_keys", "tokens", "records", "password_versions",
	"rotation_settings", "scripts", "rotation_runs", "rotation_run_states", "script_processes", "audit_events",
	"audit_team_heads", "audit_sink_cursors",
}

// copySkipped are the tables CopyToPostgres does not copy as rows: goose's own version table
// (each database was migrated by its own provider), PostgreSQL's audit_head, which is set
// from the copied chain instead, and the failed-exchange limiter's windows and the per-target
// rate limits' buckets, the web UI's sessions and one-time sign-in links, which are
// transient: a copied vault starts with none (a missing bucket starts full; everyone signs in
// to the UI again).
var copySkipped = []string{"goose_db_version", "audit_head",
	"exchange_pair_failures", "exchange_key_failures", "exchange_good_addresses", "target_rate_buckets",
	"ui_sessions", "ui_signin_links"}

// ErrTargetNotEmpty is returned by CopyToPostgres when the target database already holds
// keyturn data.
var ErrTargetNotEmpty = errors.New("the target database is not empty")

// TableCount is how many rows of a table were copied.
type TableCount struct {
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
}

// CopyReport is what CopyToPostgres copied: the rows per table, and the head of the audit
// chain (0 when there are no events) that the target's audit_head now holds.
type CopyReport struct {
	Tables    []TableCount `json:"tables"`
	AuditHead int64        `json:"audit_head"`
}

// CopyToPostgres copies every row of src, a migrated SQLite database, into dst, a migrated
// and empty PostgreSQL database, in one PostgreSQL transaction: all of it or nothing. Values
// are copied as stored (ciphertexts and wrapped keys included), so nothing is decrypted and
// the same master key unseals the copy. It sets the target's audit_head to the copied
// chain's newest event and its identity sequences past the copied ids. It refuses, writing
// nothing, a target that holds any row (ErrTargetNotEmpty) and a schema with a table it does
// not know, and checks that each table of the target ends with as many rows as the source.
func CopyToPostgres(ctx context.Context, src, dst *DB) (CopyReport, error) {
	if src.d.postgres || !dst.d.postgres {
		return CopyReport{}, errors.New("storage copy: copies from SQLite to PostgreSQL only")
	}
	// One read transaction on the source: a snapshot, even if a command writes beside it.
	in, err := src.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return CopyReport{}, fmt.Errorf("storage copy: read the source: %w", err)
	}
	defer in.Rollback() //nolint:errcheck // read-only
	srcTables, err := tableNames(ctx, in, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
	if err != nil {
		return CopyReport{}, fmt.Errorf("storage copy: list the source's tables: %w", err)
	}
	out, err := dst.write.BeginTx(ctx, nil)
	if err != nil {
		return CopyReport{}, fmt.Errorf("storage copy: begin on the target: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = out.Rollback()
		}
	}()
	dstTables, err := tableNames(ctx, out, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
	if err != nil {
		return CopyReport{}, fmt.Errorf("storage copy: list the target's tables: %w", err)
	}
	if err := checkTables("source", srcTables); err != nil {
		return CopyReport{}, err
	}
	if err := checkTables("target", dstTables); err != nil {
		return CopyReport{}, err
	}
	// Nothing in the target yet. Taking the head's row lock first makes a concurrent
	// copy (or a server appending events) wait, then find the target not empty.
	var headSeq int64
	if err := out.QueryRowContext(ctx, `SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&headSeq); err != nil {
		return CopyReport{}, fmt.Errorf("storage copy: read the target's audit head: %w", err)
	}
	if headSeq != 0 {
		return CopyReport{}, fmt.Errorf("%w: its audit chain has %d events", ErrTargetNotEmpty, headSeq)
	}
	for _, t := range copyTables {
		var has bool
		if err := out.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+t+`)`).Scan(&has); err != nil {
			return CopyReport{}, fmt.Errorf("storage copy: look into the target's %s: %w", t, err)
		}
		if has {
			return CopyReport{}, fmt.Errorf("%w: table %s has rows", ErrTargetNotEmpty, t)
		}
	}
	var rep CopyReport
	for _, t := range copyTables {
		n, err := copyTable(ctx, in, out, t)
		if err != nil {
			return CopyReport{}, fmt.Errorf("storage copy: table %s: %w", t, err)
		}
		rep.Tables = append(rep.Tables, TableCount{Table: t, Rows: n})
	}
	if err := resetIdentities(ctx, out); err != nil {
		return CopyReport{}, err
	}
	// The audit chain's head: the newest copied event, which the next append chains to.
	var hash []byte
	err = out.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&rep.AuditHead, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		rep.AuditHead, hash, err = 0, []byte{}, nil
	}
	if err != nil {
		return CopyReport{}, fmt.Errorf("storage copy: read the copied audit head: %w", err)
	}
	if _, err := out.ExecContext(ctx, `UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1`, rep.AuditHead, hash); err != nil {
		return CopyReport{}, fmt.Errorf("storage copy: set the audit head: %w", err)
	}
	// Every table of the target holds as many rows as the source's.
	for _, tc := range rep.Tables {
		var got, want int64
		if err := out.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+tc.Table).Scan(&got); err != nil {
			return CopyReport{}, fmt.Errorf("storage copy: count the target's %s: %w", tc.Table, err)
		}
		if err := in.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+tc.Table).Scan(&want); err != nil {
			return CopyReport{}, fmt.Errorf("storage copy: count the source's %s: %w", tc.Table, err)
		}
		if got != want || got != tc.Rows {
			return CopyReport{}, fmt.Errorf("storage copy: table %s has %d rows in the target, %d in the source", tc.Table, got, want)
		}
	}
	committed = true
	if err := out.Commit(); err != nil {
		return CopyReport{}, fmt.Errorf("storage copy: commit: %w", err)
	}
	return rep, nil
}

// CountRows counts the rows of table, one of CopiedTables.
func (r Reader) CountRows(ctx context.Context, table string) (int64, error) {
	if !slices.Contains(copyTables, table) {
		return 0, fmt.Errorf("count rows: %s is not a table storage copy copies", table)
	}
	var n int64
	if err := r.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		return 0, fmt.Errorf("count the rows of %s: %w", table, err)
	}
	return n, nil
}

// CopiedTables returns the tables CopyToPostgres copies, parents first.
func CopiedTables() []string { return slices.Clone(copyTables) }

// checkTables fails when a table of a database is one CopyToPostgres does not handle, or one
// it copies is missing.
func checkTables(which string, tables []string) error {
	for _, t := range tables {
		if !slices.Contains(copyTables, t) && !slices.Contains(copySkipped, t) {
			return fmt.Errorf("storage copy: the %s database has table %s, which storage copy does not handle: nothing was copied (add it to store.copyTables)", which, t)
		}
	}
	for _, t := range copyTables {
		if !slices.Contains(tables, t) {
			return fmt.Errorf("storage copy: the %s database has no table %s: nothing was copied", which, t)
		}
	}
	return nil
}

func tableNames(ctx context.Context, q querier, query string) ([]string, error) {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names, rows.Err()
}

// pgColumn is a column of a target table.
type pgColumn struct {
	name, typ string
	notNull   bool
}

// copyTable copies every row of table from in (SQLite) to out (PostgreSQL), converting each
// value to the target column's type, and returns how many it copied. The two tables must have
// the same columns.
func copyTable(ctx context.Context, in, out querier, table string) (int64, error) {
	cols, err := targetColumns(ctx, out, table)
	if err != nil {
		return 0, err
	}
	srcCols, err := tableNames(ctx, in, `SELECT name FROM pragma_table_info('`+table+`')`)
	if err != nil {
		return 0, fmt.Errorf("list the source's columns: %w", err)
	}
	names := make([]string, len(cols))
	marks := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	sorted := slices.Clone(names)
	sort.Strings(sorted)
	if !slices.Equal(sorted, srcCols) {
		return 0, fmt.Errorf("the source's columns %v are not the target's %v", srcCols, sorted)
	}
	rows, err := in.QueryContext(ctx, `SELECT `+strings.Join(names, ", ")+` FROM `+table+` ORDER BY rowid`)
	if err != nil {
		return 0, fmt.Errorf("read the source: %w", err)
	}
	defer rows.Close()
	insert := `INSERT INTO ` + table + ` (` + strings.Join(names, ", ") + `) VALUES (` + strings.Join(marks, ", ") + `)`
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("read the source: %w", err)
		}
		for i, c := range cols {
			if vals[i], err = convert(vals[i], c.typ, c.notNull); err != nil {
				return n, fmt.Errorf("column %s: %w", c.name, err)
			}
		}
		if _, err := out.ExecContext(ctx, insert, vals...); err != nil {
			return n, fmt.Errorf("write row %d: %w", n+1, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read the source: %w", err)
	}
	return n, nil
}

func targetColumns(ctx context.Context, out querier, table string) ([]pgColumn, error) {
	rows, err := out.QueryContext(ctx, `SELECT column_name, data_type, is_nullable = 'NO' FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, table)
	if err != nil {
		return nil, fmt.Errorf("list the target's columns: %w", err)
	}
	defer rows.Close()
	var cols []pgColumn
	for rows.Next() {
		var c pgColumn
		if err := rows.Scan(&c.name, &c.typ, &c.notNull); err != nil {
			return nil, fmt.Errorf("list the target's columns: %w", err)
		}
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

// convert turns a value read from SQLite into one for a PostgreSQL column of type typ. The
// SQLite driver reads an empty BLOB as a nil []byte, which pgx would write as NULL: in a NOT
// NULL column, nil is that empty value.
func convert(v any, typ string, notNull bool) (any, error) {
	if v == nil && notNull && typ == "bytea" {
		return []byte{}, nil
	}
	if v == nil {
		return nil, nil
	}
	switch typ {
	case "bytea":
		switch x := v.(type) {
		case []byte:
			if x == nil && notNull {
				return []byte{}, nil
			}
			return x, nil
		case string:
			return []byte(x), nil
		}
	case "text":
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		}
	case "bigint", "integer", "smallint":
		if x, ok := v.(int64); ok {
			return x, nil
		}
	default:
		return nil, fmt.Errorf("storage copy does not handle the PostgreSQL type %s", typ)
	}
	return nil, fmt.Errorf("a %T value for a %s column", v, typ)
}

// resetIdentities moves each identity sequence of the target past the ids copied, so the next
// row inserted gets a new one.
func resetIdentities(ctx context.Context, out querier) error {
	rows, err := out.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')`)
	if err != nil {
		return fmt.Errorf("storage copy: list identity columns: %w", err)
	}
	var ids [][2]string
	for rows.Next() {
		var t, c string
		if err := rows.Scan(&t, &c); err != nil {
			rows.Close()
			return fmt.Errorf("storage copy: list identity columns: %w", err)
		}
		ids = append(ids, [2]string{t, c})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storage copy: list identity columns: %w", err)
	}
	for _, id := range ids {
		q := `SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX(` + id[1] + `), 1), MAX(` + id[1] + `) IS NOT NULL) FROM ` + id[0]
		if _, err := out.ExecContext(ctx, q, id[0], id[1]); err != nil {
			return fmt.Errorf("storage copy: move the sequence of %s.%s: %w", id[0], id[1], err)
		}
	}
	return nil
}
