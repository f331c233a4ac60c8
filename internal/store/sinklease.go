package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// ErrSinkLeaseLost is returned by an audit sink exporter's fenced write when the sink's lease
// is no longer its own: another holder took it over (a higher epoch) since.
var ErrSinkLeaseLost = errors.New("store: the audit sink's export lease was taken over by another node")

// AuditSinkLease is a node's hold on exporting to one audit sink. Epoch is the fencing token:
// every take of the lease gives a higher one, and the holder's writes name it, so a holder
// whose lease another node took over (a pause, a lost network) can no longer write.
type AuditSinkLease struct {
	Name   string
	Holder string
	Epoch  int64
	Seq    int64 // the sink's cursor: the last event it acknowledged, when the lease was taken
}

// TakeAuditSinkLease makes holder the one exporter to the sink until until, unless another
// holder's lease is still running at now; ok is false then. A holder takes its own lease
// again at any time (with a new epoch). A sink not seen before starts at cursor 0.
func (t *Tx) TakeAuditSinkLease(ctx context.Context, name, holder string, now, until time.Time) (l AuditSinkLease, ok bool, err error) {
	err = t.tx.QueryRowContext(ctx, `INSERT INTO audit_sink_cursors AS c (name, seq, updated_at, holder, epoch, lease_until)
		VALUES ($1, 0, $2, $3, 1, $4)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = c.epoch + 1, lease_until = excluded.lease_until
		WHERE c.lease_until <= $2 OR c.holder = excluded.holder
		RETURNING epoch, seq`, name, nanos(now), holder, nanos(until)).Scan(&l.Epoch, &l.Seq)
	if errors.Is(err, sql.ErrNoRows) {
		return AuditSinkLease{}, false, nil
	}
	if err != nil {
		return AuditSinkLease{}, false, err
	}
	l.Name, l.Holder = name, holder
	return l, true, nil
}

// RenewAuditSinkLease extends l until until; ErrSinkLeaseLost when another holder took it over.
func (t *Tx) RenewAuditSinkLease(ctx context.Context, l AuditSinkLease, until time.Time) error {
	return leaseWrite(t.tx.ExecContext(ctx, `UPDATE audit_sink_cursors SET lease_until = $4
		WHERE name = $1 AND holder = $2 AND epoch = $3`, l.Name, l.Holder, l.Epoch, nanos(until)))
}

// AdvanceAuditSinkCursor records, under l, that the sink acknowledged every event up to seq,
// and extends l until until. It is fenced: ErrSinkLeaseLost, and the cursor unmoved, when another
// holder took the lease over; and the cursor never moves back.
func (t *Tx) AdvanceAuditSinkCursor(ctx context.Context, l AuditSinkLease, seq int64, now, until time.Time) error {
	return leaseWrite(t.tx.ExecContext(ctx, `UPDATE audit_sink_cursors
		SET seq = CASE WHEN seq < $4 THEN $4 ELSE seq END, updated_at = $5, lease_until = $6
		WHERE name = $1 AND holder = $2 AND epoch = $3`, l.Name, l.Holder, l.Epoch, seq, nanos(now), nanos(until)))
}

// ReleaseAuditSinkLease ends l at once, so another node takes the sink over without waiting
// for the lease to run out; nothing happens when l was taken over already.
func (t *Tx) ReleaseAuditSinkLease(ctx context.Context, l AuditSinkLease) error {
	_, err := t.tx.ExecContext(ctx, `UPDATE audit_sink_cursors SET lease_until = 0
		WHERE name = $1 AND holder = $2 AND epoch = $3`, l.Name, l.Holder, l.Epoch)
	return err
}

// AuditSinkHolder returns who holds the sink's export lease and its epoch ("" and 0 when
// nobody ever took it), and whether it runs at now.
func (r Reader) AuditSinkHolder(ctx context.Context, name string, now time.Time) (holder string, epoch int64, running bool, err error) {
	var until int64
	err = r.q.QueryRowContext(ctx, `SELECT holder, epoch, lease_until FROM audit_sink_cursors WHERE name = $1`, name).Scan(&holder, &epoch, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, false, nil
	}
	return holder, epoch, until > nanos(now), err
}

// leaseWrite turns a fenced write that changed no row into ErrSinkLeaseLost.
func leaseWrite(res sql.Result, err error) error {
	err = affectedOne(res, err)
	if errors.Is(err, ErrNotFound) {
		return ErrSinkLeaseLost
	}
	return err
}
