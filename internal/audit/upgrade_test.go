package audit_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
)

// upgraded is a vault whose first events were written before team chains (migration 00010),
// then upgraded, then written to: seq 1 acme, 2 acme, 3 beta, 4 acme, 5 beta from before;
// 6 acme, 7 beta, 8 gamma (a new team) after.
type upgraded struct {
	t                 *testing.T
	db                *store.DB
	raw               *sql.DB
	log               *audit.Log
	acme, beta, gamma int64
	hashes            map[int64][]byte // the vault-wide hash of each event from before
}

// legacyEvents is how many events the vault held before the upgrade.
const legacyEvents = 5

func newUpgraded(t *testing.T, engine string) *upgraded {
	t.Helper()
	ctx := context.Background()
	u := &upgraded{t: t, hashes: map[int64][]byte{}}
	var err error
	switch engine {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "keyturn.db")
		if u.db, err = store.OpenSQLite(ctx, path); err == nil {
			u.raw, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
		}
	case "postgres":
		dsn := pgtest.DSN(t)
		if u.db, err = store.OpenPostgres(ctx, dsn); err == nil {
			u.raw, err = sql.Open("pgx", dsn)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.raw.Close(); u.db.Close() })
	// The schema as it was before team chains.
	if err := u.db.MigrateTo(ctx, 9); err != nil {
		t.Fatal(err)
	}
	u.log = audit.New(u.db, testdb.Keys(t))
	u.acme, u.beta = testdb.Team(t, u.db, "acme").ID, testdb.Team(t, u.db, "beta").ID
	// Events written as keyturn wrote them then: the vault-wide chain only.
	prev := []byte{}
	for i, team := range []int64{u.acme, u.acme, u.beta, u.acme, u.beta} {
		seq := int64(i + 1)
		e := store.AuditEvent{Seq: seq, TeamID: team, Type: audit.RecordSecretRead, Actor: "svc", RecordUID: "uid",
			Details: fmt.Appendf(nil, `{"n":%d}`, seq), CreatedAt: time.Unix(1_700_000_000, 0).Add(time.Duration(seq) * time.Second).UTC(), PrevHash: prev}
		e.Hash = u.log.ChainHash(e)
		if _, err := u.raw.Exec(`INSERT INTO audit_events (seq, team_id, type, actor, record_uid, details, created_at, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, e.Seq, e.TeamID, e.Type, e.Actor, e.RecordUID, string(e.Details),
			e.CreatedAt.UnixNano(), e.PrevHash, e.Hash); err != nil {
			t.Fatal(err)
		}
		u.hashes[seq], prev = e.Hash, e.Hash
	}
	if engine == "postgres" {
		u.exec(t, fmt.Sprintf(`UPDATE audit_head SET seq = %d, hash = '\x%x' WHERE id = 1`, legacyEvents, prev))
	}
	// The upgrade, then events written since.
	if err := u.db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	u.gamma = testdb.Team(t, u.db, "gamma").ID
	for _, team := range []int64{u.acme, u.beta, u.gamma} {
		if err := u.db.Tx(ctx, func(tx *store.Tx) error {
			return u.log.Append(ctx, tx, team, audit.Event{Type: audit.RecordUpdated, Actor: "svc", Details: map[string]any{"after": true}})
		}); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// appendAcme appends an event of acme's (seq 9).
func (u *upgraded) appendAcme() {
	ctx := context.Background()
	if err := u.db.Tx(ctx, func(tx *store.Tx) error {
		return u.log.Append(ctx, tx, u.acme, audit.Event{Type: audit.RecordUpdated, Actor: "svc", Details: map[string]any{"later": true}})
	}); err != nil {
		u.t.Fatal(err)
	}
}

func (u *upgraded) exec(t *testing.T, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := u.raw.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func (u *upgraded) verifyTeam(t *testing.T, team int64) audit.Report {
	t.Helper()
	r, err := u.log.VerifyTeam(context.Background(), team, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestUpgradedVaultVerifies: migration 00010 numbers the events a vault held before team
// chains in each team's order and links them by the vault-wide hashes that cover them; the
// team chains go on from there, and every chain of the upgraded vault verifies, on SQLite and
// on PostgreSQL. The part from before is checked along the vault-wide chain, so an event of it
// altered, or removed with the unkeyed team links rewritten to hide it, is still found.
func TestUpgradedVaultVerifies(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			u := newUpgraded(t, engine)
			events, err := u.db.AllAuditEvents(ctx, 0, 100)
			if err != nil || len(events) != legacyEvents+3 {
				t.Fatalf("%d events (%v)", len(events), err)
			}
			for i, want := range []int64{1, 2, 1, 3, 2, 4, 3, 1} {
				if events[i].TeamSeq != want {
					t.Fatalf("event %d is team event %d, want %d", events[i].Seq, events[i].TeamSeq, want)
				}
			}
			if e := events[5]; string(e.TeamPrevHash) != string(u.hashes[4]) {
				t.Fatalf("acme's first event after the upgrade chains to %x, want its last before, %x", e.TeamPrevHash, u.hashes[4])
			}
			for team, want := range map[int64]struct{ events, head, teamSeq int64 }{u.acme: {4, 6, 4}, u.beta: {3, 7, 3}, u.gamma: {1, 8, 1}} {
				r := u.verifyTeam(t, team)
				if !r.OK || r.Events != want.events || r.Head == nil || r.Head.Seq != want.head || r.Head.TeamSeq != want.teamSeq {
					t.Fatalf("team %d: %+v %+v, want ok with %d events, head %d", team, r, r.FirstBroken, want.events, want.head)
				}
			}
			if err := u.log.Verify(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, tc := range []struct {
		name         string
		tamper       func(u *upgraded) []string
		seq, teamSeq int64
		reason       string
	}{
		{name: "an event from before altered", seq: 2, teamSeq: 2, reason: audit.HashMismatch,
			tamper: func(*upgraded) []string { return []string{`UPDATE audit_events SET details = '{"n":9}' WHERE seq = 2`} }},
		// The links from before are not keyed: rewritten, they hide the removal from the
		// team walk, but not from the vault-wide chain they stand on.
		{name: "an event from before removed, team links rewritten", seq: 3, reason: audit.SequenceGap,
			tamper: func(u *upgraded) []string {
				return []string{`DELETE FROM audit_events WHERE seq = 2`,
					fmt.Sprintf(`UPDATE audit_events SET team_seq = team_seq - 1 WHERE team_id = %d AND team_seq > 2`, u.acme),
					`UPDATE audit_events SET team_prev_hash = (SELECT hash FROM audit_events WHERE seq = 1) WHERE seq = 4`}
			}},
		// An event after the upgrade made to look like one from before: its team hash is no
		// longer the head's. (With the head moved too, it would be checked along the
		// vault-wide chain, as the events from before are.)
		{name: "an event after passed off as one from before", seq: 6, teamSeq: 4, reason: audit.LinkMismatch,
			tamper: func(*upgraded) []string { return []string{`UPDATE audit_events SET team_hash = hash WHERE seq = 6`} }},
		// Events from before may only come first: one after an event with a team hash of its
		// own is altered.
		{name: "an event passed off as one from before after one from after", seq: 9, teamSeq: 5, reason: audit.HashMismatch,
			tamper: func(u *upgraded) []string {
				u.appendAcme()
				return []string{`UPDATE audit_events SET team_hash = hash WHERE seq = 9`,
					fmt.Sprintf(`UPDATE audit_team_heads SET hash = (SELECT hash FROM audit_events WHERE seq = 9) WHERE team_id = %d`, u.acme)}
			}},
	} {
		for _, engine := range []string{"sqlite", "postgres"} {
			t.Run(tc.name+"/"+engine, func(t *testing.T) {
				u := newUpgraded(t, engine)
				u.exec(t, tc.tamper(u)...)
				r := u.verifyTeam(t, u.acme)
				if b := r.FirstBroken; r.OK || b == nil || b.Seq != tc.seq || b.TeamSeq != tc.teamSeq || b.Reason != tc.reason {
					t.Fatalf("%+v %+v, want the break at event %d, team event %d: %s", r, b, tc.seq, tc.teamSeq, tc.reason)
				}
				if r := u.verifyTeam(t, u.gamma); !r.OK {
					t.Fatalf("gamma's chain is untouched, yet %+v", r.FirstBroken)
				}
				if err := u.log.Verify(context.Background()); !errors.Is(err, audit.ErrBroken) {
					t.Fatalf("Verify: %v", err)
				}
			})
		}
	}
}
