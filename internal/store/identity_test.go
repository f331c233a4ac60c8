package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func testTeams(t *testing.T, db *DB) {
	ctx := context.Background()
	local := time.FixedZone("X", 3600)
	var a, b Team
	mustTx(t, db, func(tx *Tx) error {
		var err error
		if a, err = tx.CreateTeam(ctx, "alpha", t0.In(local)); err != nil {
			return err
		}
		b, err = tx.CreateTeam(ctx, "beta", t0)
		return err
	})
	if a.ID == 0 || a.ID == b.ID {
		t.Fatalf("team ids %d, %d", a.ID, b.ID)
	}
	if a.CreatedAt.Location() != time.UTC || !a.CreatedAt.Equal(t0) {
		t.Fatalf("CreateTeam returned CreatedAt %v, want %v in UTC", a.CreatedAt, t0)
	}
	got, err := db.TeamByName(ctx, "alpha")
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("TeamByName = %+v, %v; want %+v", got, err, a)
	}
	if _, err := db.TeamByName(ctx, "ALPHA"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("TeamByName of another spelling = %v, want ErrNotFound", err)
	}
}

// identityFixture creates team, user, key and token through Tx and returns what it wrote.
type identityFixture struct {
	team Team
	user ServiceUser
	key  APIKey
	tok  Token
}

func newIdentity(t *testing.T, db *DB, teamName string) identityFixture {
	t.Helper()
	ctx := context.Background()
	keyExp := t0.Add(48 * time.Hour)
	f := identityFixture{
		user: ServiceUser{ID: "user-" + teamName, Name: "admin", Status: "active",
			Roles: []string{"resource_admin", "pam_admin"}, Folders: []string{"Shared/Okta", "Misc"}, CreatedAt: t0},
		key: APIKey{ID: "key-" + teamName, UserID: "user-" + teamName, SecretHash: []byte("hash-of-secret"),
			IssuedAt: t0.Add(time.Second), ExpiresAt: &keyExp},
		tok: Token{ID: "tok-" + teamName, KeyID: "key-" + teamName, Hash: []byte("hash-of-token"),
			IssuedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(time.Minute + time.Hour)},
	}
	mustTx(t, db, func(tx *Tx) error {
		var err error
		if f.team, err = tx.CreateTeam(ctx, teamName, t0); err != nil {
			return err
		}
		f.user.TeamID = f.team.ID
		if err := tx.CreateServiceUser(ctx, f.user); err != nil {
			return err
		}
		if err := tx.CreateAPIKey(ctx, f.key); err != nil {
			return err
		}
		return tx.CreateToken(ctx, f.tok)
	})
	return f
}

