package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// RotationSettings are a record's rotation settings as stored (JSON, no secrets), with its
// scheduling and heartbeat state.
type RotationSettings struct {
	RecordUID string
	TeamID    int64
	Settings  []byte
	Revision  int64 // 1 when first saved, then one more with each save
	UpdatedAt time.Time

	NextRunAt       *time.Time
	AnchorAt        time.Time
	NextHeartbeatAt *time.Time
	Drift           string
	DriftAt         *time.Time
	DriftMessage    string
}

// ScheduleState is the scheduling part of RotationSettings.
type ScheduleState struct {
	NextRunAt       *time.Time
	AnchorAt        time.Time
	NextHeartbeatAt *time.Time
}

// Drift is what the last heartbeat found.
type Drift struct {
	State   string // "" or "drifted"
	At      *time.Time
	Message string
}

// Script is a PAM script attached to a record; Content is sealed.
type Script struct {
	ID             string
	RecordUID      string
	Position       int64
	Name           string
	Command        string
	CredentialUIDs []string
	Timeout        time.Duration
	Content        []byte
	CreatedAt      time.Time
}

// Run is a rotation run as stored; ExecLog is sealed.
type Run struct {
	ID              string
	TeamID          int64
	RecordUID       string
	Trigger         string
	Status          string
	State           string
	Attempt         int64
	PendingVersion  int64      // 0 when none
	OldVersion      int64      // 0 when none
	CandidateFields []byte     // JSON object; custom fields set when the candidate becomes current
	DueAt           *time.Time // the occurrence a scheduled run is for
	EffectStarted   bool
	ErrorCode       string
	ErrorMessage    string
	ExecLog         []byte
	CreatedAt       time.Time
	StartedAt       *time.Time
	FinishedAt      *time.Time
	UpdatedAt       time.Time

	// The node lease (see ClaimRuns): who executes the run, which claim of it this is, and
	// until when (by the database's clock) it is held.
	LeaseNode  string
	LeaseEpoch int64
	LeaseUntil *time.Time
}

// RunFilter selects runs of a team.
type RunFilter struct {
	TeamID    int64
	RecordUID string
	Status    string
	Within    []string // folder grants of the caller; empty = no limit
	Limit     int
	Offset    int
}

// SaveRotationSettings inserts or replaces a record's rotation settings, with s.Revision as
// their revision: the caller checks the stored one in the same transaction.
func (t *Tx) SaveRotationSettings(ctx context.Context, s RotationSettings) error {
	_, err := t.tx.ExecContext(ctx,
		`INSERT INTO rotation_settings (record_uid, team_id, settings, revision, updated_at) VALUES ($1, $2, $3, $4, $5)
		 ON CONFLICT (record_uid) DO UPDATE SET settings = excluded.settings, revision = excluded.revision,
		   updated_at = excluded.updated_at`,
		s.RecordUID, s.TeamID, string(s.Settings), max(s.Revision, 1), nanos(s.UpdatedAt))
	return err
}

const settingsColumns = `record_uid, team_id, settings, revision, updated_at, next_run_at, anchor_at, next_heartbeat_at,
	drift, drift_at, drift_message`

func scanSettings(row interface{ Scan(...any) error }) (RotationSettings, error) {
	var (
		s                        RotationSettings
		settings                 string
		updated, anchor          int64
		next, heartbeat, driftAt sql.NullInt64
	)
	err := row.Scan(&s.RecordUID, &s.TeamID, &settings, &s.Revision, &updated, &next, &anchor, &heartbeat, &s.Drift, &driftAt, &s.DriftMessage)
	if errors.Is(err, sql.ErrNoRows) {
		return RotationSettings{}, ErrNotFound
	}
	s.Settings, s.UpdatedAt, s.AnchorAt = []byte(settings), fromNanos(updated), fromNanos(anchor)
	s.NextRunAt, s.NextHeartbeatAt, s.DriftAt = fromNullNanos(next), fromNullNanos(heartbeat), fromNullNanos(driftAt)
	return s, err
}

