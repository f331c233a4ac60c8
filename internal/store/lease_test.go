package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// queuedRuns makes n records, each with one queued run, and returns the runs' ids.
func queuedRuns(t *testing.T, db *DB, teamID int64, n int) []string {
	t.Helper()
	return queuedRunsAt(t, db, teamID, "", n, t0)
}

// queuedRunsAt is queuedRuns with record and run ids that start with prefix, created from at on.
func queuedRunsAt(t *testing.T, db *DB, teamID int64, prefix string, n int, at time.Time) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	mustTx(t, db, func(tx *Tx) error {
		for i := range n {
			uid := fmt.Sprintf("%srec-%03d", prefix, i)
			if err := tx.InsertRecord(ctx, testRecord(teamID, uid, "pamUser", uid, "")); err != nil {
				return err
			}
			ids[i] = fmt.Sprintf("%srun-%03d", prefix, i)
			if err := tx.InsertRun(ctx, Run{ID: ids[i], TeamID: teamID, RecordUID: uid, Trigger: "on_demand",
				Status: "queued", State: "queued", CreatedAt: at.Add(time.Duration(i)), UpdatedAt: t0}); err != nil {
				return err
			}
		}
		return nil
	})
	return ids
}

// Nodes claiming at once each get different runs, every run is claimed once, oldest first,
// and a run whose lease has not expired is not claimed again.
func testClaimsAreExclusive(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	ids := queuedRuns(t, db, team.ID, 120)
	var (
		mu     sync.Mutex
		holder = map[string]string{}
	)
	concurrently(writers, func(w int) {
		node := fmt.Sprintf("node-%d", w)
		for {
			leases, err := db.ClaimRuns(ctx, node, 7, time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			if len(leases) == 0 {
				return
			}
			mu.Lock()
			for _, l := range leases {
				if other, ok := holder[l.RunID]; ok {
					t.Errorf("run %s claimed by %s and by %s", l.RunID, other, node)
				}
				if l.Epoch != 1 {
					t.Errorf("run %s: first claim at epoch %d", l.RunID, l.Epoch)
				}
				holder[l.RunID] = node
			}
			mu.Unlock()
		}
	})
	if len(holder) != len(ids) {
		t.Fatalf("%d of %d runs claimed", len(holder), len(ids))
	}
	for _, id := range ids {
		run, err := db.RunByID(ctx, id)
		if err != nil || run.LeaseNode != holder[id] || run.LeaseEpoch != 1 || run.LeaseUntil == nil {
			t.Fatalf("run %s as stored: %+v, %v; want held by %s at epoch 1", id, run, err, holder[id])
		}
	}
	if again, err := db.ClaimRuns(ctx, "late", 1000, time.Minute); err != nil || len(again) != 0 {
		t.Fatalf("ClaimRuns while every lease is live = %v, %v; want none", again, err)
	}

	// Oldest first.
	db2team := mustTeam(t, db, "beta")
	fresh := queuedRunsAt(t, db, db2team.ID, "beta-", 3, t0.Add(time.Hour))
	got, err := db.ClaimRuns(ctx, "n", 2, time.Minute)
	if err != nil || len(got) != 2 || !(got[0].RunID == fresh[0] && got[1].RunID == fresh[1] || got[0].RunID == fresh[1] && got[1].RunID == fresh[0]) {
		t.Fatalf("ClaimRuns(2) = %v, %v; want the two oldest of %v", got, err, fresh)
	}
}

// Once another node has claimed a run whose lease expired, its former holder can neither
// write it (the whole transaction rolls back) nor renew it nor run a script for it; the new
// holder can.
func testLeaseFencesWrites(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	id := queuedRuns(t, db, team.ID, 1)[0]
	a, err := db.ClaimRuns(ctx, "a", 1, -time.Second) // claimed, and already expired
	if err != nil || len(a) != 1 {
		t.Fatalf("ClaimRuns(a) = %v, %v", a, err)
	}
	runA, err := db.RunByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	runA.Status, runA.State = "running", "pending_saved"
	mustTx(t, db, func(tx *Tx) error { return tx.UpdateRun(ctx, runA) }) // nobody claimed it since: still a's

	b, err := db.ClaimRuns(ctx, "b", 1, time.Minute)
	if err != nil || len(b) != 1 || b[0].Epoch != a[0].Epoch+1 {
		t.Fatalf("ClaimRuns(b) after a's lease expired = %v, %v; want the run at epoch %d", b, err, a[0].Epoch+1)
	}
	before, err := db.AllAuditEvents(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	runA.State = "target_changed"
	err = db.Tx(ctx, func(tx *Tx) error {
		if err := appendAudit(ctx, tx, auditEvent(team.ID, `{"from":"a"}`)); err != nil {
			return err
		}
		return tx.UpdateRun(ctx, runA)
	})
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's write after b claimed the run: %v, want ErrLeaseLost", err)
	}
	after, err := db.AllAuditEvents(ctx, 0, 100)
	if err != nil || len(after) != len(before) {
		t.Fatalf("a's refused transaction left %d audit events (had %d): %v", len(after), len(before), err)
	}
	if stored, err := db.RunByID(ctx, id); err != nil || stored.State != "pending_saved" || stored.LeaseNode != "b" {
		t.Fatalf("run after a's refused write: %+v, %v", stored, err)
	}
	if err := db.Tx(ctx, func(tx *Tx) error { return tx.CheckLease(ctx, id, "a", a[0].Epoch) }); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("CheckLease(a) = %v, want ErrLeaseLost", err)
	}
	mustTx(t, db, func(tx *Tx) error { return tx.CheckLease(ctx, id, "b", b[0].Epoch) })
	if lost, err := db.RenewLeases(ctx, "a", a, time.Minute); err != nil || len(lost) != 1 {
		t.Fatalf("RenewLeases(a) = %v, %v; want its lease lost", lost, err)
	}
	if lost, err := db.RenewLeases(ctx, "b", b, time.Minute); err != nil || len(lost) != 0 {
		t.Fatalf("RenewLeases(b) = %v, %v; want it renewed", lost, err)
	}
	runB, err := db.RunByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	runB.Status, runB.State = "succeeded", "succeeded"
	mustTx(t, db, func(tx *Tx) error { return tx.UpdateRun(ctx, runB) })
	if ended, err := db.RunByID(ctx, id); err != nil || ended.LeaseUntil != nil {
		t.Fatalf("an ended run keeps its lease: %+v, %v", ended, err)
	}
	if lost, err := db.RenewLeases(ctx, "b", b, time.Minute); err != nil || len(lost) != 1 {
		t.Fatalf("RenewLeases of an ended run = %v, %v; want it lost", lost, err)
	}
}

