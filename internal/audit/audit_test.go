package audit_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
)

func TestChainDetectsTampering(t *testing.T) {
	t.Parallel()
	for name, tamper := range map[string]string{
		"altered":   `UPDATE audit_events SET details = '{"status":"succeeded"}' WHERE seq = 2`,
		"removed":   `DELETE FROM audit_events WHERE seq = 2`,
		"reordered": `UPDATE audit_events SET created_at = created_at + 1 WHERE seq = 3`,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, path := testdb.Open(t)
			team := testdb.Team(t, db, "acme")
			log := audit.New(db, testdb.Keys(t))
			for i, status := range []string{"succeeded", "failed", "needs_attention", "succeeded"} {
				if err := db.Tx(ctx, func(tx *store.Tx) error {
					return log.Append(ctx, tx, team.ID, audit.Event{Type: audit.RotationOnDemandOK, Actor: "test",
						RecordUID: "uid", Details: map[string]any{"status": status, "n": i}})
				}); err != nil {
					t.Fatal(err)
				}
			}
			if err := log.Verify(ctx); err != nil {
				t.Fatalf("an intact chain: %v", err)
			}
			events, err := log.List(ctx, team.ID, 0, 10)
			if err != nil || len(events) != 4 || events[1].Details["status"] != "failed" {
				t.Fatalf("events %+v %v", events, err)
			}
			raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			if _, err := raw.Exec(tamper); err != nil {
				t.Fatal(err)
			}
			if err := log.Verify(ctx); !errors.Is(err, audit.ErrBroken) {
				t.Fatalf("tampering %s went unnoticed: %v", name, err)
			}
		})
	}
}
