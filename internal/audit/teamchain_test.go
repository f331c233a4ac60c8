package audit_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/store"
)

// wantTeamBreak checks that r, a team chain's report, names the break at the event seq, team
// event teamSeq, for reason, with id the event's team hash.
func wantTeamBreak(t *testing.T, r audit.Report, seq, teamSeq int64, reason, id string) {
	t.Helper()
	b := r.FirstBroken
	if r.OK || r.Head != nil || b == nil || b.Seq != seq || b.TeamSeq != teamSeq || b.Reason != reason || b.ID != id || b.Message == "" {
		t.Fatalf("report %+v (first broken %+v), want the break at event %d, team event %d: %s, id %q", r, b, seq, teamSeq, reason, id)
	}
}

// TestVerifyTeamIntactChain: each team's own chain numbers its events 1, 2, 3, … and holds;
// its head is the team's newest event, named by its team hash.
func TestVerifyTeamIntactChain(t *testing.T) {
	f := newChainFixture(t)
	for team, want := range map[int64]struct{ events, head, teamSeq int64 }{f.acme: {5, 7, 5}, f.beta: {2, 6, 2}} {
		r := f.verifyTeam(t, team, audit.VerifyOptions{})
		if !r.OK || r.FirstBroken != nil || r.Events != want.events || r.Head == nil ||
			*r.Head != (audit.Link{Seq: want.head, ID: f.teamHashes[want.head], TeamSeq: want.teamSeq}) {
			t.Fatalf("team %d: %+v, want ok with %d events and head %d (team event %d)", team, r, want.events, want.head, want.teamSeq)
		}
	}
	for seq, teamSeq := range map[int64]int64{1: 1, 2: 2, 3: 1, 4: 3, 5: 4, 6: 2, 7: 5} {
		if f.teamSeqs[seq] != teamSeq {
			t.Fatalf("event %d is team event %d, want %d", seq, f.teamSeqs[seq], teamSeq)
		}
	}
}

// TestVerifyTeamNamesTheFirstBrokenLink tampers with the SQLite file directly, as someone with
// the database but not the key could, and checks that the team's verification names the first
// broken link of its own chain (event, team event, reason), and that the other team's chain,
// which nothing touched, still holds: removing acme's events is no longer a break next to
// beta's events.
func TestVerifyTeamNamesTheFirstBrokenLink(t *testing.T) {
	// acme's events: seq 1, 2, 4, 5, 7 are its team events 1 to 5; beta's: seq 3, 6.
	for _, tc := range []struct {
		name         string
		tamper       func(f *chainFixture) []string
		seq, teamSeq int64
		reason       string
		idOf         int64 // the event whose team hash the break names
	}{
		{name: "payload altered", seq: 4, teamSeq: 3, reason: audit.HashMismatch, idOf: 4,
			tamper: func(*chainFixture) []string {
				return []string{`UPDATE audit_events SET details = '{"field":"login"}' WHERE seq = 4`}
			}},
		{name: "time altered", seq: 2, teamSeq: 2, reason: audit.HashMismatch, idOf: 2,
			tamper: func(*chainFixture) []string {
				return []string{`UPDATE audit_events SET created_at = created_at + 1 WHERE seq = 2`}
			}},
		{name: "removed from the middle", seq: 5, teamSeq: 4, reason: audit.SequenceGap, idOf: 5,
			tamper: func(*chainFixture) []string { return []string{`DELETE FROM audit_events WHERE seq = 4`} }},
		{name: "removed before another team's event", seq: 7, teamSeq: 5, reason: audit.SequenceGap, idOf: 7,
			tamper: func(*chainFixture) []string { return []string{`DELETE FROM audit_events WHERE seq = 5`} }},
		{name: "first event removed", seq: 2, teamSeq: 2, reason: audit.SequenceGap, idOf: 2,
			tamper: func(*chainFixture) []string { return []string{`DELETE FROM audit_events WHERE seq = 1`} }},
		{name: "removed and renumbered", seq: 5, teamSeq: 3, reason: audit.LinkMismatch, idOf: 5,
			tamper: func(f *chainFixture) []string {
				return []string{`DELETE FROM audit_events WHERE seq = 4`,
					fmt.Sprintf(`UPDATE audit_events SET team_seq = team_seq - 1 WHERE team_id = %d AND team_seq > 3`, f.acme)}
			}},
		{name: "team events swapped", seq: 5, teamSeq: 3, reason: audit.LinkMismatch, idOf: 5,
			tamper: func(f *chainFixture) []string {
				return []string{`UPDATE audit_events SET team_seq = -1 WHERE seq = 4`,
					`UPDATE audit_events SET team_seq = 3 WHERE seq = 5`, `UPDATE audit_events SET team_seq = 4 WHERE seq = 4`}
			}},
		{name: "seqs swapped", seq: 4, teamSeq: 4, reason: audit.LinkMismatch, idOf: 5,
			tamper: func(*chainFixture) []string {
				return []string{`UPDATE audit_events SET seq = -1 WHERE seq = 4`,
					`UPDATE audit_events SET seq = 4 WHERE seq = 5`, `UPDATE audit_events SET seq = 5 WHERE seq = -1`}
			}},
		{name: "event copied in", seq: 8, teamSeq: 6, reason: audit.LinkMismatch, idOf: 5,
			tamper: func(*chainFixture) []string {
				return []string{`INSERT INTO audit_events (seq, team_id, type, actor, record_uid, details, created_at, prev_hash, hash, team_seq, team_prev_hash, team_hash)
					SELECT 8, team_id, type, actor, record_uid, details, created_at, prev_hash, hash, 6, team_prev_hash, team_hash FROM audit_events WHERE seq = 5`}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newChainFixture(t)
			f.exec(t, tc.tamper(f)...)
			wantTeamBreak(t, f.verifyTeam(t, f.acme, audit.VerifyOptions{}), tc.seq, tc.teamSeq, tc.reason, f.teamHashes[tc.idOf])
			if r := f.verifyTeam(t, f.beta, audit.VerifyOptions{}); !r.OK || r.Events != 2 {
				t.Fatalf("beta's chain is intact, yet %+v %+v", r, r.FirstBroken)
			}
			if err := f.log.Verify(context.Background()); !errors.Is(err, audit.ErrBroken) {
				t.Fatalf("Verify of every chain: %v", err)
			}
		})
	}
}

