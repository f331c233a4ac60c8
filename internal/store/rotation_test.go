package store

import (
	"context"
	"testing"
	"time"
)

// The scheduler's queries: the earliest due instant, and the due records in due order.
func testNextDueAndDueSchedules(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	mustInsert(t, db, testRecord(team.ID, "a", "pamUser", "a", ""), testRecord(team.ID, "b", "pamUser", "b", ""),
		testRecord(team.ID, "c", "pamUser", "c", ""))
	if next, err := db.NextDue(ctx); err != nil || !next.IsZero() {
		t.Fatalf("NextDue with nothing scheduled = %v, %v; want zero", next, err)
	}
	at := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
	mustTx(t, db, func(tx *Tx) error {
		for _, uid := range []string{"a", "b", "c"} {
			if err := tx.SaveRotationSettings(ctx, RotationSettings{RecordUID: uid, TeamID: team.ID, Settings: []byte(`{}`), UpdatedAt: t0}); err != nil {
				return err
			}
		}
		if err := tx.SetScheduleState(ctx, "a", ScheduleState{NextRunAt: at(3 * time.Hour), AnchorAt: t0}); err != nil {
			return err
		}
		if err := tx.SetScheduleState(ctx, "b", ScheduleState{NextRunAt: at(time.Hour), AnchorAt: t0}); err != nil {
			return err
		}
		// c: no scheduled rotation, only a heartbeat, which NextDue does not count.
		return tx.SetScheduleState(ctx, "c", ScheduleState{AnchorAt: t0, NextHeartbeatAt: at(time.Minute)})
	})
	if next, err := db.NextDue(ctx); err != nil || !next.Equal(*at(time.Hour)) {
		t.Fatalf("NextDue = %v, %v; want %v", next, err, *at(time.Hour))
	}
	due, err := db.DueSchedules(ctx, t0.Add(4*time.Hour), 10)
	if err != nil || len(due) != 2 || due[0].RecordUID != "b" || due[1].RecordUID != "a" {
		t.Fatalf("DueSchedules = %+v, %v; want b then a", due, err)
	}
	if due, err := db.DueSchedules(ctx, t0.Add(2*time.Hour), 10); err != nil || len(due) != 1 || due[0].RecordUID != "b" {
		t.Fatalf("DueSchedules before a is due = %+v, %v; want b", due, err)
	}
	mustTx(t, db, func(tx *Tx) error { return tx.SetNextRun(ctx, "b", nil) })
	if next, err := db.NextDue(ctx); err != nil || !next.Equal(*at(3 * time.Hour)) {
		t.Fatalf("NextDue after b's schedule ended = %v, %v; want %v", next, err, *at(3 * time.Hour))
	}
}