// RotationSettings returns a record's rotation settings. Inside a transaction on PostgreSQL it
// locks them until commit, as the caller goes on to check their revision and save them.
func (r Reader) RotationSettings(ctx context.Context, teamID int64, uid string) (RotationSettings, error) {
	return scanSettings(r.q.QueryRowContext(ctx,
		`SELECT `+settingsColumns+` FROM rotation_settings WHERE record_uid = $1 AND team_id = $2`+r.forUpdate(), uid, teamID))
}

// SetScheduleState stores when a record's rotation next fires and its heartbeat.
func (t *Tx) SetScheduleState(ctx context.Context, uid string, st ScheduleState) error {
	return affectedOne(t.tx.ExecContext(ctx,
		`UPDATE rotation_settings SET next_run_at = $1, anchor_at = $2, next_heartbeat_at = $3 WHERE record_uid = $4`,
		nullNanos(st.NextRunAt), nanos(st.AnchorAt), nullNanos(st.NextHeartbeatAt), uid))
}

// SetNextRun stores when a record's rotation next fires.
func (t *Tx) SetNextRun(ctx context.Context, uid string, next *time.Time) error {
	return affectedOne(t.tx.ExecContext(ctx, `UPDATE rotation_settings SET next_run_at = $1 WHERE record_uid = $2`,
		nullNanos(next), uid))
}

// SetHeartbeat stores a record's next heartbeat and what the last one found.
func (t *Tx) SetHeartbeat(ctx context.Context, uid string, next *time.Time, d Drift) error {
	return affectedOne(t.tx.ExecContext(ctx,
		`UPDATE rotation_settings SET next_heartbeat_at = $1, drift = $2, drift_at = $3, drift_message = $4 WHERE record_uid = $5`,
		nullNanos(next), d.State, nullNanos(d.At), d.Message, uid))
}

// DueSchedules returns the settings of records whose rotation is due at now, earliest first.
// Inside a transaction on PostgreSQL it locks them until commit and passes over those another
// transaction holds, so that nodes firing at once each take different records, and a record
// another node fired meanwhile (its next_run_at moved on) is not due any more.
func (r Reader) DueSchedules(ctx context.Context, now time.Time, limit int) ([]RotationSettings, error) {
	return r.settingsList(ctx, `SELECT `+settingsColumns+` FROM rotation_settings
		WHERE next_run_at IS NOT NULL AND next_run_at <= $1 ORDER BY next_run_at LIMIT $2`+r.claiming(), nanos(now), limit)
}

// DueHeartbeats returns the settings of records whose heartbeat is due at now; inside a
// transaction it claims them as DueSchedules does.
func (r Reader) DueHeartbeats(ctx context.Context, now time.Time, limit int) ([]RotationSettings, error) {
	return r.settingsList(ctx, `SELECT `+settingsColumns+` FROM rotation_settings
		WHERE next_heartbeat_at IS NOT NULL AND next_heartbeat_at <= $1 ORDER BY next_heartbeat_at LIMIT $2`+r.claiming(), nanos(now), limit)
}

// claiming is appended to a read of work to take within a transaction (see skipLocked).
func (r Reader) claiming() string {
	if r.inTx {
		return r.skipLocked()
	}
	return ""
}

// NextDue returns the earliest next_run_at (zero when no rotation is scheduled).
func (r Reader) NextDue(ctx context.Context) (time.Time, error) {
	var next sql.NullInt64
	err := r.q.QueryRowContext(ctx, `SELECT MIN(next_run_at) FROM rotation_settings WHERE next_run_at IS NOT NULL`).Scan(&next)
	if err != nil || !next.Valid {
		return time.Time{}, err
	}
	return fromNanos(next.Int64), nil
}