// TestVerifyTeamTail: the team's head, moved in the transaction of each append, shows the
// team's newest events removed; removed with the head moved back, the shorter chain holds
// alone, and is caught by a head kept from an earlier verification (in either chain's form)
// and by an audit sink that acknowledged the removed events.
func TestVerifyTeamTail(t *testing.T) {
	ctx := context.Background()
	f := newChainFixture(t)
	before := f.verifyTeam(t, f.acme, audit.VerifyOptions{})
	vaultBefore := f.verify(t, f.acme, audit.VerifyOptions{})
	if !before.OK || before.Head.Seq != 7 || before.Head.TeamSeq != 5 || !vaultBefore.OK {
		t.Fatalf("%+v %+v", before, vaultBefore)
	}
	for _, head := range []*audit.Link{before.Head, vaultBefore.Head} {
		if r := f.verifyTeam(t, f.acme, audit.VerifyOptions{Head: head}); !r.OK {
			t.Fatalf("the head %s of an intact chain: %+v", head, r.FirstBroken)
		}
	}
	f.exec(t, `DELETE FROM audit_events WHERE seq = 7`)
	r := f.verifyTeam(t, f.acme, audit.VerifyOptions{})
	if b := r.FirstBroken; r.OK || b == nil || b.TeamSeq != 5 || b.Reason != audit.TailTruncated {
		t.Fatalf("the newest team event removed: %+v %+v", r, b)
	}

	// Removed with the head moved back (someone who knew of the head).
	f.exec(t, fmt.Sprintf(`UPDATE audit_team_heads SET seq = 4, hash = (SELECT team_hash FROM audit_events WHERE seq = 5) WHERE team_id = %d`, f.acme))
	if r := f.verifyTeam(t, f.acme, audit.VerifyOptions{}); !r.OK || r.Head.Seq != 5 || r.Head.TeamSeq != 4 {
		t.Fatalf("the truncated chain: %+v %+v", r, r.FirstBroken)
	}
	for _, head := range []*audit.Link{before.Head, vaultBefore.Head} {
		wantTeamBreak(t, f.verifyTeam(t, f.acme, audit.VerifyOptions{Head: head}), 7, 0, audit.HeadMissing, head.ID)
	}
	if err := f.db.Tx(ctx, func(tx *store.Tx) error { return tx.SetAuditSinkCursor(ctx, "siem", 7, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	wantTeamBreak(t, f.verifyTeam(t, f.acme, audit.VerifyOptions{}), 7, 0, audit.TailTruncated, "")

	// Events written since go on from the moved head, and take seq 7 again: the head kept
	// from before is there with another hash.
	f.append(t, f.acme)
	if f.teamSeqs[7] != 5 {
		t.Fatalf("the next acme event is team event %d, want 5", f.teamSeqs[7])
	}
	wantTeamBreak(t, f.verifyTeam(t, f.acme, audit.VerifyOptions{Head: before.Head}), 7, 0, audit.HeadMissing, before.Head.ID)
}