// A node starting takes over what its name held (a new epoch, at once); a released lease can
// be claimed at once by another node; an ended run is never claimed.
func testTakeOverAndRelease(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	ids := queuedRuns(t, db, team.ID, 3)
	a, err := db.ClaimRuns(ctx, "a", 2, time.Hour)
	if err != nil || len(a) != 2 {
		t.Fatalf("ClaimRuns(a) = %v, %v", a, err)
	}
	again, err := db.TakeOverRuns(ctx, "a", time.Hour)
	if err != nil || len(again) != 2 || again[0].Epoch != 2 || again[1].Epoch != 2 {
		t.Fatalf("TakeOverRuns(a) = %v, %v; want both runs at epoch 2", again, err)
	}
	if err := db.ReleaseLeases(ctx, "a", again[:1]); err != nil {
		t.Fatal(err)
	}
	b, err := db.ClaimRuns(ctx, "b", 10, time.Hour)
	if err != nil || len(b) != 2 {
		t.Fatalf("ClaimRuns(b) = %v, %v; want the released run and the free one", b, err)
	}
	got := map[string]bool{b[0].RunID: true, b[1].RunID: true}
	if !got[again[0].RunID] || !got[ids[2]] || got[again[1].RunID] {
		t.Fatalf("b claimed %v; want %s (released) and %s (free), not %s (a's)", b, again[0].RunID, ids[2], again[1].RunID)
	}
	// A release with a stale epoch changes nothing.
	if err := db.ReleaseLeases(ctx, "a", a[1:]); err != nil {
		t.Fatal(err)
	}
	if c, err := db.ClaimRuns(ctx, "c", 10, time.Hour); err != nil || len(c) != 0 {
		t.Fatalf("ClaimRuns(c) = %v, %v; want none (a's stale release must not free its run)", c, err)
	}
}

