package okta_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/connector/okta"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/secret"
)

func org(t *testing.T, o emulator.Options) (*emulator.Emulator, *httptest.Server) {
	t.Helper()
	emu := emulator.New(o)
	srv := httptest.NewServer(emu)
	t.Cleanup(func() {
		emu.Close()
		srv.Close()
	})
	return emu, srv
}

func account(srv *httptest.Server, emu *emulator.Emulator, login string, fields map[string]string) connector.Account {
	return connector.Account{Login: login, Target: connector.Target{URL: srv.URL, AdminSecret: secret.FromString(emu.Token()), Fields: fields}}
}

func TestRotateAndVerify(t *testing.T) {
	t.Parallel()
	emu, srv := org(t, emulator.Options{Users: 3})
	c := okta.New(okta.Options{})
	ctx := context.Background()
	login := emulator.SeedLogin(2)
	a := account(srv, emu, login, nil)
	old, next := secret.FromString(emulator.SeedPassword(2)), secret.FromString("Zq9#new-Rotated-pw")
	if err := c.Verify(ctx, a, old); err != nil {
		t.Fatalf("verify the seeded password: %v", err)
	}
	if err := c.Rotate(ctx, a, old, next); err != nil {
		t.Fatal(err)
	}
	if pw, _ := emu.Password(login); pw != next.Reveal() {
		t.Fatalf("Okta holds %q", pw)
	}
	if err := c.Verify(ctx, a, next); err != nil {
		t.Fatalf("verify new: %v", err)
	}
	if err := c.Verify(ctx, a, old); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("verify old: %v", err)
	}
	if !c.CanVerify(a) || c.CanVerify(account(srv, emu, login, map[string]string{okta.FieldVerify: "False"})) {
		t.Fatal("CanVerify does not follow the Okta Verify field")
	}
}

func TestWrongOldPasswordAndAdminReset(t *testing.T) {
	t.Parallel()
	emu, srv := org(t, emulator.Options{Users: 1})
	c := okta.New(okta.Options{})
	ctx := context.Background()
	login := emulator.SeedLogin(1)
	next := secret.FromString("Zq9#new-Rotated-pw")
	err := c.Rotate(ctx, account(srv, emu, login, nil), secret.FromString("not-the-old-Pw1"), next)
	var ce *connector.Error
	if !errors.As(err, &ce) || ce.Transient || ce.Code != "okta_e0000014" {
		t.Fatalf("wrong old password: %v", err)
	}
	if pw, _ := emu.Password(login); pw != emulator.SeedPassword(1) {
		t.Fatal("a refused change changed the password")
	}
	withReset := account(srv, emu, login, map[string]string{okta.FieldAdminReset: "True"})
	if err := c.Rotate(ctx, withReset, secret.FromString("not-the-old-Pw1"), next); err != nil {
		t.Fatalf("admin reset: %v", err)
	}
	if pw, _ := emu.Password(login); pw != next.Reveal() {
		t.Fatal("the admin reset did not set the password")
	}
}

