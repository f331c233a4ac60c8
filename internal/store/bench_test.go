package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkTx measures write transactions/s on each backend with 16 concurrent writers per
// core: each transaction inserts a record and appends an audit event to the chain, the shape
// of most of keyturn's writes.
func BenchmarkTx(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db := be.open(b)
			ctx := context.Background()
			team := mustTeam(b, db, "acme")
			var n atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					uid := fmt.Sprint("r", i)
					if err := db.Tx(ctx, func(tx *Tx) error {
						if err := tx.InsertRecord(ctx, testRecord(team.ID, uid, "login", uid, "")); err != nil {
							return err
						}
						return appendAudit(ctx, tx, auditEvent(team.ID, `{}`))
					}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
			// The writer's time per transaction: on SQLite, its single writer's busy time,
			// which sets the ceiling when it is saturated; on PostgreSQL, the summed time of
			// transactions, waits for the audit chain's lock included.
			st := db.WriterStats()
			b.ReportMetric(float64(st.Busy.Microseconds())/float64(max(st.Transactions, 1)), "writer-µs/tx")
		})
	}
}

// BenchmarkRead measures record reads/s on each backend over 100 records.
func BenchmarkRead(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db := be.open(b)
			ctx := context.Background()
			team := mustTeam(b, db, "acme")
			for i := range 100 {
				mustInsert(b, db, testRecord(team.ID, fmt.Sprint("r", i), "login", fmt.Sprint("r", i), ""))
			}
			var n atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := db.Record(ctx, team.ID, fmt.Sprint("r", n.Add(1)%100)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}
