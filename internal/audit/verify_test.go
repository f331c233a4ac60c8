package audit_test

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
)

// chainFixture is a trail of two teams' events, interleaved as a vault writes them:
// seq 1 acme, 2 acme, 3 beta, 4 acme, 5 acme, 6 beta, 7 acme.
type chainFixture struct {
	db          *store.DB
	raw         *sql.DB // the database file opened directly, to tamper with it
	log         *audit.Log
	acme, beta  int64
	hashes      map[int64]string // each event's hash (hex) as written
	teamHashes  map[int64]string // each event's team hash (hex) as written
	teamSeqs    map[int64]int64  // each event's team_seq
	teamOfEvent map[int64]int64
}

func newChainFixture(t *testing.T) *chainFixture {
	t.Helper()
	db, path := testdb.Open(t)
	f := &chainFixture{db: db, log: audit.New(db, testdb.Keys(t)), hashes: map[int64]string{},
		teamHashes: map[int64]string{}, teamSeqs: map[int64]int64{}, teamOfEvent: map[int64]int64{}}
	f.acme, f.beta = testdb.Team(t, db, "acme").ID, testdb.Team(t, db, "beta").ID
	for _, team := range []int64{f.acme, f.acme, f.beta, f.acme, f.acme, f.beta, f.acme} {
		f.append(t, team)
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	f.raw = raw
	return f
}

// append writes one event of team and remembers its hashes.
func (f *chainFixture) append(t *testing.T, team int64) {
	t.Helper()
	ctx := context.Background()
	if err := f.db.Tx(ctx, func(tx *store.Tx) error {
		return f.log.Append(ctx, tx, team, audit.Event{Type: audit.RecordSecretRead, Actor: "svc", RecordUID: "uid",
			Details: map[string]any{"field": "password"}})
	}); err != nil {
		t.Fatal(err)
	}
	rows, err := f.db.AllAuditEvents(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	last := rows[len(rows)-1]
	f.hashes[last.Seq], f.teamOfEvent[last.Seq] = hex.EncodeToString(last.Hash), last.TeamID
	f.teamHashes[last.Seq], f.teamSeqs[last.Seq] = hex.EncodeToString(last.TeamHash), last.TeamSeq
}

func (f *chainFixture) exec(t *testing.T, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := f.raw.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// verify checks team's part of the vault-wide chain (VerifyVault).
func (f *chainFixture) verify(t *testing.T, team int64, o audit.VerifyOptions) audit.Report {
	t.Helper()
	r, err := f.log.VerifyVault(context.Background(), team, o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Chain != audit.ChainVault {
		t.Fatalf("VerifyVault reported chain %q", r.Chain)
	}
	return r
}

// verifyTeam checks team's own chain (VerifyTeam).
func (f *chainFixture) verifyTeam(t *testing.T, team int64, o audit.VerifyOptions) audit.Report {
	t.Helper()
	r, err := f.log.VerifyTeam(context.Background(), team, o)
	if err == nil && r.Chain != audit.ChainTeam {
		t.Fatalf("VerifyTeam reported chain %q", r.Chain)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wantBreak checks that r names the break at seq for reason, with the event's id only when
// the event is the team's.
func wantBreak(t *testing.T, r audit.Report, seq int64, reason, id string) {
	t.Helper()
	b := r.FirstBroken
	if r.OK || b == nil || b.Seq != seq || b.Reason != reason || b.ID != id || b.Message == "" {
		t.Fatalf("report %+v (first broken %+v), want the break at event %d: %s, id %q", r, b, seq, reason, id)
	}
}

// TestVerifyIntactChain: an untouched trail holds for each team and as a whole, along the
// vault-wide chain, and the head is each team's newest event.
func TestVerifyIntactChain(t *testing.T) {
	f := newChainFixture(t)
	for team, want := range map[int64]struct{ events, head int64 }{f.acme: {5, 7}, f.beta: {2, 6}, 0: {7, 7}} {
		r := f.verify(t, team, audit.VerifyOptions{})
		if !r.OK || r.FirstBroken != nil || r.Events != want.events || r.Head == nil ||
			r.Head.Seq != want.head || r.Head.ID != f.hashes[want.head] {
			t.Fatalf("team %d: %+v, want ok with %d events and head %d", team, r, want.events, want.head)
		}
	}
	if err := f.log.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyNamesTheFirstBrokenLink tampers with the SQLite file directly, as someone with the
// database but not the key could, and checks that the vault-wide verification names the first
// broken link and why.
func TestVerifyNamesTheFirstBrokenLink(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tamper  []string
		team    string // whose verification: acme, beta or "" for the whole trail
		seq     int64
		reason  string
		ownID   bool // the event at seq is the team's: its id is named
		okOther bool // beta's verification still holds
	}{
		{name: "payload altered", team: "acme", seq: 4, reason: audit.HashMismatch, ownID: true, okOther: true,
			tamper: []string{`UPDATE audit_events SET details = '{"field":"login"}' WHERE seq = 4`}},
		{name: "actor altered", team: "acme", seq: 2, reason: audit.HashMismatch, ownID: true, okOther: true,
			tamper: []string{`UPDATE audit_events SET actor = 'someone else' WHERE seq = 2`}},
		{name: "removed from the middle", team: "acme", seq: 5, reason: audit.SequenceGap, ownID: true,
			tamper: []string{`DELETE FROM audit_events WHERE seq = 4`}},
		{name: "removed before another team's event", team: "acme", seq: 6, reason: audit.SequenceGap,
			tamper: []string{`DELETE FROM audit_events WHERE seq = 5`}},
		{name: "first event removed", team: "acme", seq: 2, reason: audit.SequenceGap, ownID: true,
			tamper: []string{`DELETE FROM audit_events WHERE seq = 1`}},
		{name: "seqs swapped", team: "acme", seq: 4, reason: audit.LinkMismatch, ownID: true,
			tamper: []string{`UPDATE audit_events SET seq = -1 WHERE seq = 4`,
				`UPDATE audit_events SET seq = 4 WHERE seq = 5`, `UPDATE audit_events SET seq = 5 WHERE seq = -1`}},
		{name: "seqs swapped with another team's", team: "acme", seq: 2, reason: audit.LinkMismatch,
			tamper: []string{`UPDATE audit_events SET seq = -1 WHERE seq = 2`,
				`UPDATE audit_events SET seq = 2 WHERE seq = 3`, `UPDATE audit_events SET seq = 3 WHERE seq = -1`}},
		{name: "another team's event altered", team: "beta", seq: 3, reason: audit.HashMismatch, ownID: true,
			tamper: []string{`UPDATE audit_events SET details = '{}' WHERE seq = 3`}},
		{name: "another team's event altered, whole trail", team: "", seq: 3, reason: audit.HashMismatch, ownID: true,
			tamper: []string{`UPDATE audit_events SET details = '{}' WHERE seq = 3`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newChainFixture(t)
			f.exec(t, tc.tamper...)
			team := map[string]int64{"acme": f.acme, "beta": f.beta, "": 0}[tc.team]
			id := ""
			if tc.ownID {
				id = f.hashes[tc.seq]
				if tc.reason == audit.LinkMismatch { // the event now at seq is the one moved there
					id = f.hashes[tc.seq+1]
				}
			}
			wantBreak(t, f.verify(t, team, audit.VerifyOptions{}), tc.seq, tc.reason, id)
			if err := f.log.Verify(context.Background()); !errors.Is(err, audit.ErrBroken) {
				t.Fatalf("Verify of the whole trail: %v", err)
			}
			if tc.okOther {
				if r := f.verify(t, f.beta, audit.VerifyOptions{}); !r.OK {
					t.Fatalf("beta's events are intact, yet %+v", r.FirstBroken)
				}
			}
		})
	}
}

// TestVerifyAnotherTeamsAlteredEventIsNotReported: an altered event of beta's is beta's
// business; acme's verification holds and says nothing about it.
func TestVerifyAnotherTeamsAlteredEventIsNotReported(t *testing.T) {
	f := newChainFixture(t)
	f.exec(t, `UPDATE audit_events SET details = '{"field":"login"}' WHERE seq = 6`)
	if r := f.verify(t, f.acme, audit.VerifyOptions{}); !r.OK || r.Events != 5 {
		t.Fatalf("acme: %+v %+v", r, r.FirstBroken)
	}
	wantBreak(t, f.verify(t, f.beta, audit.VerifyOptions{}), 6, audit.HashMismatch, f.hashes[6])
}

// TestVerifyTruncatedTail: removing the newest events leaves a chain that holds on its own.
// It is caught by a head kept from an earlier verification, and by an audit sink that
// acknowledged the removed events.
func TestVerifyTruncatedTail(t *testing.T) {
	ctx := context.Background()
	f := newChainFixture(t)
	before := f.verify(t, f.acme, audit.VerifyOptions{})
	if !before.OK || before.Head.Seq != 7 {
		t.Fatalf("%+v", before)
	}
	f.exec(t, `DELETE FROM audit_events WHERE seq >= 6`)

	// Alone, the shorter chain holds: nothing in it says more events followed.
	if r := f.verify(t, f.acme, audit.VerifyOptions{}); !r.OK || r.Head.Seq != 5 {
		t.Fatalf("the truncated chain: %+v", r)
	}
	// The head kept from before is gone.
	wantBreak(t, f.verify(t, f.acme, audit.VerifyOptions{Head: before.Head}), 7, audit.HeadMissing, f.hashes[7])

	// Events written since take the removed sequence numbers again: the head is there with
	// another hash.
	f.append(t, f.beta)
	f.append(t, f.acme)
	wantBreak(t, f.verify(t, f.acme, audit.VerifyOptions{Head: before.Head}), 7, audit.HeadMissing, before.Head.ID)

	// A sink that acknowledged events beyond the end of the trail.
	f.exec(t, `DELETE FROM audit_events WHERE seq >= 6`)
	if err := f.db.Tx(ctx, func(tx *store.Tx) error { return tx.SetAuditSinkCursor(ctx, "siem", 7, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	wantBreak(t, f.verify(t, f.acme, audit.VerifyOptions{}), 6, audit.TailTruncated, "")
	if err := f.log.Verify(ctx); !errors.Is(err, audit.ErrBroken) {
		t.Fatalf("Verify: %v", err)
	}
}

// TestParseLink reads heads as verify writes them and refuses anything else.
func TestParseLink(t *testing.T) {
	l, err := audit.ParseLink("12:ABcd01")
	if err != nil || l != (audit.Link{Seq: 12, ID: "abcd01"}) || l.String() != "12:abcd01" {
		t.Fatalf("%+v %v", l, err)
	}
	for _, bad := range []string{"", "12", "12:", ":ab", "0:ab", "-1:ab", "x:ab", "12:xyz"} {
		if _, err := audit.ParseLink(bad); err == nil || !strings.Contains(err.Error(), "SEQ:ID") && !strings.Contains(err.Error(), "hex") {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

// BenchmarkVerifyTeam verifies one team's chain, and its part of the vault-wide chain, in a
// trail of 10,000 events of two teams. ns/event is per event of the trail.
func BenchmarkVerifyTeam(b *testing.B) {
	ctx := context.Background()
	db, _ := testdb.Open(b)
	log := audit.New(db, testdb.Keys(b))
	acme, beta := testdb.Team(b, db, "acme").ID, testdb.Team(b, db, "beta").ID
	const events = 10000
	if err := db.Tx(ctx, func(tx *store.Tx) error {
		for i := range events {
			team := acme
			if i%2 == 1 {
				team = beta
			}
			if err := log.Append(ctx, tx, team, audit.Event{Type: audit.RecordSecretRead, Actor: "svc", RecordUID: "uid",
				Details: map[string]any{"field": "password", "n": i}}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, chain := range []struct {
		name   string
		verify func(context.Context, int64, audit.VerifyOptions) (audit.Report, error)
	}{{audit.ChainTeam, log.VerifyTeam}, {audit.ChainVault, log.VerifyVault}} {
		b.Run(chain.name, func(b *testing.B) {
			for b.Loop() {
				r, err := chain.verify(ctx, acme, audit.VerifyOptions{})
				if err != nil || !r.OK || r.Events != events/2 {
					b.Fatalf("%+v %v", r, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/events, "ns/event")
		})
	}
}
