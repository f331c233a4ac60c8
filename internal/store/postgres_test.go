package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// Two transactions that lock the same two things in opposite orders (a row, then the audit
// chain; the chain, then the row) deadlock on PostgreSQL, which aborts one of them: Tx runs
// that one again, and both commit, with the chain intact. (SQLite's single writer never
// runs two transactions at once, so this is PostgreSQL's alone.)
func TestPostgresDeadlockIsRetried(t *testing.T) {
	db := openPostgresTestDB(t)
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	mustInsert(t, db, testRecord(team.ID, "r", "pamUser", "r", ""))
	mustTx(t, db, func(tx *Tx) error {
		return tx.SaveRotationSettings(ctx, RotationSettings{RecordUID: "r", TeamID: team.ID, Settings: []byte(`{}`), Revision: 1, UpdatedAt: t0})
	})
	settings := func(tx *Tx, _ string) error { return tx.SetNextRun(ctx, "r", nil) } // locks the row
	firstHasRow, secondHasChain := make(chan struct{}), make(chan struct{})
	var once1, once2 sync.Once
	var runs1, runs2 atomic.Int64
	errs := make(chan error, 2)
	go func() {
		errs <- db.Tx(ctx, func(tx *Tx) error {
			runs1.Add(1)
			if err := settings(tx, `{"by":1}`); err != nil {
				return err
			}
			once1.Do(func() { close(firstHasRow) })
			<-secondHasChain
			return appendAudit(ctx, tx, auditEvent(team.ID, `{"by":1}`))
		})
	}()
	go func() {
		<-firstHasRow
		errs <- db.Tx(ctx, func(tx *Tx) error {
			runs2.Add(1)
			if err := appendAudit(ctx, tx, auditEvent(team.ID, `{"by":2}`)); err != nil {
				return err
			}
			once2.Do(func() { close(secondHasChain) })
			return settings(tx, `{"by":2}`)
		})
	}()
	if err := errors.Join(<-errs, <-errs); err != nil {
		t.Fatalf("a transaction failed: %v", err)
	}
	if runs1.Load()+runs2.Load() < 3 {
		t.Fatalf("the transactions ran %d and %d times: no deadlock, so this test tests nothing", runs1.Load(), runs2.Load())
	}
	events, err := db.AllAuditEvents(ctx, 0, 10)
	if err != nil || len(events) != 2 || events[0].Seq != 1 || events[1].Seq != 2 || string(events[1].PrevHash) != string(events[0].Hash) {
		t.Fatalf("audit trail after the deadlock: %+v, %v", events, err)
	}
}

// A transaction whose database session ends before it commits (PostgreSQL ended it, as it
// does for a process paused in a transaction past IdleInTransactionTimeout) committed
// nothing, and is run again on another connection: it commits once.
func TestPostgresTxRunsAgainWhenItsSessionEnds(t *testing.T) {
	db := openPostgresTestDB(t)
	ctx := context.Background()
	attempts := 0
	err := db.Tx(ctx, func(tx *Tx) error {
		attempts++
		if _, err := tx.CreateTeam(ctx, "acme", t0); err != nil {
			return err
		}
		if attempts == 1 {
			var pid int
			if err := tx.tx.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				return err
			}
			if _, err := db.lease.ExecContext(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
				return err
			}
		}
		_, err := tx.tx.ExecContext(ctx, `SELECT 1`)
		return err
	})
	if err != nil || attempts != 2 {
		t.Fatalf("Tx = %v after %d attempts, want nil after 2", err, attempts)
	}
	if !teamExists(t, db, "acme") {
		t.Fatal("the team of the second attempt is not there")
	}
}
