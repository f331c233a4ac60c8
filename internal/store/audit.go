package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// AuditEvent is one entry of the audit trail.
type AuditEvent struct {
	Seq       int64
	TeamID    int64
	Type      string
	Actor     string
	RecordUID string
	Details   []byte // JSON
	CreatedAt time.Time
	PrevHash  []byte
	Hash      []byte
}

// LastAuditHash returns the hash of the newest event (nil when there is none).
func (r Reader) LastAuditHash(ctx context.Context) ([]byte, error) {
	var h []byte
	err := r.q.QueryRowContext(ctx, `SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return h, err
}

// LastAuditHash returns the hash of the newest event (nil when there is none), for appending
// after it: from here until the transaction ends, no other transaction appends.
func (t *Tx) LastAuditHash(ctx context.Context) ([]byte, error) {
	if !t.d.postgres { // the single writer appends one transaction at a time
		return t.Reader.LastAuditHash(ctx)
	}
	_, hash, err := t.lockAudit(ctx)
	return hash, err
}

const auditColumns = `seq, team_id, type, actor, record_uid, details, created_at, prev_hash, hash`

// auditChunk is how many events one INSERT statement writes.
const auditChunk = 64

// InsertAuditEvents appends events in order, many rows per statement. Sequence numbers follow
// the newest event's without a gap. Read the chain's head with Tx.LastAuditHash first.
func (t *Tx) InsertAuditEvents(ctx context.Context, events []AuditEvent) error {
	// SQLite numbers rows itself (max(seq)+1: its single writer appends one transaction at a
	// time). On PostgreSQL the store numbers them from the chain's head, which it holds, and
	// moves the head in the same statement; a sequence would leave gaps on rollback and hand
	// out numbers in an order other than commit order.
	var next int64
	if t.d.postgres {
		var err error
		if next, _, err = t.lockAudit(ctx); err != nil {
			return err
		}
	}
	for len(events) > 0 {
		n := min(len(events), auditChunk)
		var q strings.Builder
		if t.d.postgres {
			q.WriteString(`WITH appended AS (`)
		}
		q.WriteString(`INSERT INTO audit_events (team_id, type, actor, record_uid, details, created_at, prev_hash, hash`)
		width := 8
		if t.d.postgres {
			q.WriteString(`, seq`)
			width = 9
		}
		q.WriteString(`) VALUES `)
		args := make([]any, 0, n*width+2)
		for i, e := range events[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			b := len(args)
			fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d", b+1, b+2, b+3, b+4, b+5, b+6, b+7, b+8)
			args = append(args, e.TeamID, e.Type, e.Actor, e.RecordUID, string(e.Details), nanos(e.CreatedAt), e.PrevHash, e.Hash)
			if t.d.postgres {
				next++
				fmt.Fprintf(&q, ", $%d", b+9)
				args = append(args, next)
			}
			q.WriteString(")")
		}
		if t.d.postgres {
			last := events[n-1].Hash
			args = append(args, next, last)
			fmt.Fprintf(&q, `) UPDATE audit_head SET seq = $%d, hash = $%d WHERE id = 1`, len(args)-1, len(args))
			t.auditHead = &auditHead{next, last}
		}
		if _, err := t.tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}

// AuditEvents returns a team's events after seq, oldest first.
func (r Reader) AuditEvents(ctx context.Context, teamID, after int64, limit int) ([]AuditEvent, error) {
	return r.auditEvents(ctx, `SELECT `+auditColumns+` FROM audit_events
		WHERE team_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, teamID, after, limit)
}

// AuditEventsWithin returns a team's events after seq, oldest first, that a caller limited to
// folders may see: those naming a record that is in or below one of the folders now. With no
// folders, every event of the team.
func (r Reader) AuditEventsWithin(ctx context.Context, teamID int64, folders []string, after int64, limit int) ([]AuditEvent, error) {
	if len(folders) == 0 {
		return r.AuditEvents(ctx, teamID, after, limit)
	}
	cond, args := withinFolders("r.folder", folders, 3)
	args = append([]any{teamID, after, limit}, args...)
	return r.auditEvents(ctx, `SELECT `+prefixed("e.", auditColumns)+` FROM audit_events e
		WHERE e.team_id = $1 AND e.seq > $2 AND EXISTS (SELECT 1 FROM records r
			WHERE r.uid = e.record_uid AND r.team_id = e.team_id AND (`+cond+`))
		ORDER BY e.seq LIMIT $3`, args...)
}

// AllAuditEvents returns every event after seq, across teams, for verifying the chain.
func (r Reader) AllAuditEvents(ctx context.Context, after int64, limit int) ([]AuditEvent, error) {
	return r.auditEvents(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
}

func (r Reader) auditEvents(ctx context.Context, q string, args ...any) ([]AuditEvent, error) {
	rows, err := r.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		var e AuditEvent
		var details string
		var created int64
		if err := rows.Scan(&e.Seq, &e.TeamID, &e.Type, &e.Actor, &e.RecordUID, &details, &created, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		e.Details, e.CreatedAt = []byte(details), fromNanos(created)
		out = append(out, e)
	}
	return out, rows.Err()
}

// AuditSinkCursor returns the sequence number of the last event a sink acknowledged (0 when
// it has none yet).
func (r Reader) AuditSinkCursor(ctx context.Context, name string) (int64, error) {
	var seq int64
	err := r.q.QueryRowContext(ctx, `SELECT seq FROM audit_sink_cursors WHERE name = $1`, name).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

// SetAuditSinkCursor records that a sink acknowledged every event up to seq. It is not
// fenced by the sink's export lease (see AdvanceAuditSinkCursor, which the Forwarder uses).
func (t *Tx) SetAuditSinkCursor(ctx context.Context, name string, seq int64, now time.Time) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO audit_sink_cursors (name, seq, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at`, name, seq, nanos(now))
	return err
}

// TeamNames returns every team's name by id.
func (r Reader) TeamNames(ctx context.Context) (map[int64]string, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT id, name FROM teams`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, err
		}
		out[id] = name
	}
	return out, rows.Err()
}

// MaxAuditSinkCursor returns the highest sequence number any audit sink acknowledged (0 when
// none did): the trail held at least that many events when it was sent.
func (r Reader) MaxAuditSinkCursor(ctx context.Context) (int64, error) {
	var seq int64
	err := r.q.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_sink_cursors`).Scan(&seq)
	return seq, err
}
