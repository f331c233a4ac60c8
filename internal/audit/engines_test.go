package audit_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync"
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
