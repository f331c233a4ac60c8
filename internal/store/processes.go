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
}

// SetScriptProcess records the process of the script a run is starting, replacing the one
// before.
func (t *Tx) SetScriptProcess(ctx context.Context, p ScriptProcess, now time.Time) error {
	_, err := t.tx.ExecContext(ctx,
		`INSERT INTO script_processes (run_id, pid, start, boot_id, updated_at) VALUES ($1, $2, $3, $4, $5)
		 ON CONFLICT (run_id) DO UPDATE SET pid = excluded.pid, start = excluded.start, boot_id = excluded.boot_id,
		   updated_at = excluded.updated_at`,
		p.RunID, p.PID, int64(p.Start), p.Boot, nanos(now))
	return err
}

// ScriptProcess returns the process of the script a run started last; ok is false when the
// run started none.
func (r Reader) ScriptProcess(ctx context.Context, runID string) (p ScriptProcess, ok bool, err error) {
	var start int64
	err = r.q.QueryRowContext(ctx, `SELECT run_id, pid, start, boot_id FROM script_processes WHERE run_id = $1`, runID).
		Scan(&p.RunID, &p.PID, &start, &p.Boot)
	if errors.Is(err, sql.ErrNoRows) {
		return ScriptProcess{}, false, nil
	}
	if err != nil {
		return ScriptProcess{}, false, err
	}
	p.Start = uint64(start)
	return p, true, nil
}
