package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// An audit sink's export lease goes to one holder at a time; another takes it only once it has
// run out or been released, with a higher epoch; and a holder that lost it can neither renew it
// nor move the cursor, which stays where the new holder put it. On both engines.
func TestAuditSinkLeaseFencesTheCursor(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			var db *DB
			if engine == "sqlite" {
				db, _ = openTestDB(t)
			} else {
				db = openPostgresTestDB(t)
			}
			ctx := context.Background()
			take := func(holder string, now time.Time) (l AuditSinkLease, ok bool) {
				t.Helper()
				mustTx(t, db, func(tx *Tx) (err error) {
					l, ok, err = tx.TakeAuditSinkLease(ctx, "siem", holder, now, now.Add(10*time.Second))
					return err
				})
				return l, ok
			}
			write := func(fn func(tx *Tx) error) error { return db.Tx(ctx, fn) }
			cursor := func() int64 {
				t.Helper()
				seq, err := db.AuditSinkCursor(ctx, "siem")
				if err != nil {
					t.Fatal(err)
				}
				return seq
			}

			a, ok := take("node-a", t0)
			if !ok || a.Epoch != 1 || a.Seq != 0 {
				t.Fatalf("the first take: %+v %v", a, ok)
			}
			if _, ok := take("node-b", t0.Add(5*time.Second)); ok {
				t.Fatal("node-b took a lease that runs for 5 s more")
			}
			if err := write(func(tx *Tx) error { return tx.AdvanceAuditSinkCursor(ctx, a, 5, t0, t0.Add(10*time.Second)) }); err != nil {
				t.Fatal(err)
			}
			// node-a is paused past its lease; node-b takes over from the cursor.
			b, ok := take("node-b", t0.Add(11*time.Second))
			if !ok || b.Epoch != 2 || b.Seq != 5 {
				t.Fatalf("the take-over: %+v %v", b, ok)
			}
			if err := write(func(tx *Tx) error { return tx.AdvanceAuditSinkCursor(ctx, b, 9, t0, t0.Add(21*time.Second)) }); err != nil {
				t.Fatal(err)
			}
			// node-a resumes: its writes are refused, and the cursor is node-b's.
			if err := write(func(tx *Tx) error { return tx.RenewAuditSinkLease(ctx, a, t0.Add(30*time.Second)) }); !errors.Is(err, ErrSinkLeaseLost) {
				t.Fatalf("the lost holder renewed: %v", err)
			}
			for _, seq := range []int64{7, 12} { // back, or on
				if err := write(func(tx *Tx) error { return tx.AdvanceAuditSinkCursor(ctx, a, seq, t0, t0.Add(30*time.Second)) }); !errors.Is(err, ErrSinkLeaseLost) {
					t.Fatalf("the lost holder moved the cursor to %d: %v", seq, err)
				}
			}
			if err := write(func(tx *Tx) error { return tx.ReleaseAuditSinkLease(ctx, a) }); err != nil {
				t.Fatal(err)
			}
			if got := cursor(); got != 9 {
				t.Fatalf("the cursor is %d, want node-b's 9", got)
			}
			if holder, epoch, running, err := db.AuditSinkHolder(ctx, "siem", t0.Add(12*time.Second)); err != nil || holder != "node-b" || epoch != 2 || !running {
				t.Fatalf("after the lost holder's writes: %q epoch %d running %v (%v)", holder, epoch, running, err)
			}
			// The holder's own cursor never moves back either.
			if err := write(func(tx *Tx) error { return tx.AdvanceAuditSinkCursor(ctx, b, 3, t0, t0.Add(21*time.Second)) }); err != nil {
				t.Fatal(err)
			}
			if got := cursor(); got != 9 {
				t.Fatalf("the cursor moved back to %d", got)
			}
			// A release hands the sink over at once.
			if err := write(func(tx *Tx) error { return tx.ReleaseAuditSinkLease(ctx, b) }); err != nil {
				t.Fatal(err)
			}
			if a, ok = take("node-a", t0.Add(12*time.Second)); !ok || a.Epoch != 3 || a.Seq != 9 {
				t.Fatalf("after the release: %+v %v", a, ok)
			}
		})
	}
}
