package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// ScriptProcess is the process of the script a run started last.
type ScriptProcess struct {
	RunID string
	PID   int
	Start uint64 // clock ticks since boot
	Boot  string // the kernel's boot id
	// EndsBy is when the script is sure to have ended (its start and its time limit); zero
	// when unknown.
	EndsBy time.Time
}

// SetScriptProcess records the process of the script a run is starting, replacing the one
// before.
func (t *Tx) SetScriptProcess(ctx context.Context, p ScriptProcess, now time.Time) error {
	_, err := t.tx.ExecContext(ctx,
		`INSERT INTO script_processes (run_id, pid, start, boot_id, updated_at, ends_by) VALUES ($1, $2, $3, $4, $5, $6)
		 ON CONFLICT (run_id) DO UPDATE SET pid = excluded.pid, start = excluded.start, boot_id = excluded.boot_id,
		   updated_at = excluded.updated_at, ends_by = excluded.ends_by`,
		p.RunID, p.PID, int64(p.Start), p.Boot, nanos(now), nanosOrZero(p.EndsBy))
	return err
}

// ScriptProcess returns the process of the script a run started last; ok is false when the
// run started none.
func (r Reader) ScriptProcess(ctx context.Context, runID string) (p ScriptProcess, ok bool, err error) {
	var start, endsBy int64
	err = r.q.QueryRowContext(ctx, `SELECT run_id, pid, start, boot_id, ends_by FROM script_processes WHERE run_id = $1`, runID).
		Scan(&p.RunID, &p.PID, &start, &p.Boot, &endsBy)
	if errors.Is(err, sql.ErrNoRows) {
		return ScriptProcess{}, false, nil
	}
	if err != nil {
		return ScriptProcess{}, false, err
	}
	p.Start = uint64(start)
	if endsBy != 0 {
		p.EndsBy = fromNanos(endsBy)
	}
	return p, true, nil
}

// nanosOrZero is nanos, with the zero time as 0.
func nanosOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return nanos(t)
}
