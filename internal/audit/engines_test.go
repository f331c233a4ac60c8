package audit_test

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Writers that append events in their transactions and record events after the fact, all at
// once, leave a chain that verifies, with every event, on SQLite and on PostgreSQL; and on
// PostgreSQL, as on SQLite, an altered event is found.
func TestConcurrentWritersLeaveAChainThatVerifies(t *testing.T) {
	engines := map[string]func(t *testing.T) (*store.DB, func() (*sql.DB, error)){
		"sqlite": func(t *testing.T) (*store.DB, func() (*sql.DB, error)) {
			db, path := testdb.Open(t)
			return db, func() (*sql.DB, error) { return sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)") }
		},
		"postgres": func(t *testing.T) (*store.DB, func() (*sql.DB, error)) {
			db, dsn := testdb.OpenPostgres(t)
			return db, func() (*sql.DB, error) { return sql.Open("pgx", dsn) }
		},
	}
	for name, open := range engines {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, raw := open(t)
			teams := []store.Team{testdb.Team(t, db, "acme"), testdb.Team(t, db, "beta")}
			log := audit.New(db, testdb.Keys(t))
			log.Start()
			const writers, each = 8, 20
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					team := teams[w%2]
					for i := range each {
						if err := db.Tx(ctx, func(tx *store.Tx) error {
							return log.Append(ctx, tx, team.ID, audit.Event{Type: audit.RecordUpdated, Actor: "test",
								Details: map[string]any{"w": w, "i": i}})
						}); err != nil {
							t.Error(err)
							return
						}
						if err := log.Record(team.ID, audit.Event{Type: audit.RecordSecretRead, Actor: "test",
							Details: map[string]any{"w": w, "i": i}}); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			log.Stop()
			if err := log.Verify(ctx); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			total := 0
			for _, team := range teams {
				events, err := log.List(ctx, team.ID, 0, 10000)
				if err != nil {
					t.Fatal(err)
				}
				total += len(events)
			}
			if total != 2*writers*each {
				t.Fatalf("%d events, want %d", total, 2*writers*each)
			}

			conn, err := raw()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Exec(fmt.Sprintf(`UPDATE audit_events SET details = '{"w":99}' WHERE seq = %d`, total/2)); err != nil {
				t.Fatal(err)
			}
			if err := log.Verify(ctx); !errors.Is(err, audit.ErrBroken) {
				t.Fatalf("an altered event went unnoticed: %v", err)
			}
		})
	}
}

// Many writers of two teams append events in their transactions (some of which then fail) and
// record events after the fact, all at once: each team's own chain numbers its events 1, 2,
// 3, … without a gap and verifies, with every event it committed; an event altered is named
// by its team's verification (event, team event, hash_mismatch), and the other team's chain
// still holds. On SQLite and on PostgreSQL.
func TestConcurrentWritersLeaveTeamChainsThatVerify(t *testing.T) {
	engines := map[string]func(t *testing.T) (*store.DB, func() (*sql.DB, error)){
		"sqlite": func(t *testing.T) (*store.DB, func() (*sql.DB, error)) {
			db, path := testdb.Open(t)
			return db, func() (*sql.DB, error) { return sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)") }
		},
		"postgres": func(t *testing.T) (*store.DB, func() (*sql.DB, error)) {
			db, dsn := testdb.OpenPostgres(t)
			return db, func() (*sql.DB, error) { return sql.Open("pgx", dsn) }
		},
	}
	for name, open := range engines {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, raw := open(t)
			teams := []store.Team{testdb.Team(t, db, "acme"), testdb.Team(t, db, "beta")}
			log := audit.New(db, testdb.Keys(t))
			log.Start()
			const writers, each = 32, 12
			boom := errors.New("boom")
			var committed [2]atomic.Int64
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					team := w % 2
					for i := range each {
						fail := (w+i)%5 == 4
						err := db.Tx(ctx, func(tx *store.Tx) error {
							for k := range 1 + i%2 {
								if err := log.Append(ctx, tx, teams[team].ID, audit.Event{Type: audit.RecordUpdated, Actor: "test",
									Details: map[string]any{"w": w, "i": i, "k": k}}); err != nil {
									return err
								}
							}
							if fail {
								return boom
							}
							return nil
						})
						switch {
						case fail && errors.Is(err, boom):
						case !fail && err == nil:
							committed[team].Add(int64(1 + i%2))
						default:
							t.Error(err)
							return
						}
						if err := log.Record(teams[1-team].ID, audit.Event{Type: audit.RecordSecretRead, Actor: "test",
							Details: map[string]any{"w": w, "i": i}}); err != nil {
							t.Error(err)
							return
						}
						committed[1-team].Add(1)
					}
				})
			}
			wg.Wait()
			log.Stop()
			if t.Failed() {
				return
			}
			for i, team := range teams {
				r, err := log.VerifyTeam(ctx, team.ID, audit.VerifyOptions{})
				if err != nil || !r.OK || r.Events != committed[i].Load() || r.Head == nil || r.Head.TeamSeq != r.Events {
					t.Fatalf("team %s: %+v (%v), want ok with its %d events", team.Name, r, err, committed[i].Load())
				}
			}

			// Alter one of acme's events in the middle of its chain.
			events, err := db.TeamAuditEvents(ctx, teams[0].ID, 0, 100000)
			if err != nil {
				t.Fatal(err)
			}
			victim := events[len(events)/2]
			conn, err := raw()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Exec(fmt.Sprintf(`UPDATE audit_events SET actor = 'someone else' WHERE seq = %d`, victim.Seq)); err != nil {
				t.Fatal(err)
			}
			r, err := log.VerifyTeam(ctx, teams[0].ID, audit.VerifyOptions{})
			if b := r.FirstBroken; err != nil || r.OK || b == nil || b.Seq != victim.Seq || b.TeamSeq != victim.TeamSeq ||
				b.Reason != audit.HashMismatch || b.ID != hex.EncodeToString(victim.TeamHash) || r.Events != victim.TeamSeq-1 {
				t.Fatalf("the altered event %d (team event %d): %+v %+v (%v)", victim.Seq, victim.TeamSeq, r, b, err)
			}
			if r, err := log.VerifyTeam(ctx, teams[1].ID, audit.VerifyOptions{}); err != nil || !r.OK {
				t.Fatalf("beta: %+v (%v)", r, err)
			}
		})
	}
}
