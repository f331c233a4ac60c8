package ui_test

import (
	"crypto/sha256"
	"database/sql"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv"
)

// useLink follows a one-time sign-in link's token in a fresh browser and returns the page and
// the browser (signed in when the link worked).
func useLink(t *testing.T, env *testenv.Env, token string) (page, *browser) {
	t.Helper()
	b := newBrowser(t, env.Server.URL)
	p := b.get("/ui/signin/once?token=" + url.QueryEscape(token))
	if c := sessionCookie(p.resp); c != nil && c.Value != "" {
		b.cookie = c
	}
	return p, b
}

// TestSignInLinkWorksOnce: a one-time sign-in link opens a session for its key and is then
// used up; the database holds only its hash; it expires; a wrong key secret gets none.
func TestSignInLinkWorksOnce(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	ctx := t.Context()
	tok, expires, err := env.Auth.CreateSignInLink(ctx, "acme", env.Creds.KeyID, env.Creds.KeySecret)
	if err != nil {
		t.Fatal(err)
	}
	if d := expires.Sub(env.Clock.Now()); d <= 0 || d > auth.SignInLinkTTL {
		t.Fatalf("the link lives %s", d)
	}
	if strings.Contains(tok.Reveal(), env.Creds.KeySecret.Reveal()) || strings.Contains(tok.Reveal(), env.Creds.KeyID) {
		t.Fatal("the link's token holds the key")
	}
	db, err := sql.Open("sqlite", "file:"+store.SQLitePath(env.Dir)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sum := sha256.Sum256([]byte(tok.Reveal()))
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM ui_signin_links WHERE token_hash = ? AND key_id = ?`, sum[:], env.Creds.KeyID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("no link stored under the token's SHA-256: %d %v", n, err)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM ui_signin_links WHERE token_hash = ?`, []byte(tok.Reveal())).Scan(&n); err != nil || n != 0 {
		t.Fatalf("a link is stored under the token itself")
	}

	p, b := useLink(t, env, tok.Reveal())
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/ui/records" || b.cookie == nil {
		t.Fatalf("first use: %d %q", p.status, p.header.Get("Location"))
	}
	checkHeaders(t, "sign-in link", p.header)
	if rec := b.get("/ui/records"); rec.status != http.StatusOK || !strings.Contains(rec.body, "admin · team acme") {
		t.Fatalf("the link's session: %d", rec.status)
	}
	again, b2 := useLink(t, env, tok.Reveal())
	if again.status != http.StatusUnauthorized || b2.cookie != nil || !strings.Contains(again.body, `id="signin-error"`) {
		t.Fatalf("second use: %d", again.status)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM ui_signin_links`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d links left after use", n)
	}
	for _, bad := range []string{"", "nonsense", tok.Reveal() + "x"} {
		if p, b := useLink(t, env, bad); p.status != http.StatusUnauthorized || b.cookie != nil {
			t.Errorf("token %q: %d", bad, p.status)
		}
	}

	// Expired: refused, and used up all the same.
	old, _, err := env.Auth.CreateSignInLink(ctx, "acme", env.Creds.KeyID, env.Creds.KeySecret)
	if err != nil {
		t.Fatal(err)
	}
	env.Clock.Advance(auth.SignInLinkTTL + time.Second)
	if p, b := useLink(t, env, old.Reveal()); p.status != http.StatusUnauthorized || b.cookie != nil {
		t.Fatalf("an expired link: %d", p.status)
	}

	// Only the key's secret gets a link.
	if _, _, err := env.Auth.CreateSignInLink(ctx, "acme", env.Creds.KeyID, secret.FromString("wrong")); err == nil {
		t.Fatal("a link for a wrong secret")
	}
	if _, _, err := env.Auth.CreateSignInLink(ctx, "beta", env.Creds.KeyID, env.Creds.KeySecret); err == nil {
		t.Fatal("a link for another team")
	}
}

// TestSignInLinkDiesWithItsKeyOrUser: a link of a key since deleted, or of a user since
// disabled, opens no session.
func TestSignInLinkDiesWithItsKeyOrUser(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	k := newUser(t, env, "linked", []string{"security_admin"}, nil)
	disabled, _, err := env.Auth.CreateSignInLink(t.Context(), "acme", k.ID, secret.FromString(k.Secret))
	if err != nil {
		t.Fatal(err)
	}
	if st := env.Do(t, "PUT", "/v1/teams/acme/service_users/linked", map[string]any{"status": "DISABLED"}, nil); st != http.StatusOK {
		t.Fatalf("disable: %d", st)
	}
	if p, b := useLink(t, env, disabled.Reveal()); p.status != http.StatusUnauthorized || b.cookie != nil {
		t.Fatalf("a disabled user's link: %d", p.status)
	}
	if st := env.Do(t, "PUT", "/v1/teams/acme/service_users/linked", map[string]any{"status": "ACTIVE"}, nil); st != http.StatusOK {
		t.Fatalf("enable: %d", st)
	}
	deleted, _, err := env.Auth.CreateSignInLink(t.Context(), "acme", k.ID, secret.FromString(k.Secret))
	if err != nil {
		t.Fatal(err)
	}
	if st := env.Do(t, "DELETE", "/v1/teams/acme/service_users/linked/keys/"+k.ID, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete key: %d", st)
	}
	if p, b := useLink(t, env, deleted.Reveal()); p.status != http.StatusUnauthorized || b.cookie != nil {
		t.Fatalf("a deleted key's link: %d", p.status)
	}
}
