package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Record is a vault record as stored: metadata in clear, values sealed in Data under DataKey.
type Record struct {
	UID       string
	TeamID    int64
	Type      string
	Title     string
	Folder    string
	Revision  int64
	DataKey   []byte
	Data      []byte
	CreatedAt time.Time
	UpdatedAt time.Time
}

// PasswordVersion is one version of a record's password, sealed under the record's data key.
type PasswordVersion struct {
	RecordUID string
	Version   int64
	State     string
	Value     []byte
	CreatedAt time.Time
	UpdatedAt time.Time
}

// RecordFilter selects records of a team for listing. Empty strings match everything.
type RecordFilter struct {
	TeamID int64
	Type   string
	Folder string   // the folder itself and everything below it
	Title  string   // case-insensitive substring
	Within []string // folder grants: only records in or below one of these; empty = no limit
	Limit  int
	Offset int
}

const recordColumns = `uid, team_id, type, title, folder, revision, data_key, data, created_at, updated_at`

func scanRecord(row interface{ Scan(...any) error }, withData bool) (Record, error) {
	var rec Record
	var created, updated int64
	var err error
	if withData {
		err = row.Scan(&rec.UID, &rec.TeamID, &rec.Type, &rec.Title, &rec.Folder, &rec.Revision,
			&rec.DataKey, &rec.Data, &created, &updated)
	} else {
		err = row.Scan(&rec.UID, &rec.TeamID, &rec.Type, &rec.Title, &rec.Folder, &rec.Revision, &created, &updated)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, ErrNotFound
	}
	rec.CreatedAt, rec.UpdatedAt = fromNanos(created), fromNanos(updated)
	return rec, err
}

// Record returns one record of a team, with its sealed data.
func (r Reader) Record(ctx context.Context, teamID int64, uid string) (Record, error) {
	return scanRecord(r.q.QueryRowContext(ctx,
		`SELECT `+recordColumns+` FROM records WHERE uid = $1 AND team_id = $2`, uid, teamID), true)
}

