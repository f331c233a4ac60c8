package store

import (
	"bytes"
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
// gap), each team's chain head is copied (a team's next event follows its copied one), and a
// second copy is refused with ErrTargetNotEmpty.
func TestCopyMovesSequencesAndAuditHead(t *testing.T) {
	ctx := context.Background()
	src, _ := openTestDB(t)
	a, b := mustTeam(t, src, "acme"), mustTeam(t, src, "beta")
	for _, team := range []Team{a, b} {
		mustTx(t, src, func(tx *Tx) error { return appendAudit(ctx, tx, auditEvent(team.ID, `{}`)) })
	}
	dst := openPostgresTestDB(t)
	rep, err := CopyToPostgres(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AuditHead != 2 || !slices.Contains(rep.Tables, TableCount{Table: "teams", Rows: 2}) ||
		!slices.Contains(rep.Tables, TableCount{Table: "audit_team_heads", Rows: 2}) {
		t.Fatalf("report %+v", rep)
	}
	c := mustTeam(t, dst, "gamma")
	if c.ID == a.ID || c.ID == b.ID {
		t.Fatalf("a team made after the copy got id %d, a copied team's", c.ID)
	}
	before, err := src.AllAuditEvents(ctx, 0, 10)
	if err != nil || len(before) != 2 {
		t.Fatalf("the source's events: %+v (%v)", before, err)
	}
	mustTx(t, dst, func(tx *Tx) error {
		prev, err := tx.LastAuditHash(ctx)
		if err != nil {
			return err
		}
		if !bytes.Equal(prev, before[1].Hash) {
			t.Errorf("the copy's audit head hash is %x, want the newest copied event's", prev)
		}
		return appendAudit(ctx, tx, auditEvent(c.ID, `{}`), auditEvent(b.ID, `{}`))
	})
	events, err := dst.AllAuditEvents(ctx, 0, 10)
	if err != nil || len(events) != 4 || events[2].Seq != 3 || !bytes.Equal(events[2].PrevHash, before[1].Hash) {
		t.Fatalf("events after the copy: %+v (%v)", events, err)
	}
	// Each team's chain goes on from its copied head: beta's second event follows its first.
	if e := events[3]; e.TeamID != b.ID || e.TeamSeq != 2 || !bytes.Equal(e.TeamPrevHash, before[1].TeamHash) ||
		events[2].TeamSeq != 1 || len(events[2].TeamPrevHash) != 0 {
		t.Fatalf("the team chains after the copy: %+v", events[2:])
	}
	for _, team := range []Team{a, b, c} {
		want := map[int64]int64{a.ID: 1, b.ID: 2, c.ID: 1}[team.ID]
		if h, err := dst.TeamAuditHead(ctx, team.ID); err != nil || h.Seq != want {
			t.Fatalf("team %s's head after the copy: %+v (%v), want team event %d", team.Name, h, err, want)
		}
	}
	if _, err := CopyToPostgres(ctx, src, dst); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("a second copy: %v", err)
	}
}
