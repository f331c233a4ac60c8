package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// variant returns a filter whose query text differs for every i < 56: the Type, Folder and
// Title conditions are on or off and Within has 0..6 prefixes. Every record in folder
// "F0/sub" whose title holds "-" and whose type is login matches all of them.
func variant(teamID int64, i int) RecordFilter {
	f := RecordFilter{TeamID: teamID, Limit: 1000}
	if i&1 != 0 {
		f.Type = "login"
	}
	if i&2 != 0 {
		f.Folder = "F0"
	}
	if i&4 != 0 {
		f.Title = "-"
	}
	for j := range i / 8 {
		f.Within = append(f.Within, fmt.Sprintf("F%d", j))
	}
	return f
}

// Regression: preparing a statement on the single write connection while a transaction held
// it hung forever. 50 concurrent Tx each run a query never run before, then again once it is
// prepared, inside and outside Tx.
func TestStmtCacheNewQueriesInsideTx(t *testing.T) {
	t.Parallel()
	db, _ := openTestDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Even the first write runs queries not prepared yet: guard it too.
	var team Team
	created := make(chan error, 1)
	go func() {
		created <- db.Tx(ctx, func(tx *Tx) error {
			var err error
			team, err = tx.CreateTeam(ctx, "acme", t0)
			return err
		})
	}()
	select {
	case err := <-created:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("CreateTeam still running after 20s: deadlock")
	}

	const n = 50
	round := func(name string, insert bool) {
		t.Helper()
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				errs <- db.Tx(ctx, func(tx *Tx) error {
					uid := fmt.Sprintf("%s-%02d", name, i)
					if insert {
						if err := tx.InsertRecord(ctx, testRecord(team.ID, uid, "login", uid, "F0/sub")); err != nil {
							return err
						}
					}
					// The record just inserted must be visible to its own transaction.
					recs, err := tx.ListRecords(ctx, variant(team.ID, i))
					if err != nil {
						return err
					}
					if !insert {
						return nil
					}
					for _, r := range recs {
						if r.UID == uid {
							return nil
						}
					}
					return fmt.Errorf("%s: own insert not visible inside its transaction", uid)
				})
			})
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatalf("%s: transactions still running after 20s: deadlock", name)
		}
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	round("first", true)  // every query text new: run unprepared, prepared after the batch
	round("second", true) // now prepared: run through the transaction's statement
	round("third", false)

	// The same queries through the read pool, concurrently and repeatedly.
	var wg sync.WaitGroup
	errs := make(chan error, n*3)
	for i := range n {
		wg.Go(func() {
			for range 3 {
				recs, err := db.ListRecords(ctx, variant(team.ID, i))
				if err != nil {
					errs <- err
					return
				}
				if len(recs) != 2*n { // the records of rounds "first" and "second"
					errs <- fmt.Errorf("variant %d: %d records, want %d", i, len(recs), 2*n)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("reads still running after 20s")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// One query run many times, alternating between the read pool and transactions, keeps
// giving the right answer (including a transaction's own uncommitted writes).
func TestStmtCacheSameQueryInsideAndOutside(t *testing.T) {
	t.Parallel()
	db, _ := openTestDB(t)
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	for i := range 20 {
		uid := fmt.Sprintf("r%02d", i)
		var inside int
		withTimeout(t, 10*time.Second, "Tx "+uid, func() {
			if err := db.Tx(ctx, func(tx *Tx) error {
				if err := tx.InsertRecord(ctx, testRecord(team.ID, uid, "login", uid, "")); err != nil {
					return err
				}
				recs, err := tx.ListRecords(ctx, RecordFilter{TeamID: team.ID, Limit: 100})
				inside = len(recs)
				return err
			}); err != nil {
				t.Error(err)
			}
		})
		if inside != i+1 {
			t.Fatalf("inside Tx %d: %d records, want %d", i, inside, i+1)
		}
		recs, err := db.ListRecords(ctx, RecordFilter{TeamID: team.ID, Limit: 100})
		if err != nil || len(recs) != i+1 {
			t.Fatalf("outside after Tx %d: %d records, %v", i, len(recs), err)
		}
		if _, err := db.Record(ctx, team.ID, uid); err != nil {
			t.Fatal(err)
		}
	}
	// Every query run above is now cached on both pools.
	db.writeStmts.mu.Lock()
	cachedWrite := len(db.writeStmts.stmts)
	db.writeStmts.mu.Unlock()
	if cachedWrite == 0 {
		t.Error("no statement was cached for the write pool")
	}
}

// Reads do not wait for a running transaction: they use their own connections.
func TestReadsDuringTx(t *testing.T) {
	t.Parallel()
	db, _ := openTestDB(t)
	ctx := context.Background()
	mustTeam(t, db, "acme")
	release := holdCommitter(t, db)
	defer release()
	withTimeout(t, 10*time.Second, "read during a Tx", func() {
		for range 10 {
			if _, err := db.TeamByName(ctx, "acme"); err != nil {
				t.Error(err)
				return
			}
		}
	})
	if err := release(); err != nil {
		t.Fatal(err)
	}
}
