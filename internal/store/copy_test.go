package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// Every table the SQLite and PostgreSQL migrations create is one CopyToPostgres copies or
// knows to skip; a table added to the source that it does not handle makes it fail, naming
// the table, and write nothing.
func TestCopyRefusesUnhandledTable(t *testing.T) {
	ctx := context.Background()
	src, _ := openTestDB(t)
	mustTeam(t, src, "acme")
	if _, err := src.write.ExecContext(ctx, `CREATE TABLE new_feature (id INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	dst := openPostgresTestDB(t)
	_, err := CopyToPostgres(ctx, src, dst)
	if err == nil || !strings.Contains(err.Error(), "new_feature") || !strings.Contains(err.Error(), "does not handle") {
		t.Fatalf("a copy with an unhandled table: %v", err)
	}
	if n, err := dst.CountRows(ctx, "teams"); err != nil || n != 0 {
		t.Fatalf("the refused copy wrote %d teams (%v)", n, err)
	}
}

// After a copy the target's identity sequences are past the copied ids (a new team gets a new
// id), its audit head is the copied chain's newest event (a new event follows it without a
// gap), and a second copy is refused with ErrTargetNotEmpty.
func TestCopyMovesSequencesAndAuditHead(t *testing.T) {
	ctx := context.Background()
	src, _ := openTestDB(t)
	a, b := mustTeam(t, src, "acme"), mustTeam(t, src, "beta")
	for _, team := range []Team{a, b} {
		mustTx(t, src, func(tx *Tx) error {
			prev, err := tx.LastAuditHash(ctx)
			if err != nil {
				return err
			}
			if prev == nil {
				prev = []byte{}
			}
			return tx.InsertAuditEvents(ctx, []AuditEvent{{TeamID: team.ID, Type: "t", Actor: "x", Details: []byte("{}"), CreatedAt: t0,
				PrevHash: prev, Hash: []byte(team.Name)}})
		})
	}
	dst := openPostgresTestDB(t)
	rep, err := CopyToPostgres(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AuditHead != 2 || !slices.Contains(rep.Tables, TableCount{Table: "teams", Rows: 2}) {
		t.Fatalf("report %+v", rep)
	}
	c := mustTeam(t, dst, "gamma")
	if c.ID == a.ID || c.ID == b.ID {
		t.Fatalf("a team made after the copy got id %d, a copied team's", c.ID)
	}
	mustTx(t, dst, func(tx *Tx) error {
		prev, err := tx.LastAuditHash(ctx)
		if err != nil {
			return err
		}
		if string(prev) != "beta" {
			t.Errorf("the copy's audit head hash is %q, want the newest copied event's", prev)
		}
		return tx.InsertAuditEvents(ctx, []AuditEvent{{TeamID: c.ID, Type: "t", Actor: "x", Details: []byte("{}"), CreatedAt: t0,
			PrevHash: prev, Hash: []byte("gamma")}})
	})
	events, err := dst.AllAuditEvents(ctx, 0, 10)
	if err != nil || len(events) != 3 || events[2].Seq != 3 || string(events[2].PrevHash) != "beta" {
		t.Fatalf("events after the copy: %+v (%v)", events, err)
	}
	if _, err := CopyToPostgres(ctx, src, dst); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("a second copy: %v", err)
	}
}