func testAPIKeyWithUser(t *testing.T, db *DB) {
	ctx := context.Background()
	f := newIdentity(t, db, "acme")
	newIdentity(t, db, "other")

	key, user, team, err := db.APIKeyWithUser(ctx, "acme", f.key.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantKey := f.key
	used := f.tok.IssuedAt // CreateToken marks the key used
	wantKey.LastUsed = &used
	if !reflect.DeepEqual(key, wantKey) {
		t.Errorf("key\n got %+v\nwant %+v", key, wantKey)
	}
	if !reflect.DeepEqual(user, f.user) {
		t.Errorf("user\n got %+v\nwant %+v", user, f.user)
	}
	if team.ID != f.team.ID || team.Name != "acme" {
		t.Errorf("team %+v, want id %d name acme", team, f.team.ID)
	}

	for _, c := range []struct{ team, key string }{
		{"other", f.key.ID},   // a key of another team
		{"ACME", f.key.ID},    // names are exact
		{"acme", "key-other"}, // the other team's key through this team
		{"acme", "nope"},
		{"nope", f.key.ID},
	} {
		if _, _, _, err := db.APIKeyWithUser(ctx, c.team, c.key); !errors.Is(err, ErrNotFound) {
			t.Errorf("APIKeyWithUser(%q, %q) = %v, want ErrNotFound", c.team, c.key, err)
		}
	}
}

func testAPIKeyWithUserNullsAndEmptyLists(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	deleted := t0.Add(time.Hour)
	user := ServiceUser{ID: "u", TeamID: team.ID, Name: "gone", Status: "disabled", CreatedAt: t0, DeletedAt: &deleted}
	key := APIKey{ID: "k", UserID: "u", SecretHash: []byte{0, 1, 2}, IssuedAt: t0}
	mustTx(t, db, func(tx *Tx) error {
		if err := tx.CreateServiceUser(ctx, user); err != nil {
			return err
		}
		return tx.CreateAPIKey(ctx, key)
	})
	gotKey, gotUser, _, err := db.APIKeyWithUser(ctx, "acme", "k")
	if err != nil {
		t.Fatal(err)
	}
	if gotKey.ExpiresAt != nil || gotKey.LastUsed != nil {
		t.Errorf("NULL times read back as %v, %v", gotKey.ExpiresAt, gotKey.LastUsed)
	}
	// nil lists are stored as [] and read back empty, never as JSON null.
	if gotUser.Roles == nil || len(gotUser.Roles) != 0 || gotUser.Folders == nil || len(gotUser.Folders) != 0 {
		t.Errorf("roles %#v folders %#v, want empty non-nil", gotUser.Roles, gotUser.Folders)
	}
	if gotUser.DeletedAt == nil || !gotUser.DeletedAt.Equal(deleted) || gotUser.Status != "disabled" {
		t.Errorf("user %+v", gotUser)
	}
}

func testTokenGrant(t *testing.T, db *DB) {
	ctx := context.Background()
	f := newIdentity(t, db, "acme")
	newIdentity(t, db, "other")

	g, err := db.TokenGrant(ctx, f.tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g.Token, f.tok) {
		t.Errorf("token\n got %+v\nwant %+v", g.Token, f.tok)
	}
	wantKey := f.key
	wantKey.SecretHash = nil // a grant does not carry the key's secret hash
	used := f.tok.IssuedAt
	wantKey.LastUsed = &used
	if !reflect.DeepEqual(g.Key, wantKey) {
		t.Errorf("key\n got %+v\nwant %+v", g.Key, wantKey)
	}
	if !reflect.DeepEqual(g.User, f.user) {
		t.Errorf("user\n got %+v\nwant %+v", g.User, f.user)
	}
	if !reflect.DeepEqual(g.Team, f.team) {
		t.Errorf("team\n got %+v\nwant %+v", g.Team, f.team)
	}
	if _, err := db.TokenGrant(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("TokenGrant of an unknown token = %v, want ErrNotFound", err)
	}
	other, err := db.TokenGrant(ctx, "tok-other")
	if err != nil || other.Team.Name != "other" || other.User.ID != "user-other" {
		t.Errorf("other team's grant = %+v, %v", other, err)
	}
}

// CreateToken drops the key's expired tokens (and only those) and marks the key used.
func testCreateTokenDropsExpired(t *testing.T, db *DB) {
	ctx := context.Background()
	f := newIdentity(t, db, "acme")
	newIdentity(t, db, "other") // its token has the same lifetime: must survive

	longLived := Token{ID: "long", KeyID: f.key.ID, Hash: []byte("h2"), IssuedAt: f.tok.IssuedAt,
		ExpiresAt: f.tok.IssuedAt.Add(10 * time.Hour)}
	mustTx(t, db, func(tx *Tx) error { return tx.CreateToken(ctx, longLived) })

	later := Token{ID: "later", KeyID: f.key.ID, Hash: []byte("h3"), IssuedAt: f.tok.ExpiresAt,
		ExpiresAt: f.tok.ExpiresAt.Add(time.Hour)}
	mustTx(t, db, func(tx *Tx) error { return tx.CreateToken(ctx, later) })

	if _, err := db.TokenGrant(ctx, f.tok.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired token still there: %v", err)
	}
	for _, id := range []string{"long", "later", "tok-other"} {
		if _, err := db.TokenGrant(ctx, id); err != nil {
			t.Errorf("token %s: %v", id, err)
		}
	}
	key, _, _, err := db.APIKeyWithUser(ctx, "acme", f.key.ID)
	if err != nil {
		t.Fatal(err)
	}
	if key.LastUsed == nil || !key.LastUsed.Equal(later.IssuedAt) {
		t.Errorf("LastUsed = %v, want %v", key.LastUsed, later.IssuedAt)
	}

	dup := later
	if err := db.Tx(ctx, func(tx *Tx) error { return tx.CreateToken(ctx, dup) }); !errors.Is(err, ErrConflict) {
		t.Errorf("the same token id twice = %v, want ErrConflict", err)
	}
}
