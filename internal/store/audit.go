package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
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
	// The team's own chain: the event's place in it (1, 2, 3, … per team, without a gap),
	// the team hash before it and its own. Read the team's head with Tx.TeamAuditHeads first.
	TeamSeq      int64
	TeamPrevHash []byte
	TeamHash     []byte
}

// ChainHead is where a chain ends: its newest event's sequence number and hash (0 and nil
// when the chain has no event).
type ChainHead struct {
	Seq  int64
	Hash []byte
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

// LastAuditSeq returns the sequence number of the newest event (0 when there is none).
func (r Reader) LastAuditSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := r.q.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_events`).Scan(&seq)
	return seq, err
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

const auditColumns = `seq, team_id, type, actor, record_uid, details, created_at, prev_hash, hash, team_seq, team_prev_hash, team_hash`

// TeamAuditHeads returns the head of each team's chain (a team without events is left out),
// for appending after them. On PostgreSQL it first makes the transaction the only appender
// (as LastAuditHash does) and locks the heads until the transaction ends: a transaction that
// waited reads them as the one before it committed them.
func (t *Tx) TeamAuditHeads(ctx context.Context, teamIDs ...int64) (map[int64]ChainHead, error) {
	if t.d.postgres {
		if _, _, err := t.lockAudit(ctx); err != nil {
			return nil, err
		}
	}
	return t.teamAuditHeads(ctx, t.forUpdate(), teamIDs)
}

// AuditHeads returns what LastAuditHash and TeamAuditHeads return, for appending after them:
// the hash of the vault-wide chain's newest event (nil when there is none) and the head of
// each team's chain (a team without events is left out). On PostgreSQL one statement makes
// the transaction the only appender and locks the teams' heads, in that order, as the two
// calls would, and reads what the transaction before it committed: the round trip saved is
// one fewer while the chain is held.
func (t *Tx) AuditHeads(ctx context.Context, teamIDs ...int64) ([]byte, map[int64]ChainHead, error) {
	if !t.d.postgres || t.auditHead != nil || len(teamIDs) == 0 {
		prev, err := t.LastAuditHash(ctx)
		if err != nil {
			return nil, nil, err
		}
		heads, err := t.TeamAuditHeads(ctx, teamIDs...)
		return prev, heads, err
	}
	// FOR UPDATE locks the vault head, then each team's, in team order (the sort comes before
	// the locks); a row that another transaction changed while this one waited for it is read
	// again as committed, and the rest of the row with it.
	var q strings.Builder
	q.WriteString(`SELECT h.seq, h.hash, t.team_id, t.seq, t.hash FROM audit_head h JOIN audit_team_heads t ON t.team_id IN (`)
	args := make([]any, len(teamIDs))
	for i, id := range teamIDs {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "$%d", i+1)
		args[i] = id
	}
	q.WriteString(`) WHERE h.id = 1 ORDER BY t.team_id FOR UPDATE`)
	rows, err := t.tx.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, nil, fmt.Errorf("lock the audit chain: %w", err)
	}
	heads := make(map[int64]ChainHead, len(teamIDs))
	for rows.Next() {
		var vault auditHead
		var id int64
		var h ChainHead
		if err := rows.Scan(&vault.seq, &vault.hash, &id, &h.Seq, &h.Hash); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("lock the audit chain: %w", err)
		}
		if vault.seq == 0 {
			vault.hash = nil
		}
		t.auditHead, heads[id] = &vault, h
	}
	if err := rows.Close(); err != nil {
		return nil, nil, fmt.Errorf("lock the audit chain: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("lock the audit chain: %w", err)
	}
	if len(heads) == len(teamIDs) {
		return t.auditHead.hash, heads, nil
	}
	// A team without a head yet (its first event), which a join cannot lock: hold the chain,
	// give the team an empty head, and read the heads again, now that no one else appends.
	prev, err := t.LastAuditHash(ctx)
	if err != nil {
		return nil, nil, err
	}
	var ins strings.Builder
	ins.WriteString(`INSERT INTO audit_team_heads (team_id, seq, hash) VALUES `)
	for i := range teamIDs {
		if i > 0 {
			ins.WriteString(", ")
		}
		fmt.Fprintf(&ins, "($%d, 0, '')", i+1)
	}
	ins.WriteString(` ON CONFLICT (team_id) DO NOTHING`)
	if _, err := t.tx.ExecContext(ctx, ins.String(), args...); err != nil {
		return nil, nil, fmt.Errorf("start the teams' audit heads: %w", err)
	}
	heads, err = t.TeamAuditHeads(ctx, teamIDs...)
	return prev, heads, err
}

// TeamAuditHead returns the head of a team's chain as the store holds it (Seq 0 when the
// team has no event), for verifying the chain.
func (r Reader) TeamAuditHead(ctx context.Context, teamID int64) (ChainHead, error) {
	heads, err := r.teamAuditHeads(ctx, "", []int64{teamID})
	return heads[teamID], err
}

func (r Reader) teamAuditHeads(ctx context.Context, lock string, teamIDs []int64) (map[int64]ChainHead, error) {
	heads := make(map[int64]ChainHead, len(teamIDs))
	if len(teamIDs) == 0 {
		return heads, nil
	}
	var q strings.Builder
	q.WriteString(`SELECT team_id, seq, hash FROM audit_team_heads WHERE team_id IN (`)
	args := make([]any, len(teamIDs))
	for i, id := range teamIDs {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "$%d", i+1)
		args[i] = id
	}
	q.WriteString(`) ORDER BY team_id` + lock)
	rows, err := r.q.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("read the teams' audit heads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var h ChainHead
		if err := rows.Scan(&id, &h.Seq, &h.Hash); err != nil {
			return nil, fmt.Errorf("read the teams' audit heads: %w", err)
		}
		heads[id] = h
	}
	return heads, rows.Err()
}

// auditChunk is how many events one INSERT statement writes.
const auditChunk = 64

// InsertAuditEvents appends events in order, many rows per statement. Sequence numbers follow
// the newest event's without a gap. Read the chain's head and the heads of the events' teams
// first (Tx.AuditHeads, or Tx.LastAuditHash and Tx.TeamAuditHeads), and number and chain each team's events
// after its head (TeamSeq, TeamPrevHash, TeamHash): the heads move to each team's last event
// in the same transaction.
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
	heads := teamHeadsAfter(events)
	for len(events) > 0 {
		n := min(len(events), auditChunk)
		lastChunk := n == len(events)
		var q strings.Builder
		if t.d.postgres {
			q.WriteString(`WITH appended AS (`)
		}
		q.WriteString(`INSERT INTO audit_events (team_id, type, actor, record_uid, details, created_at, prev_hash, hash, team_seq, team_prev_hash, team_hash`)
		width := 11
		if t.d.postgres {
			q.WriteString(`, seq`)
			width = 12
		}
		q.WriteString(`) VALUES `)
		args := make([]any, 0, n*width+3*len(heads)+2)
		for i, e := range events[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(")
			row := []any{e.TeamID, e.Type, e.Actor, e.RecordUID, string(e.Details), nanos(e.CreatedAt), e.PrevHash, e.Hash,
				e.TeamSeq, nonEmpty(e.TeamPrevHash), e.TeamHash}
			if t.d.postgres {
				next++
				row = append(row, next)
			}
			for k, v := range row {
				if k > 0 {
					q.WriteString(", ")
				}
				args = append(args, v)
				fmt.Fprintf(&q, "$%d", len(args))
			}
			q.WriteString(")")
		}
		if t.d.postgres {
			q.WriteString(`)`)
			if lastChunk {
				q.WriteString(`, team_heads AS (`)
				args = upsertTeamHeads(&q, args, heads)
				q.WriteString(`)`)
			}
			last := events[n-1].Hash
			args = append(args, next, last)
			fmt.Fprintf(&q, ` UPDATE audit_head SET seq = $%d, hash = $%d WHERE id = 1`, len(args)-1, len(args))
			t.auditHead = &auditHead{next, last}
		}
		if _, err := t.tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
		events = events[n:]
	}
	if !t.d.postgres && len(heads) > 0 {
		var q strings.Builder
		args := upsertTeamHeads(&q, nil, heads)
		if _, err := t.tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("move the teams' audit heads: %w", err)
		}
	}
	return nil
}

// teamHead is a team's chain head after an append.
type teamHead struct {
	team int64
	ChainHead
}

// teamHeadsAfter returns each team's last event of events, in the order the teams first
// appear.
func teamHeadsAfter(events []AuditEvent) []teamHead {
	var heads []teamHead
	index := map[int64]int{}
	for _, e := range events {
		i, ok := index[e.TeamID]
		if !ok {
			i = len(heads)
			index[e.TeamID] = i
			heads = append(heads, teamHead{team: e.TeamID})
		}
		heads[i].ChainHead = ChainHead{Seq: e.TeamSeq, Hash: e.TeamHash}
	}
	return heads
}

// upsertTeamHeads writes the statement that sets the heads to q, its arguments after args.
func upsertTeamHeads(q *strings.Builder, args []any, heads []teamHead) []any {
	q.WriteString(`INSERT INTO audit_team_heads (team_id, seq, hash) VALUES `)
	for i, h := range heads {
		if i > 0 {
			q.WriteString(", ")
		}
		args = append(args, h.team, h.Seq, h.Hash)
		fmt.Fprintf(q, "($%d, $%d, $%d)", len(args)-2, len(args)-1, len(args))
	}
	q.WriteString(` ON CONFLICT (team_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`)
	return args
}

// nonEmpty is b, or an empty slice for nil: the hash columns are NOT NULL.
func nonEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
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

// AuditFilter narrows a team's events for AuditEventsPage; zero fields do not filter.
type AuditFilter struct {
	Folders   []string  // only events naming a record in or below one of these folders (see AuditEventsWithin)
	Before    int64     // only events with seq below it (the next page's cursor)
	Type      string    // only events of this type
	RecordUID string    // only events naming this record
	Actor     string    // only events of this actor (the service user's name)
	Since     time.Time // only events created at or after it
	Until     time.Time // only events created before it
	Limit     int
}

// AuditEventsPage returns a team's events that the filter lets through, newest first. The
// folder condition is AuditEventsWithin's.
func (r Reader) AuditEventsPage(ctx context.Context, teamID int64, f AuditFilter) ([]AuditEvent, error) {
	args := []any{teamID, f.Limit}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := []string{"e.team_id = $1"}
	if f.Before > 0 {
		where = append(where, "e.seq < "+arg(f.Before))
	}
	if f.Type != "" {
		where = append(where, "e.type = "+arg(f.Type))
	}
	if f.RecordUID != "" {
		where = append(where, "e.record_uid = "+arg(f.RecordUID))
	}
	if f.Actor != "" {
		where = append(where, "e.actor = "+arg(f.Actor))
	}
	if !f.Since.IsZero() {
		where = append(where, "e.created_at >= "+arg(nanos(f.Since)))
	}
	if !f.Until.IsZero() {
		where = append(where, "e.created_at < "+arg(nanos(f.Until)))
	}
	if len(f.Folders) > 0 {
		cond, fargs := withinFolders("r.folder", f.Folders, len(args))
		args = append(args, fargs...)
		where = append(where, `EXISTS (SELECT 1 FROM records r
			WHERE r.uid = e.record_uid AND r.team_id = e.team_id AND (`+cond+`))`)
	}
	return r.auditEvents(ctx, `SELECT `+prefixed("e.", auditColumns)+` FROM audit_events e
		WHERE `+strings.Join(where, " AND ")+` ORDER BY e.seq DESC LIMIT $2`, args...)
}

// TeamAuditEvents returns a team's events after teamSeq in the team's own chain, in team_seq
// order, for verifying the chain.
func (r Reader) TeamAuditEvents(ctx context.Context, teamID, afterTeamSeq int64, limit int) ([]AuditEvent, error) {
	return r.auditEvents(ctx, `SELECT `+auditColumns+` FROM audit_events
		WHERE team_id = $1 AND team_seq > $2 ORDER BY team_seq LIMIT $3`, teamID, afterTeamSeq, limit)
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
		if err := rows.Scan(&e.Seq, &e.TeamID, &e.Type, &e.Actor, &e.RecordUID, &details, &created, &e.PrevHash, &e.Hash,
			&e.TeamSeq, &e.TeamPrevHash, &e.TeamHash); err != nil {
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
