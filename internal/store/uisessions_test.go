package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

// TestUISessionConformance holds both backends to the web UI sessions' contract.
func TestUISessionConformance(t *testing.T) {
	cases := []struct {
		name string
		run  func(*testing.T, *DB)
	}{
		{"RoundTrip", testUISessionRoundTrip},
		{"DiesWithItsTokenAndKey", testUISessionDiesWithItsKey},
		{"CreateDropsExpired", testUISessionCreateDropsExpired},
		{"SignInLinkUsedOnce", testUISignInLinkUsedOnce},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, b.open(t)) })
			}
		})
	}
}

func uiSession(f identityFixture, id string, created, expires time.Time) UISession {
	h := sha256.Sum256([]byte(id))
	return UISession{IDHash: h[:], TokenID: f.tok.ID, KeyID: f.key.ID, TeamID: f.team.ID,
		CSRFToken: "csrf-" + id, CreatedAt: created.UTC(), ExpiresAt: expires.UTC()}
}

func testUISessionRoundTrip(t *testing.T, db *DB) {
	ctx := context.Background()
	f := newIdentity(t, db, "acme")
	s := uiSession(f, "one", t0.Add(time.Minute), f.tok.ExpiresAt)
	mustTx(t, db, func(tx *Tx) error { return tx.CreateUISession(ctx, s) })
	got, err := db.UISession(ctx, s.IDHash)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("UISession = %+v, %v\nwant %+v", got, err, s)
	}
	if err := db.Tx(ctx, func(tx *Tx) error { return tx.CreateUISession(ctx, s) }); !errors.Is(err, ErrConflict) {
		t.Errorf("a second session with the same id: %v, want ErrConflict", err)
	}
	other := sha256.Sum256([]byte("two"))
	if _, err := db.UISession(ctx, other[:]); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown session: %v, want ErrNotFound", err)
	}
	// Deleting a session deletes the token it stands for too.
	mustTx(t, db, func(tx *Tx) error { return tx.DeleteUISession(ctx, s.IDHash) })
	if _, err := db.UISession(ctx, s.IDHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v, want ErrNotFound", err)
	}
	if _, err := db.TokenGrant(ctx, f.tok.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the session's token after delete: %v, want ErrNotFound", err)
	}
	if err := db.Tx(ctx, func(tx *Tx) error { return tx.DeleteUISession(ctx, s.IDHash) }); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v, want ErrNotFound", err)
	}
	if !slices.Contains(copySkipped, "ui_sessions") || slices.Contains(copyTables, "ui_sessions") {
		t.Errorf("storage copy must skip ui_sessions")
	}
}

func testUISessionDiesWithItsKey(t *testing.T, db *DB) {
	ctx := context.Background()
	f := newIdentity(t, db, "acme")
	g := newIdentity(t, db, "other")
	s := uiSession(f, "one", t0.Add(time.Minute), f.tok.ExpiresAt)
	keep := uiSession(g, "two", t0.Add(time.Minute), g.tok.ExpiresAt)
	mustTx(t, db, func(tx *Tx) error {
		if err := tx.CreateUISession(ctx, s); err != nil {
			return err
		}
		return tx.CreateUISession(ctx, keep)
	})
	mustTx(t, db, func(tx *Tx) error { return tx.DeleteAPIKey(ctx, f.user.ID, f.key.ID) })
	if _, err := db.UISession(ctx, s.IDHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("the session of a deleted key: %v, want ErrNotFound", err)
	}
	if _, err := db.UISession(ctx, keep.IDHash); err != nil {
		t.Errorf("another key's session: %v", err)
	}
}

func testUISessionCreateDropsExpired(t *testing.T, db *DB) {
	ctx := context.Background()
	f := newIdentity(t, db, "acme")
	g := newIdentity(t, db, "other")
	old := uiSession(f, "old", t0, t0.Add(time.Hour))
	otherTeam := uiSession(g, "other", t0, t0.Add(time.Hour))
	mustTx(t, db, func(tx *Tx) error {
		if err := tx.CreateUISession(ctx, old); err != nil {
			return err
		}
		return tx.CreateUISession(ctx, otherTeam)
	})
	fresh := uiSession(f, "fresh", t0.Add(2*time.Hour), t0.Add(3*time.Hour))
	mustTx(t, db, func(tx *Tx) error { return tx.CreateUISession(ctx, fresh) })
	if _, err := db.UISession(ctx, old.IDHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("an expired session of the team: %v, want it dropped", err)
	}
	if _, err := db.UISession(ctx, otherTeam.IDHash); err != nil {
		t.Errorf("another team's expired session is dropped too: %v", err)
	}
	if _, err := db.UISession(ctx, fresh.IDHash); err != nil {
		t.Errorf("the new session: %v", err)
	}
}

// testUISignInLinkUsedOnce: a link is returned by the one use that deletes it, never again;
// creating one drops the expired; deleting its key deletes it.
func testUISignInLinkUsedOnce(t *testing.T, db *DB) {
	ctx := context.Background()
	f := newIdentity(t, db, "acme")
	link := func(tok string, created, expires time.Time) UISignInLink {
		h := sha256.Sum256([]byte(tok))
		return UISignInLink{TokenHash: h[:], KeyID: f.key.ID, TeamID: f.team.ID, CreatedAt: created.UTC(), ExpiresAt: expires.UTC()}
	}
	a := link("a", t0, t0.Add(15*time.Minute))
	mustTx(t, db, func(tx *Tx) error { return tx.CreateUISignInLink(ctx, a) })
	var got UISignInLink
	mustTx(t, db, func(tx *Tx) (err error) { got, err = tx.ConsumeUISignInLink(ctx, a.TokenHash); return err })
	if !reflect.DeepEqual(got, a) {
		t.Fatalf("ConsumeUISignInLink = %+v, want %+v", got, a)
	}
	if err := db.Tx(ctx, func(tx *Tx) error { _, err := tx.ConsumeUISignInLink(ctx, a.TokenHash); return err }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a second use: %v, want ErrNotFound", err)
	}
	// Creating a link drops the expired ones.
	b := link("b", t0, t0.Add(time.Minute))
	mustTx(t, db, func(tx *Tx) error { return tx.CreateUISignInLink(ctx, b) })
	c := link("c", t0.Add(2*time.Minute), t0.Add(17*time.Minute))
	mustTx(t, db, func(tx *Tx) error { return tx.CreateUISignInLink(ctx, c) })
	if err := db.Tx(ctx, func(tx *Tx) error { _, err := tx.ConsumeUISignInLink(ctx, b.TokenHash); return err }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an expired link survived the next one's creation: %v", err)
	}
	// Deleting the key deletes its links.
	mustTx(t, db, func(tx *Tx) error { return tx.DeleteAPIKey(ctx, f.user.ID, f.key.ID) })
	if err := db.Tx(ctx, func(tx *Tx) error { _, err := tx.ConsumeUISignInLink(ctx, c.TokenHash); return err }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a deleted key's link survived: %v", err)
	}
}