// RecordsByTitle returns at most limit records of a team with exactly this title, in or below
// one of the folders within (any folder when within is empty), with their sealed data.
func (r Reader) RecordsByTitle(ctx context.Context, teamID int64, title string, within []string, limit int) ([]Record, error) {
	q := `SELECT ` + recordColumns + ` FROM records WHERE team_id = $1 AND title = $2`
	args := []any{teamID, title}
	if len(within) > 0 {
		cond, more := withinFolders("folder", within, len(args))
		args = append(args, more...)
		q += ` AND (` + cond + `)`
	}
	args = append(args, limit)
	rows, err := r.q.QueryContext(ctx, q+` ORDER BY uid LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		rec, err := scanRecord(rows, true)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

// ListRecords returns record metadata (no sealed data) ordered by folder, title and uid.
func (r Reader) ListRecords(ctx context.Context, f RecordFilter) ([]Record, error) {
	q := `SELECT uid, team_id, type, title, folder, revision, created_at, updated_at FROM records WHERE team_id = $1`
	args := []any{f.TeamID}
	if f.Type != "" {
		args = append(args, f.Type)
		q += ` AND type = $2`
	}
	if f.Folder != "" {
		cond, more := withinFolders("folder", []string{f.Folder}, len(args))
		args = append(args, more...)
		q += ` AND (` + cond + `)`
	}
	if len(f.Within) > 0 {
		cond, more := withinFolders("folder", f.Within, len(args))
		args = append(args, more...)
		q += ` AND (` + cond + `)`
	}
	if f.Title != "" {
		// SQLite's lower() and LIKE fold ASCII letters only: title "ÜBER" never matches the
		// lower-cased filter "über", so the filter as given is tried too.
		args = append(args, "%"+likeEscape(strings.ToLower(f.Title))+"%", "%"+likeEscape(f.Title)+"%")
		q += ` AND (lower(title) LIKE $` + strconv.Itoa(len(args)-1) + ` ESCAPE '\' OR title LIKE $` +
			strconv.Itoa(len(args)) + ` ESCAPE '\')`
	}
	args = append(args, f.Limit, f.Offset)
	q += ` ORDER BY folder, title, uid LIMIT $` + strconv.Itoa(len(args)-1) + ` OFFSET $` + strconv.Itoa(len(args))
	rows, err := r.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		rec, err := scanRecord(rows, false)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

// InsertRecord inserts a new record.
func (t *Tx) InsertRecord(ctx context.Context, rec Record) error {
	return t.insert(ctx, "record "+rec.UID, `INSERT INTO records (`+recordColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		rec.UID, rec.TeamID, rec.Type, rec.Title, rec.Folder, rec.Revision, rec.DataKey, rec.Data,
		nanos(rec.CreatedAt), nanos(rec.UpdatedAt))
}

// UpdateRecord replaces a record's metadata and data if its stored revision is still
// rec.Revision-1; otherwise it returns ErrConflict (or ErrNotFound when the record is gone).
func (t *Tx) UpdateRecord(ctx context.Context, rec Record) error {
	res, err := t.tx.ExecContext(ctx,
		`UPDATE records SET type = $1, title = $2, folder = $3, revision = $4, data = $5, updated_at = $6
		  WHERE uid = $7 AND team_id = $8 AND revision = $9`,
		rec.Type, rec.Title, rec.Folder, rec.Revision, rec.Data, nanos(rec.UpdatedAt), rec.UID, rec.TeamID, rec.Revision-1)
	if err := affectedOne(res, err); errors.Is(err, ErrNotFound) {
		if _, err := t.Record(ctx, rec.TeamID, rec.UID); err != nil {
			return err
		}
		return ErrConflict
	} else if err != nil {
		return err
	}
	return nil
}

// DeleteRecord deletes a record and its password versions.
func (t *Tx) DeleteRecord(ctx context.Context, teamID int64, uid string) error {
	return affectedOne(t.tx.ExecContext(ctx, `DELETE FROM records WHERE uid = $1 AND team_id = $2`, uid, teamID))
}

// PasswordVersions returns a record's password versions, newest first.
func (r Reader) PasswordVersions(ctx context.Context, uid string) ([]PasswordVersion, error) {
	rows, err := r.q.QueryContext(ctx,
		`SELECT record_uid, version, state, value, created_at, updated_at FROM password_versions
		  WHERE record_uid = $1 ORDER BY version DESC`, uid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PasswordVersion
	for rows.Next() {
		var v PasswordVersion
		var created, updated int64
		if err := rows.Scan(&v.RecordUID, &v.Version, &v.State, &v.Value, &created, &updated); err != nil {
			return nil, err
		}
		v.CreatedAt, v.UpdatedAt = fromNanos(created), fromNanos(updated)
		out = append(out, v)
	}
	return out, rows.Err()
}

// VersionNumbers returns the number of a record's newest password version and of its current
// one (0 when there is none), without reading their values.
func (r Reader) VersionNumbers(ctx context.Context, uid string) (latest, current int64, err error) {
	err = r.q.QueryRowContext(ctx,
		`SELECT COALESCE(MAX(version), 0), COALESCE(MAX(CASE WHEN state = 'current' THEN version END), 0)
		   FROM password_versions WHERE record_uid = $1`, uid).Scan(&latest, &current)
	return latest, current, err
}

// InsertPasswordVersion adds a password version.
func (t *Tx) InsertPasswordVersion(ctx context.Context, v PasswordVersion) error {
	return t.insert(ctx, "password version",
		`INSERT INTO password_versions (record_uid, version, state, value, created_at, updated_at)
		 VALUES ($1, $2, $3, $4, $5, $6)`,
		v.RecordUID, v.Version, v.State, v.Value, nanos(v.CreatedAt), nanos(v.UpdatedAt))
}

// SetPasswordVersionState changes the state of every version of a record in state from to to.
func (t *Tx) SetPasswordVersionState(ctx context.Context, uid, from, to string, now time.Time) error {
	_, err := t.tx.ExecContext(ctx,
		`UPDATE password_versions SET state = $1, updated_at = $2 WHERE record_uid = $3 AND state = $4`,
		to, nanos(now), uid, from)
	return err
}

// PrunePasswordVersions deletes the oldest versions in the given states beyond keep.
func (t *Tx) PrunePasswordVersions(ctx context.Context, uid string, keep int, states ...string) error {
	if len(states) == 0 {
		return nil
	}
	args := []any{uid, keep}
	in := make([]string, len(states))
	for i, s := range states {
		args = append(args, s)
		in[i] = "$" + strconv.Itoa(len(args))
	}
	list := strings.Join(in, ", ")
	_, err := t.tx.ExecContext(ctx,
		`DELETE FROM password_versions WHERE record_uid = $1 AND state IN (`+list+`) AND version NOT IN (
		   SELECT version FROM password_versions WHERE record_uid = $1 AND state IN (`+list+`)
		    ORDER BY version DESC LIMIT $2)`, args...)
	return err
}

// withinFolders returns a condition matching column against folders and everything below
// them, with its arguments numbered after the n already bound.
func withinFolders(column string, folders []string, n int) (string, []any) {
	var ors []string
	var args []any
	for _, f := range folders {
		args = append(args, f, likeEscape(f)+"/%")
		ors = append(ors, column+` = $`+strconv.Itoa(n+len(args)-1)+` OR `+column+` LIKE $`+strconv.Itoa(n+len(args))+` ESCAPE '\'`)
	}
	return strings.Join(ors, " OR "), args
}

// prefixed qualifies each of a comma-separated column list with prefix.
func prefixed(prefix, columns string) string {
	parts := strings.Split(columns, ",")
	for i, c := range parts {
		parts[i] = prefix + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// PasswordVersion returns one version of a record's password.
func (r Reader) PasswordVersion(ctx context.Context, uid string, version int64) (PasswordVersion, error) {
	var v PasswordVersion
	var created, updated int64
	err := r.q.QueryRowContext(ctx,
		`SELECT record_uid, version, state, value, created_at, updated_at FROM password_versions
		  WHERE record_uid = $1 AND version = $2`, uid, version).
		Scan(&v.RecordUID, &v.Version, &v.State, &v.Value, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return PasswordVersion{}, ErrNotFound
	}
	v.CreatedAt, v.UpdatedAt = fromNanos(created), fromNanos(updated)
	return v, err
}

// MakeCurrent makes one password version current and the one that was current previous, in
// one statement.
func (t *Tx) MakeCurrent(ctx context.Context, uid string, version int64, now time.Time) error {
	return affectedOne(t.tx.ExecContext(ctx,
		`UPDATE password_versions SET state = CASE WHEN version = $1 THEN 'current' ELSE 'previous' END, updated_at = $2
		  WHERE record_uid = $3 AND (version = $1 OR state = 'current')`, version, nanos(now), uid))
}

// SetVersionState changes the state of one password version.
func (t *Tx) SetVersionState(ctx context.Context, uid string, version int64, state string, now time.Time) error {
	return affectedOne(t.tx.ExecContext(ctx,
		`UPDATE password_versions SET state = $1, updated_at = $2 WHERE record_uid = $3 AND version = $4`,
		state, nanos(now), uid, version))
}