func TestErrorsAreClassified(t *testing.T) {
	t.Parallel()
	emu, srv := org(t, emulator.Options{Users: 1})
	c := okta.New(okta.Options{})
	ctx := context.Background()
	pw := secret.FromString(emulator.SeedPassword(1))
	for name, tc := range map[string]struct {
		acct      connector.Account
		code      string
		transient bool
	}{
		"bad token":     {connector.Account{Login: emulator.SeedLogin(1), Target: connector.Target{URL: srv.URL, AdminSecret: secret.FromString("nope")}}, "okta_e0000011", false},
		"unknown login": {account(srv, emu, "nobody@example.com", nil), "okta_e0000007", false},
		"no org url":    {connector.Account{Login: "x", Target: connector.Target{AdminSecret: secret.FromString("t")}}, "no_org_url", false},
		"unreachable":   {connector.Account{Login: "x", Target: connector.Target{URL: "http://127.0.0.1:1", AdminSecret: secret.FromString("t")}}, "network", true},
	} {
		err := c.Rotate(ctx, tc.acct, pw, secret.FromString("Zq9#new-Rotated-pw"))
		var ce *connector.Error
		if !errors.As(err, &ce) || ce.Code != tc.code || ce.Transient != tc.transient {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestHonoursRateLimitHeaders: when X-Rate-Limit-Remaining reaches 0 the connector waits for
// the window's reset instead of drawing a 429.
func TestHonoursRateLimitHeaders(t *testing.T) {
	t.Parallel()
	emu, srv := org(t, emulator.Options{Users: 1, RateWindow: 2 * time.Second,
		RateLimits: map[string]int{emulator.BucketAuthn: 2}})
	c := okta.New(okta.Options{})
	a := account(srv, emu, emulator.SeedLogin(1), nil)
	pw := secret.FromString(emulator.SeedPassword(1))
	start := time.Now()
	for i := range 5 {
		if err := c.Verify(context.Background(), a, pw); err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
	}
	if elapsed := time.Since(start); elapsed < 2*time.Second {
		t.Fatalf("5 checks against a limit of 2 per 2 s took only %v", elapsed)
	}
	if n := emu.Stats().Sent429; n != 0 {
		t.Fatalf("the connector drew %d 429s", n)
	}
}

// TestCallsInFlightCountAgainstTheLimit: an answer's Remaining was counted when its request
// arrived, so calls still in flight must come off it. Three calls go out at once against a
// limit of 3; the first answer says 2 remain while the other two are still out. Two more calls
// made then must wait for the window to reset, not reach Okta and draw 429s.
func TestCallsInFlightCountAgainstTheLimit(t *testing.T) {
	t.Parallel()
	const limit = 3
	var mu sync.Mutex
	arrived := 0
	allIn, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived++
		n := arrived
		if n == limit {
			close(allIn)
		}
		mu.Unlock()
		now := time.Now()
		h := w.Header()
		h.Set("Date", now.UTC().Format(http.TimeFormat))
		h.Set("X-Rate-Limit-Limit", strconv.Itoa(limit))
		h.Set("X-Rate-Limit-Remaining", strconv.Itoa(max(limit-n, 0)))
		h.Set("X-Rate-Limit-Reset", strconv.FormatInt(now.Add(time.Minute).Unix(), 10))
		if n > limit {
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"errorCode":"E0000047"}`))
			return
		}
		<-allIn
		if n > 1 {
			<-release // the first answer goes back alone
		}
		_, _ = w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	defer srv.Close()
	defer close(release)
	c := okta.New(okta.Options{})
	a := connector.Account{Login: "u@example.com", Target: connector.Target{URL: srv.URL, AdminSecret: secret.FromString("token")}}
	pw := secret.FromString("Password-1")
	first := make(chan error, limit)
	for range limit {
		go func() { first <- c.Verify(context.Background(), a, pw) }()
	}
	if err := <-first; err != nil {
		t.Fatalf("the first call: %v", err)
	}
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := c.Verify(ctx, a, pw)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d while the window's last calls are in flight: %v, want it held back", i+1, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if arrived != limit {
		t.Fatalf("%d calls reached Okta, limit %d", arrived, limit)
	}
}

func TestOAuthPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	emu, srv := org(t, emulator.Options{Users: 3})
	emu.AddOAuthClient(emulator.OAuthClient{ClientID: "0oa-rotator", Keys: []emulator.OAuthKey{
		{KID: "rsa-1", PublicKey: &rsaKey.PublicKey}, {KID: "ec-1", PublicKey: &ecKey.PublicKey}}})
	emu.AddOAuthClient(emulator.OAuthClient{ClientID: "0oa-reader", Scopes: []string{"okta.users.read"},
		Keys: []emulator.OAuthKey{{KID: "rsa-1", PublicKey: &rsaKey.PublicKey}}})
	pemOf := func(key any) secret.Secret {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return secret.New(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	c := okta.New(okta.Options{})
	ctx := context.Background()
	for i, tc := range []struct {
		key any
		kid string
	}{{rsaKey, "rsa-1"}, {ecKey, "ec-1"}} {
		login := emulator.SeedLogin(i + 1)
		a := connector.Account{Login: login, Target: connector.Target{URL: srv.URL,
			Fields:  map[string]string{okta.FieldClientID: "0oa-rotator", okta.FieldKeyID: tc.kid},
			Secrets: map[string]secret.Secret{okta.FieldPrivateKey: pemOf(tc.key)}}}
		next := secret.FromString("Zq9#oauth-Rotated-pw")
		if err := c.Rotate(ctx, a, secret.FromString(emulator.SeedPassword(i+1)), next); err != nil {
			t.Fatalf("%s: %v", tc.kid, err)
		}
		if pw, _ := emu.Password(login); pw != next.Reveal() {
			t.Fatalf("%s: Okta holds %q", tc.kid, pw)
		}
		if err := c.Verify(ctx, a, next); err != nil {
			t.Fatalf("%s: verify: %v", tc.kid, err)
		}
	}
	// An app not granted okta.users.manage: Okta refuses the scopes rotation asks for.
	a := connector.Account{Login: emulator.SeedLogin(3), Target: connector.Target{URL: srv.URL,
		Fields:  map[string]string{okta.FieldClientID: "0oa-reader", okta.FieldKeyID: "rsa-1"},
		Secrets: map[string]secret.Secret{okta.FieldPrivateKey: pemOf(rsaKey)}}}
	err = c.Rotate(ctx, a, secret.FromString(emulator.SeedPassword(3)), secret.FromString("Zq9#oauth-Rotated-pw"))
	var ce *connector.Error
	if !errors.As(err, &ce) || ce.Transient || ce.Code != "okta_oauth_invalid_scope" {
		t.Fatalf("missing scope: %v", err)
	}
	// An unknown client is refused at the token endpoint.
	a.Target.Fields[okta.FieldClientID] = "0oa-unknown"
	if err := c.Rotate(ctx, a, secret.FromString("x"), secret.FromString("y")); !errors.As(err, &ce) || ce.Transient {
		t.Fatalf("unknown client: %v", err)
	}
}

// TestOAuthDPoP: an app that requires DPoP (Okta's default for new API Services apps) gets
// DPoP-bound tokens: the connector answers the token endpoint's invalid_dpop_proof and
// use_dpop_nonce, signs a proof for every API call, and asks for later tokens with a proof and
// the nonce at once.
func TestOAuthDPoP(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Tokens live 30 s: less than the minute before expiry at which the connector renews, so
	// every operation mints a new one.
	emu, srv := org(t, emulator.Options{Users: 2, AccessTokenTTL: 30 * time.Second})
	emu.AddOAuthClient(emulator.OAuthClient{ClientID: "0oa-dpop", RequireDPoP: true,
		Keys: []emulator.OAuthKey{{KID: "ec-1", PublicKey: &ecKey.PublicKey}}})
	der, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	a := connector.Account{Login: emulator.SeedLogin(1), Target: connector.Target{URL: srv.URL,
		Fields:  map[string]string{okta.FieldClientID: "0oa-dpop", okta.FieldKeyID: "ec-1"},
		Secrets: map[string]secret.Secret{okta.FieldPrivateKey: secret.New(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}}}
	c := okta.New(okta.Options{})
	ctx := context.Background()
	next := secret.FromString("Zq9#dpop-Rotated-pw")
	if err := c.Rotate(ctx, a, secret.FromString(emulator.SeedPassword(1)), next); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if pw, _ := emu.Password(a.Login); pw != next.Reveal() {
		t.Fatalf("Okta holds %q", pw)
	}
	tokenCalls := func() int64 { return emu.Stats().Requests[emulator.EndpointOAuthToken] }
	// The first token took three requests (no proof, no nonce, then both); Rotate made two
	// API calls (get the user, change the password), each with a token of its own.
	first := tokenCalls()
	if first != 3+1 {
		t.Fatalf("%d token requests for the first two calls, want 4", first)
	}
	a.Login = emulator.SeedLogin(2)
	if err := c.Rotate(ctx, a, secret.FromString(emulator.SeedPassword(2)), next); err != nil {
		t.Fatalf("rotate another user: %v", err)
	}
	if got := tokenCalls() - first; got != 2 {
		t.Fatalf("%d token requests for two more calls, want 2: later tokens carry proof and nonce at once", got)
	}
	if n := emu.Stats().RateLimited[emulator.EndpointOAuthToken]; n != 0 {
		t.Fatalf("%d token requests rate limited", n)
	}
}

// TestRotateErrorsSayWhetherTheChangeWasSent: a wrong API token stops Rotate at the user
// lookup, and a revoked one at change_password's authentication: both prove the password
// unchanged (connector.ErrNotChanged). A refusal of the change itself, a 500, and a timeout or
// reset after Okta applied the change do not, and the last two did change the password.
func TestRotateErrorsSayWhetherTheChangeWasSent(t *testing.T) {
	t.Parallel()
	emu, srv := org(t, emulator.Options{Users: 6})
	ctx := context.Background()
	c := okta.New(okta.Options{Client: &http.Client{Timeout: 300 * time.Millisecond}})
	next := secret.FromString("Zq9#new-Rotated-pw")
	rotate := func(i int, old string, token string) error {
		a := account(srv, emu, emulator.SeedLogin(i), nil)
		if token != "" {
			a.Target.AdminSecret = secret.FromString(token)
		}
		return c.Rotate(ctx, a, secret.FromString(old), next)
	}
	unchanged := func(i int) bool {
		pw, _ := emu.Password(emulator.SeedLogin(i))
		return pw == emulator.SeedPassword(i)
	}

	if err := rotate(1, emulator.SeedPassword(1), "not-the-token"); !connector.IsNotChanged(err) || !unchanged(1) {
		t.Fatalf("wrong token: %v (not changed: %v)", err, connector.IsNotChanged(err))
	}
	// The connector knows user 2's id; then the token is revoked.
	err := c.Rotate(ctx, account(srv, emu, emulator.SeedLogin(2), nil), secret.FromString("wrong-old-Pw1"), next)
	if err == nil {
		t.Fatal("a wrong old password was accepted")
	} else if connector.IsNotChanged(err) {
		t.Fatalf("a refused change_password counts as never sent: %v", err)
	}
	emu.AddToken("second-token")
	emu.RevokeToken(emu.Token())
	if err := rotate(2, emulator.SeedPassword(2), ""); !connector.IsNotChanged(err) || !unchanged(2) {
		t.Fatalf("revoked token: %v (not changed: %v)", err, connector.IsNotChanged(err))
	}

	onChange := func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/change_password") }
	for i, f := range map[int]emulator.Faults{
		3: {Error500Rate: 1, Match: onChange},
		4: {ResetRate: 1, AfterApply: true, Match: onChange},
		5: {TimeoutRate: 1, AfterApply: true, Match: onChange},
	} {
		emu.SetFaults(f)
		err := rotate(i, emulator.SeedPassword(i), "second-token")
		if err == nil || connector.IsNotChanged(err) {
			t.Fatalf("fault %+v: %v (not changed: %v)", f, err, connector.IsNotChanged(err))
		}
		if f.AfterApply && unchanged(i) {
			t.Fatalf("fault %+v: the change was not applied", f)
		}
	}
	emu.SetFaults(emulator.Faults{})
}