// A scheduled occurrence makes one run, even once the first has ended; the next occurrence
// makes its own.
func testOccurrenceFiresOnce(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	mustInsert(t, db, testRecord(team.ID, "r", "pamUser", "r", ""))
	due := t0.Add(time.Hour)
	insert := func(id string, due time.Time) bool {
		var ok bool
		mustTx(t, db, func(tx *Tx) error {
			var err error
			ok, err = tx.InsertRunIfIdle(ctx, Run{ID: id, TeamID: team.ID, RecordUID: "r", Trigger: "scheduled",
				Status: "queued", State: "queued", CreatedAt: t0, UpdatedAt: t0, DueAt: &due})
			return err
		})
		return ok
	}
	if !insert("first", due) {
		t.Fatal("the occurrence made no run")
	}
	run, err := db.RunByID(ctx, "first")
	if err != nil {
		t.Fatal(err)
	}
	run.Status, run.State = "succeeded", "succeeded"
	mustTx(t, db, func(tx *Tx) error { return tx.UpdateRun(ctx, run) })
	if insert("second", due) {
		t.Fatal("the same occurrence made a second run once the first had ended")
	}
	if !insert("next", due.Add(time.Hour)) {
		t.Fatal("the next occurrence made no run")
	}
}

// Nodes firing at once, each reading the due schedules in a transaction and moving them on,
// see each due record once.
func testDueSchedulesClaimedOnce(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	const n = 100
	mustTx(t, db, func(tx *Tx) error {
		for i := range n {
			uid := fmt.Sprintf("rec-%03d", i)
			if err := tx.InsertRecord(ctx, testRecord(team.ID, uid, "pamUser", uid, "")); err != nil {
				return err
			}
			if err := tx.SaveRotationSettings(ctx, RotationSettings{RecordUID: uid, TeamID: team.ID, Settings: []byte(`{}`), UpdatedAt: t0}); err != nil {
				return err
			}
			at := t0.Add(time.Duration(i) * time.Second)
			if err := tx.SetScheduleState(ctx, uid, ScheduleState{NextRunAt: &at, AnchorAt: t0}); err != nil {
				return err
			}
		}
		return nil
	})
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	now := t0.Add(time.Hour)
	concurrently(writers, func(int) {
		for {
			var got []string
			err := db.Tx(ctx, func(tx *Tx) error {
				got = got[:0]
				due, err := tx.DueSchedules(ctx, now, 7)
				if err != nil {
					return err
				}
				for _, d := range due {
					got = append(got, d.RecordUID)
					if err := tx.SetNextRun(ctx, d.RecordUID, nil); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Error(err)
				return
			}
			if len(got) == 0 {
				return
			}
			mu.Lock()
			for _, uid := range got {
				seen[uid]++
			}
			mu.Unlock()
		}
	})
	if len(seen) != n {
		t.Fatalf("%d of %d due records fired", len(seen), n)
	}
	for uid, k := range seen {
		if k != 1 {
			t.Errorf("record %s fired %d times", uid, k)
		}
	}
}

// A run's timeline holds each state it committed, once, in order, from its insert on; a write
// refused for a lost lease adds nothing to it.
func testRunStatesFollowCommits(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	id := queuedRuns(t, db, team.ID, 1)[0]
	a, err := db.ClaimRuns(ctx, "a", 1, -time.Second)
	if err != nil || len(a) != 1 {
		t.Fatalf("ClaimRuns = %v, %v", a, err)
	}
	run, err := db.RunByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for i, state := range []string{"running", "running", "pending_saved"} { // the second is an attempt++, not a new state
		run.Status, run.State, run.Attempt, run.UpdatedAt = "running", state, int64(i+1), t0.Add(time.Duration(i+1)*time.Second)
		mustTx(t, db, func(tx *Tx) error { return tx.UpdateRun(ctx, run) })
	}
	if _, err := db.ClaimRuns(ctx, "b", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	run.State = "target_changed"
	if err := db.Tx(ctx, func(tx *Tx) error { return tx.UpdateRun(ctx, run) }); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's write after b claimed the run: %v", err)
	}
	states, err := db.RunStates(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range states {
		got = append(got, st.State)
	}
	if fmt.Sprint(got) != "[queued running pending_saved]" || !states[0].At.Equal(t0) || !states[2].At.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("timeline %v (%+v), want queued at t0, running, pending_saved at t0+3s", got, states)
	}
}