func (r Reader) settingsList(ctx context.Context, q string, args ...any) ([]RotationSettings, error) {
	rows, err := r.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RotationSettings
	for rows.Next() {
		s, err := scanSettings(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

const scriptColumns = `id, record_uid, position, name, command, credential_uids, timeout_ms, content, created_at`

// InsertScript attaches a script after the record's other scripts.
func (t *Tx) InsertScript(ctx context.Context, s Script) error {
	creds, _ := json.Marshal(nonNil(s.CredentialUIDs))
	q := `INSERT INTO scripts (` + scriptColumns + `)
		 SELECT $1, $2, COALESCE(MAX(position), 0) + 1, $3, $4, $5, $6, $7, $8 FROM scripts WHERE record_uid = $2`
	if t.d.postgres { // PostgreSQL types the parameters of a SELECT list as text unless told
		q = `INSERT INTO scripts (` + scriptColumns + `)
		 SELECT $1, $2, COALESCE(MAX(position), 0) + 1, $3, $4, $5, $6::bigint, $7::bytea, $8::bigint FROM scripts WHERE record_uid = $2`
	}
	return t.insert(ctx, "script "+s.ID, q,
		s.ID, s.RecordUID, s.Name, s.Command, string(creds), s.Timeout.Milliseconds(), s.Content, nanos(s.CreatedAt))
}

// Scripts returns a record's scripts in attach order.
func (r Reader) Scripts(ctx context.Context, uid string) ([]Script, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT `+scriptColumns+` FROM scripts WHERE record_uid = $1 ORDER BY position`, uid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Script
	for rows.Next() {
		var s Script
		var creds string
		var timeoutMS, created int64
		if err := rows.Scan(&s.ID, &s.RecordUID, &s.Position, &s.Name, &s.Command, &creds, &timeoutMS, &s.Content, &created); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(creds), &s.CredentialUIDs); err != nil {
			return nil, err
		}
		s.Timeout, s.CreatedAt = time.Duration(timeoutMS)*time.Millisecond, fromNanos(created)
		out = append(out, s)
	}
	return out, rows.Err()
}

// DeleteScript detaches a script from a record.
func (t *Tx) DeleteScript(ctx context.Context, uid, id string) error {
	return affectedOne(t.tx.ExecContext(ctx, `DELETE FROM scripts WHERE id = $1 AND record_uid = $2`, id, uid))
}

const runColumns = `id, team_id, record_uid, trigger, status, state, attempt, pending_version, old_version, candidate_fields, effect_started,
	error_code, error_message, exec_log, created_at, started_at, finished_at, updated_at, due_at, lease_node, lease_epoch, lease_until`

func scanRun(row interface{ Scan(...any) error }) (Run, error) {
	var (
		r                 Run
		pending, old      sql.NullInt64
		fields            string
		effect            int64
		created, updated  int64
		started, finished sql.NullInt64
		due, leaseUntil   sql.NullInt64
	)
	err := row.Scan(&r.ID, &r.TeamID, &r.RecordUID, &r.Trigger, &r.Status, &r.State, &r.Attempt, &pending, &old, &fields, &effect,
		&r.ErrorCode, &r.ErrorMessage, &r.ExecLog, &created, &started, &finished, &updated, &due, &r.LeaseNode, &r.LeaseEpoch, &leaseUntil)
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, ErrNotFound
	}
	r.PendingVersion, r.OldVersion, r.EffectStarted, r.CandidateFields = pending.Int64, old.Int64, effect != 0, []byte(fields)
	r.CreatedAt, r.UpdatedAt = fromNanos(created), fromNanos(updated)
	r.StartedAt, r.FinishedAt, r.DueAt = fromNullNanos(started), fromNullNanos(finished), fromNullNanos(due)
	r.LeaseUntil = fromNullNanos(leaseUntil)
	return r, err
}

// InsertRun adds a queued run. If the record already has an active run, it returns
// ErrConflict and the caller should read that run with ActiveRun.
func (t *Tx) InsertRun(ctx context.Context, r Run) error {
	err := t.insert(ctx, "an active run of record "+r.RecordUID, `INSERT INTO rotation_runs (`+runColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)`,
		r.ID, r.TeamID, r.RecordUID, r.Trigger, r.Status, r.State, r.Attempt, nullInt(r.PendingVersion), nullInt(r.OldVersion),
		jsonObject(r.CandidateFields),
		boolInt(r.EffectStarted), r.ErrorCode, r.ErrorMessage, r.ExecLog, nanos(r.CreatedAt),
		nullNanos(r.StartedAt), nullNanos(r.FinishedAt), nanos(r.UpdatedAt), nullNanos(r.DueAt),
		r.LeaseNode, r.LeaseEpoch, nullNanos(r.LeaseUntil))
	if err != nil {
		return err
	}
	return t.addRunState(ctx, r.ID, r.State, r.CreatedAt)
}

// InsertRunIfIdle adds a queued run unless the record already has an active one, and reports
// whether it did.
func (t *Tx) InsertRunIfIdle(ctx context.Context, r Run) (bool, error) {
	res, err := t.tx.ExecContext(ctx, `INSERT INTO rotation_runs (`+runColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
		ON CONFLICT DO NOTHING`,
		r.ID, r.TeamID, r.RecordUID, r.Trigger, r.Status, r.State, r.Attempt, nullInt(r.PendingVersion), nullInt(r.OldVersion),
		jsonObject(r.CandidateFields),
		boolInt(r.EffectStarted), r.ErrorCode, r.ErrorMessage, r.ExecLog, nanos(r.CreatedAt),
		nullNanos(r.StartedAt), nullNanos(r.FinishedAt), nanos(r.UpdatedAt), nullNanos(r.DueAt),
		r.LeaseNode, r.LeaseEpoch, nullNanos(r.LeaseUntil))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil || n != 1 {
		return false, err
	}
	return true, t.addRunState(ctx, r.ID, r.State, r.CreatedAt)
}

// UpdateRun stores a run's progress, fenced on its lease: it returns ErrLeaseLost, and the
// transaction must roll back, unless r.LeaseNode still holds the run at r.LeaseEpoch. A run
// that ends gives its lease up in the same statement.
func (t *Tx) UpdateRun(ctx context.Context, r Run) error {
	err := affectedOne(t.tx.ExecContext(ctx, `UPDATE rotation_runs SET status = $1, state = $2, attempt = $3,
		pending_version = $4, old_version = $5, effect_started = $6, error_code = $7, error_message = $8,
		exec_log = $9, started_at = $10, finished_at = $11, updated_at = $12, candidate_fields = $13,
		lease_until = CASE WHEN $1 IN ('queued', 'running') THEN lease_until END
		WHERE id = $14 AND lease_node = $15 AND lease_epoch = $16`,
		r.Status, r.State, r.Attempt, nullInt(r.PendingVersion), nullInt(r.OldVersion), boolInt(r.EffectStarted),
		r.ErrorCode, r.ErrorMessage, r.ExecLog, nullNanos(r.StartedAt), nullNanos(r.FinishedAt), nanos(r.UpdatedAt),
		jsonObject(r.CandidateFields), r.ID, r.LeaseNode, r.LeaseEpoch))
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("run %s at lease %s/%d: %w", r.ID, r.LeaseNode, r.LeaseEpoch, ErrLeaseLost)
	}
	if err != nil {
		return err
	}
	return t.addRunState(ctx, r.ID, r.State, r.UpdatedAt)
}

// RunState is a state a run committed, and when.
type RunState struct {
	State string
	At    time.Time
}

// addRunState appends state to the run's timeline unless it is the last state there.
func (t *Tx) addRunState(ctx context.Context, runID, state string, at time.Time) error {
	q := `INSERT INTO rotation_run_states (run_id, n, state, at)
		SELECT $1, COALESCE(MAX(n), 0) + 1, $2, $3 FROM rotation_run_states WHERE run_id = $1
		HAVING COALESCE((SELECT state FROM rotation_run_states WHERE run_id = $1 ORDER BY n DESC LIMIT 1), '') <> $2`
	if t.d.postgres { // PostgreSQL types the parameters of a SELECT list as text unless told
		q = `INSERT INTO rotation_run_states (run_id, n, state, at)
		SELECT $1, COALESCE(MAX(n), 0) + 1, $2::text, $3::bigint FROM rotation_run_states WHERE run_id = $1
		HAVING COALESCE((SELECT state FROM rotation_run_states WHERE run_id = $1 ORDER BY n DESC LIMIT 1), '') <> $2::text`
	}
	_, err := t.tx.ExecContext(ctx, q, runID, state, nanos(at))
	return err
}

// RunStates returns the states a run committed, in order.
func (r Reader) RunStates(ctx context.Context, runID string) ([]RunState, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT state, at FROM rotation_run_states WHERE run_id = $1 ORDER BY n`, runID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RunState
	for rows.Next() {
		var st RunState
		var at int64
		if err := rows.Scan(&st.State, &at); err != nil {
			return nil, err
		}
		st.At = fromNanos(at)
		out = append(out, st)
	}
	return out, rows.Err()
}

// Run returns a run of a team.
func (r Reader) Run(ctx context.Context, teamID int64, id string) (Run, error) {
	return scanRun(r.q.QueryRowContext(ctx, `SELECT `+runColumns+` FROM rotation_runs WHERE id = $1 AND team_id = $2`, id, teamID))
}

// ActiveRun returns a record's queued or running run.
func (r Reader) ActiveRun(ctx context.Context, uid string) (Run, error) {
	return scanRun(r.q.QueryRowContext(ctx,
		`SELECT `+runColumns+` FROM rotation_runs WHERE record_uid = $1 AND status IN ('queued', 'running')`, uid))
}

// LatestRun returns a record's newest run.
func (r Reader) LatestRun(ctx context.Context, uid string) (Run, error) {
	return scanRun(r.q.QueryRowContext(ctx,
		`SELECT `+runColumns+` FROM rotation_runs WHERE record_uid = $1 ORDER BY created_at DESC, id DESC LIMIT 1`, uid))
}

// UnfinishedRuns returns every queued or running run, oldest first.
func (r Reader) UnfinishedRuns(ctx context.Context) ([]Run, error) {
	return r.runs(ctx, `SELECT `+runColumns+` FROM rotation_runs WHERE status IN ('queued', 'running') ORDER BY created_at, id`)
}

// ListRuns returns a team's runs, newest first.
func (r Reader) ListRuns(ctx context.Context, f RunFilter) ([]Run, error) {
	q := `SELECT ` + prefixed("x.", runColumns) + ` FROM rotation_runs x JOIN records rec ON rec.uid = x.record_uid WHERE x.team_id = $1`
	args := []any{f.TeamID}
	if f.RecordUID != "" {
		args = append(args, f.RecordUID)
		q += ` AND x.record_uid = $` + strconv.Itoa(len(args))
	}
	if f.Status != "" {
		args = append(args, f.Status)
		q += ` AND x.status = $` + strconv.Itoa(len(args))
	}
	if len(f.Within) > 0 {
		cond, more := withinFolders("rec.folder", f.Within, len(args))
		args = append(args, more...)
		q += ` AND (` + cond + `)`
	}
	args = append(args, f.Limit, f.Offset)
	q += ` ORDER BY x.created_at DESC, x.id DESC LIMIT $` + strconv.Itoa(len(args)-1) + ` OFFSET $` + strconv.Itoa(len(args))
	return r.runs(ctx, q, args...)
}

func (r Reader) runs(ctx context.Context, q string, args ...any) ([]Run, error) {
	rows, err := r.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		run, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, run)
	}
	return out, rows.Err()
}

func nullInt(n int64) sql.NullInt64 { return sql.NullInt64{Int64: n, Valid: n != 0} }

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// RunByID returns a run of any team (for the engine's own use).
func (r Reader) RunByID(ctx context.Context, id string) (Run, error) {
	return scanRun(r.q.QueryRowContext(ctx, `SELECT `+runColumns+` FROM rotation_runs WHERE id = $1`, id))
}

func jsonObject(b []byte) string {
	if len(b) == 0 {
		return "{}"
	}
	return string(b)
}
