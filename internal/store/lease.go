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

// Leases share rotation runs between the nodes of one database without a leader. A node claims
// free runs (ClaimRuns) and holds each until a deadline it renews while it works (RenewLeases).
// Each claim adds one to the run's lease epoch, and every write of the run is fenced on its
// node and epoch (UpdateRun), so once another node has claimed a run its former holder can no
// longer commit anything for it. Deadlines are kept by the database's clock, so that the nodes'
// clocks need not agree.

// ErrLeaseLost is returned when a node writes a run it no longer holds: another node claimed
// it after its lease expired.
var ErrLeaseLost = errors.New("store: the run's lease was lost to another node")

// Lease is a node's hold on a run: the claim's epoch fences every write of the run.
type Lease struct {
	RunID string
	Epoch int64
}

// LeaseDeadline returns the database's time now plus ttl: the lease_until of a run claimed in
// this transaction.
func (t *Tx) LeaseDeadline(ctx context.Context, ttl time.Duration) (time.Time, error) {
	now, err := t.clock(ctx)
	if err != nil {
		return time.Time{}, err
	}
	return fromNanos(now + int64(ttl)), nil
}

// clock returns the database's time in unix nanoseconds: PostgreSQL's on PostgreSQL, where
// nodes on several machines compare deadlines; this machine's on SQLite, which has one.
func (r Reader) clock(ctx context.Context) (int64, error) {
	if !r.d.postgres {
		return time.Now().UnixNano(), nil
	}
	var now int64
	err := r.q.QueryRowContext(ctx, `SELECT (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint`).Scan(&now)
	if err != nil {
		return 0, fmt.Errorf("read the database's clock: %w", err)
	}
	return now, nil
}

// skipLocked makes a claiming read pass over rows another transaction is claiming (PostgreSQL;
// SQLite's single writer has no such rows).
func (r Reader) skipLocked() string {
	if r.d.postgres {
		return " FOR UPDATE SKIP LOCKED"
	}
	return ""
}

// ClaimRuns gives node up to n unfinished runs that nobody holds or whose lease has expired,
// oldest first, each until ttl from now, and returns their leases.
func (db *DB) ClaimRuns(ctx context.Context, node string, n int, ttl time.Duration) ([]Lease, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []Lease
	err := db.leaseTx(ctx, func(tx *Tx) error {
		now, err := tx.clock(ctx)
		if err != nil {
			return err
		}
		out, err = tx.leases(ctx, `UPDATE rotation_runs SET lease_node = $1, lease_epoch = lease_epoch + 1, lease_until = $2
			WHERE id IN (SELECT id FROM rotation_runs WHERE status IN ('queued', 'running')
				AND (lease_until IS NULL OR lease_until < $3) ORDER BY created_at, id LIMIT $4`+tx.skipLocked()+`)
			RETURNING id, lease_epoch`, node, now+int64(ttl), now, n)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim rotation runs: %w", err)
	}
	return out, nil
}

// TakeOverRuns claims again, for ttl, every unfinished run that node holds: a node starting
// holds nothing yet, so what its name holds was left by its previous process. The caller makes
// sure no other live process has its name (the data directory's lock on SQLite, the node's
// advisory lock on PostgreSQL).
func (db *DB) TakeOverRuns(ctx context.Context, node string, ttl time.Duration) ([]Lease, error) {
	var out []Lease
	err := db.leaseTx(ctx, func(tx *Tx) error {
		now, err := tx.clock(ctx)
		if err != nil {
			return err
		}
		out, err = tx.leases(ctx, `UPDATE rotation_runs SET lease_epoch = lease_epoch + 1, lease_until = $1
			WHERE lease_node = $2 AND status IN ('queued', 'running') RETURNING id, lease_epoch`, now+int64(ttl), node)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("take over the rotation runs of node %s: %w", node, err)
	}
	return out, nil
}

// RenewLeases moves the deadline of node's leases to ttl from now and returns those it no
// longer holds: ended, or claimed by another node since.
func (db *DB) RenewLeases(ctx context.Context, node string, leases []Lease, ttl time.Duration) (lost []Lease, err error) {
	err = db.leaseTx(ctx, func(tx *Tx) error {
		lost = lost[:0]
		now, err := tx.clock(ctx)
		if err != nil {
			return err
		}
		for _, l := range leases {
			err := affectedOne(tx.tx.ExecContext(ctx, `UPDATE rotation_runs SET lease_until = $1
				WHERE id = $2 AND lease_node = $3 AND lease_epoch = $4 AND status IN ('queued', 'running')`,
				now+int64(ttl), l.RunID, node, l.Epoch))
			if errors.Is(err, ErrNotFound) {
				lost = append(lost, l)
			} else if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("renew rotation leases: %w", err)
	}
	return lost, nil
}

// ReleaseLeases gives up node's leases, so that another node may claim those runs at once (a
// node stopping releases the runs it leaves unfinished).
func (db *DB) ReleaseLeases(ctx context.Context, node string, leases []Lease) error {
	if len(leases) == 0 {
		return nil
	}
	args := []any{node}
	var cond []string
	for _, l := range leases {
		args = append(args, l.RunID, l.Epoch)
		cond = append(cond, "(id = $"+strconv.Itoa(len(args)-1)+" AND lease_epoch = $"+strconv.Itoa(len(args))+")")
	}
	err := db.leaseTx(ctx, func(tx *Tx) error {
		_, err := tx.tx.ExecContext(ctx, `UPDATE rotation_runs SET lease_until = NULL
			WHERE lease_node = $1 AND status IN ('queued', 'running') AND (`+strings.Join(cond, " OR ")+`)`, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("release rotation leases: %w", err)
	}
	return nil
}

func (t *Tx) leases(ctx context.Context, q string, args ...any) ([]Lease, error) {
	rows, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		if err := rows.Scan(&l.RunID, &l.Epoch); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// CheckLease returns ErrLeaseLost unless node holds the run at epoch. On PostgreSQL it keeps
// the run from being claimed until the transaction ends.
func (t *Tx) CheckLease(ctx context.Context, runID, node string, epoch int64) error {
	lock := ""
	if t.d.postgres {
		lock = " FOR SHARE"
	}
	var one int
	err := t.tx.QueryRowContext(ctx, `SELECT 1 FROM rotation_runs WHERE id = $1 AND lease_node = $2 AND lease_epoch = $3
		AND status IN ('queued', 'running')`+lock, runID, node, epoch).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("run %s at lease %s/%d: %w", runID, node, epoch, ErrLeaseLost)
	}
	return err
}
