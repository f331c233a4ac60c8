package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkLeases measures the lease operations of the nodes sharing a database, one caller at
// a time, on a table that holds 1,000 ended runs (what bench BenchmarkCluster leaves) and some
// open runs another node holds under a live lease:
//   - claim-empty/open=N: a claim that finds nothing free, what each node does every claim
//     interval and whenever a worker idles; it passes over every open run, so it grows with them;
//   - claim-one/open=100: a claim that takes the one free run;
//   - renew/leases=16: a renewal of 16 leases (also reported per lease).
func BenchmarkLeases(b *testing.B) {
	const ttl = 30 * time.Second
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			for _, open := range []int{0, 100, 1000} {
				b.Run(fmt.Sprintf("claim-empty/open=%d", open), func(b *testing.B) {
					db := leaseBenchDB(b, be.open(b), open)
					ctx := context.Background()
					for b.Loop() {
						got, err := db.ClaimRuns(ctx, "n1", 32, ttl)
						if err != nil || len(got) != 0 {
							b.Fatalf("claimed %d runs: %v", len(got), err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/claim")
				})
			}
			b.Run("claim-one/open=100", func(b *testing.B) {
				db := leaseBenchDB(b, be.open(b), 100)
				ctx := context.Background()
				team, err := db.TeamByName(ctx, "acme")
				if err != nil {
					b.Fatal(err)
				}
				i := 0
				for b.Loop() {
					b.StopTimer()
					i++
					uid := fmt.Sprintf("free-%d", i)
					mustTx(b, db, func(tx *Tx) error {
						if err := tx.InsertRecord(ctx, testRecord(team.ID, uid, "pamUser", uid, "")); err != nil {
							return err
						}
						return tx.InsertRun(ctx, Run{ID: uid, TeamID: team.ID, RecordUID: uid, Trigger: "on_demand",
							Status: "queued", State: "queued", CreatedAt: t0, UpdatedAt: t0})
					})
					b.StartTimer()
					got, err := db.ClaimRuns(ctx, "n1", 32, ttl)
					if err != nil || len(got) != 1 || got[0].RunID != uid {
						b.Fatalf("claimed %v, want %s: %v", got, uid, err)
					}
					b.StopTimer()
					mustTx(b, db, func(tx *Tx) error {
						_, err := tx.tx.ExecContext(ctx, `UPDATE rotation_runs SET status = 'succeeded' WHERE id = $1`, uid)
						return err
					})
					b.StartTimer()
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/claim")
			})
			b.Run("renew/leases=16", func(b *testing.B) {
				db := leaseBenchDB(b, be.open(b), 100)
				ctx := context.Background()
				team, err := db.TeamByName(ctx, "acme")
				if err != nil {
					b.Fatal(err)
				}
				mustTx(b, db, func(tx *Tx) error {
					for i := range 16 {
						uid := fmt.Sprintf("mine-%d", i)
						if err := tx.InsertRecord(ctx, testRecord(team.ID, uid, "pamUser", uid, "")); err != nil {
							return err
						}
						if err := tx.InsertRun(ctx, Run{ID: uid, TeamID: team.ID, RecordUID: uid, Trigger: "on_demand",
							Status: "running", State: "queued", CreatedAt: t0, UpdatedAt: t0}); err != nil {
							return err
						}
					}
					return nil
				})
				leases, err := db.ClaimRuns(ctx, "n1", 32, ttl)
				if err != nil || len(leases) != 16 {
					b.Fatalf("claimed %d runs, want 16: %v", len(leases), err)
				}
				for b.Loop() {
					lost, err := db.RenewLeases(ctx, "n1", leases, ttl)
					if err != nil || len(lost) != 0 {
						b.Fatalf("lost %d leases: %v", len(lost), err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/renewal")
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/16, "µs/lease")
			})
		})
	}
}

// leaseBenchDB fills db with a team, 1,000 ended runs and open runs held by node "other"
// under a lease of an hour, each run of its own record.
func leaseBenchDB(b *testing.B, db *DB, open int) *DB {
	b.Helper()
	ctx := context.Background()
	team := mustTeam(b, db, "acme")
	until := time.Now().Add(time.Hour)
	mustTx(b, db, func(tx *Tx) error {
		for i := range 1000 + open {
			uid := fmt.Sprintf("rec-%04d", i)
			if err := tx.InsertRecord(ctx, testRecord(team.ID, uid, "pamUser", uid, "")); err != nil {
				return err
			}
			run := Run{ID: fmt.Sprintf("run-%04d", i), TeamID: team.ID, RecordUID: uid, Trigger: "on_demand",
				Status: "succeeded", State: "committed", CreatedAt: t0.Add(time.Duration(i)), UpdatedAt: t0}
			if i >= 1000 {
				run.Status, run.State = "running", "queued"
				run.LeaseNode, run.LeaseEpoch, run.LeaseUntil = "other", 1, &until
			}
			if err := tx.InsertRun(ctx, run); err != nil {
				return err
			}
		}
		return nil
	})
	return db
}
