package postgresql

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	adminRole = "kt_admin"
	adminPW   = "Adm1n-pw-7f3c9e"
)

var (
	setupOnce sync.Once
	setupErr  error
	srvHost   string
	logPath   string
)

// testServer configures the shared test server once: password (SCRAM) logins over TCP for
// every role but the superuser, every statement in the log, and an admin role with a password.
func testServer(t *testing.T) (superURL string) {
	t.Helper()
	superURL = pgtest.RequirePasswords(t)
	_, dir := pgtest.Server(t)
	setupOnce.Do(func() { setupErr = configure(superURL, dir) })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return superURL
}

// configure logs every statement and creates the admin role.
func configure(superURL, dir string) error {
	ctx := context.Background()
	u, _ := url.Parse(superURL)
	srvHost = u.Host
	logPath = filepath.Join(dir, "server.log")
	conn, err := pgx.Connect(ctx, superURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"ALTER SYSTEM SET log_statement = 'all'",
		"CREATE ROLE " + adminRole + " WITH LOGIN SUPERUSER PASSWORD '" + adminPW + "'",
		"SELECT pg_reload_conf()",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	// The reload is asynchronous: wait until a new session sees the setting.
	for {
		c, err := pgx.Connect(ctx, superURL)
		if err != nil {
			return err
		}
		var v string
		err = c.QueryRow(ctx, "SHOW log_statement").Scan(&v)
		c.Close(ctx)
		if err != nil {
			return err
		}
		if v == "all" {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var roleCount int

// newRole creates a login role with a name that needs quoting and returns it.
func newRole(t *testing.T, superURL, password string) string {
	t.Helper()
	roleCount++
	name := fmt.Sprintf(`app "user" %d-%d`, os.Getpid(), roleCount)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, superURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" WITH LOGIN PASSWORD '"+password+"'"); err != nil {
		t.Fatal(err)
	}
	return name
}

func account(login string) connector.Account {
	return connector.Account{Login: login, Target: connector.Target{
		URL:        "postgres://" + srvHost + "/postgres?sslmode=disable",
		AdminLogin: adminRole, AdminSecret: secret.FromString(adminPW), Fields: map[string]string{},
	}}
}

func TestRotateNewLogsInOldRefused(t *testing.T) {
	superURL := testServer(t)
	ctx := context.Background()
	oldPW, newPW := "Old-pw-1a2b3c4d5e", "New-pw-9z8y7x6w5v'\"$"
	role := newRole(t, superURL, oldPW)
	a := account(role)
	c := New()
	if err := c.Verify(ctx, a, secret.FromString(oldPW)); err != nil {
		t.Fatalf("the old password before the rotation: %v", err)
	}
	if err := c.Rotate(ctx, a, secret.FromString(oldPW), secret.FromString(newPW)); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if err := c.Verify(ctx, a, secret.FromString(newPW)); err != nil {
		t.Fatalf("the new password is not accepted: %v", err)
	}
	err := c.Verify(ctx, a, secret.FromString(oldPW))
	if !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("the old password: got %v, want ErrRejected", err)
	}
	if strings.Contains(err.Error(), oldPW) {
		t.Fatalf("the error holds the password: %v", err)
	}
	// The server stores the verifier computed here: SCRAM-SHA-256, 4096 iterations, 16-byte salt.
	conn, err := pgx.Connect(ctx, superURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var stored string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	iter, salt, ok := parseVerifier(stored)
	if !ok || iter != 4096 || len(salt) != 16 {
		t.Fatalf("stored verifier %q: want SCRAM-SHA-256$4096:<16-byte salt>$…", stored)
	}
	// Idempotent: the engine resuming after a crash sends the same candidate again.
	if err := c.Rotate(ctx, a, secret.FromString(oldPW), secret.FromString(newPW)); err != nil {
		t.Fatalf("rotate again with the same candidate: %v", err)
	}
	if err := c.Verify(ctx, a, secret.FromString(newPW)); err != nil {
		t.Fatalf("the new password after the repeated change: %v", err)
	}
}

func parseVerifier(v string) (int, []byte, bool) {
	var iter int
	rest, ok := strings.CutPrefix(v, "SCRAM-SHA-256$")
	if !ok {
		return 0, nil, false
	}
	head, _, ok := strings.Cut(rest, "$")
	it, s, ok2 := strings.Cut(head, ":")
	if !ok || !ok2 {
		return 0, nil, false
	}
	if _, err := fmt.Sscan(it, &iter); err != nil {
		return 0, nil, false
	}
	salt, err := base64.StdEncoding.DecodeString(s)
	return iter, salt, err == nil
}

func TestWrongAdminCredentialLeavesUser(t *testing.T) {
	superURL := testServer(t)
	ctx := context.Background()
	oldPW, newPW, badAdmin := "Old-pw-keep-4711", "New-pw-never-0815", "not-the-admin-pw-42"
	role := newRole(t, superURL, oldPW)
	a := account(role)
	a.Target.AdminSecret = secret.FromString(badAdmin)
	c := New()
	err := c.Rotate(ctx, a, secret.FromString(oldPW), secret.FromString(newPW))
	var ce *connector.Error
	if !errors.As(err, &ce) || ce.Transient || ce.Code != "auth_failed" {
		t.Fatalf("rotate with a wrong admin password: got %v, want a permanent auth_failed", err)
	}
	if !connector.IsNotChanged(err) {
		t.Fatalf("a refused admin login must prove the target unchanged: %v", err)
	}
	for _, s := range []string{oldPW, newPW, badAdmin} {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("the error holds a password: %v", err)
		}
	}
	if err := c.Verify(ctx, a, secret.FromString(oldPW)); err != nil {
		t.Fatalf("the user's password changed: %v", err)
	}
	if err := c.Verify(ctx, a, secret.FromString(newPW)); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("the new password: got %v, want ErrRejected", err)
	}
}

func TestStatementLogHoldsNoPassword(t *testing.T) {
	superURL := testServer(t)
	ctx := context.Background()
	oldPW, newPW := "Old-pw-logscan-31337", "New-pw-logscan-27182"
	role := newRole(t, superURL, "Setup-pw-logscan-1")
	a := account(role)
	c := New()
	// The role's first password is set by the test in clear; rotate twice so that old and
	// new both pass through the connector.
	if err := c.Rotate(ctx, a, secret.FromString("Setup-pw-logscan-1"), secret.FromString(oldPW)); err != nil {
		t.Fatal(err)
	}
	if err := c.Rotate(ctx, a, secret.FromString(oldPW), secret.FromString(newPW)); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(ctx, a, secret.FromString(newPW)); err != nil {
		t.Fatal(err)
	}
	_ = c.Verify(ctx, a, secret.FromString(oldPW))
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" WITH PASSWORD 'SCRAM-SHA-256$4096:") {
		t.Fatalf("the server log does not show the change statement (is log_statement=all on?)")
	}
	for _, pw := range []string{oldPW, newPW, adminPW} {
		if strings.Contains(string(log), pw) {
			t.Fatalf("the server log holds a password")
		}
	}
}

func TestSelfRotation(t *testing.T) {
	superURL := testServer(t)
	ctx := context.Background()
	pw1, pw2 := "Self-pw-one-5150", "Self-pw-two-6160"
	role := newRole(t, superURL, pw1)
	conn, err := pgx.Connect(ctx, superURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" CREATEROLE"); err != nil {
		t.Fatal(err)
	}
	a := account(role)
	a.Target.AdminLogin, a.Target.AdminSecret = role, secret.FromString(pw1)
	c := New()
	err = c.Rotate(ctx, a, secret.FromString(pw1), secret.FromString(pw2))
	if !connector.IsNotChanged(err) || !strings.Contains(err.Error(), FieldSelfRotation) {
		t.Fatalf("rotating the admin's own role without the mode: got %v, want a refusal naming %q", err, FieldSelfRotation)
	}
	if err := c.Verify(ctx, a, secret.FromString(pw1)); err != nil {
		t.Fatalf("a refused self-rotation changed the password: %v", err)
	}
	a.Target.Fields[FieldSelfRotation] = "true"
	if err := c.Rotate(ctx, a, secret.FromString(pw1), secret.FromString(pw2)); err != nil {
		t.Fatalf("self-rotation with the mode set: %v", err)
	}
	if err := c.Verify(ctx, a, secret.FromString(pw2)); err != nil {
		t.Fatalf("the new password after self-rotation: %v", err)
	}
}

func TestUnreachableServerIsTransient(t *testing.T) {
	a := connector.Account{Login: "someone", Target: connector.Target{URL: "postgres://127.0.0.1:1/postgres?sslmode=disable",
		AdminLogin: "admin", AdminSecret: secret.FromString("Unreach-pw-1"), Fields: map[string]string{}}}
	c := New()
	err := c.Rotate(context.Background(), a, secret.FromString("x"), secret.FromString("Unreach-new-2"))
	if !connector.IsTransient(err) || !connector.IsNotChanged(err) {
		t.Fatalf("rotate against a closed port: got %v, want transient and not changed", err)
	}
	err = c.Verify(context.Background(), a, secret.FromString("Unreach-new-2"))
	if !connector.IsTransient(err) || errors.Is(err, connector.ErrRejected) {
		t.Fatalf("verify against a closed port: got %v, want transient, not rejected", err)
	}
	for _, s := range []string{"Unreach-pw-1", "Unreach-new-2"} {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("the error holds a password: %v", err)
		}
	}
}

func TestServerOf(t *testing.T) {
	for _, tc := range []struct {
		url    string
		fields map[string]string
		want   server
		bad    bool
	}{
		{"postgres://db.example/app?sslmode=require", nil, server{"db.example", "5432", "app", "require"}, false},
		{"", map[string]string{FieldHost: "db.example:6432", FieldDatabase: "crm"}, server{"db.example", "6432", "crm", DefaultSSLMode}, false},
		{"postgres://u:p@db.example/app", nil, server{}, true}, // credentials belong in the login/password fields
		{"https://db.example", nil, server{}, true},
		{"", map[string]string{FieldHost: "db.example", FieldSSLMode: "sometimes"}, server{}, true},
		{"", nil, server{}, true},
	} {
		a := connector.Account{Target: connector.Target{URL: tc.url, Fields: tc.fields}}
		got, err := serverOf(a)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("serverOf(%q, %v) = %+v, %v; want %+v, bad=%v", tc.url, tc.fields, got, err, tc.want, tc.bad)
		}
	}
}

// TestScramVerifierRFC7677 checks the derivation against RFC 7677's example (user, pencil,
// salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096): the client proof it gives verifies against the
// StoredKey computed here.
func TestScramVerifierRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	v, err := scramVerifier("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimPrefix(v, "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"), ":")
	if len(parts) != 2 {
		t.Fatalf("verifier %q", v)
	}
	storedKey, _ := base64.StdEncoding.DecodeString(parts[0])
	serverKey, _ := base64.StdEncoding.DecodeString(parts[1])
	authMessage := "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	proof, _ := base64.StdEncoding.DecodeString("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	sig := mac(storedKey, authMessage)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ sig[i]
	}
	if got := sha256.Sum256(clientKey); !hmac.Equal(got[:], storedKey) {
		t.Fatalf("the RFC 7677 client proof does not verify against StoredKey %s", parts[0])
	}
	wantServerSig := "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	if got := base64.StdEncoding.EncodeToString(mac(serverKey, authMessage)); got != wantServerSig {
		t.Fatalf("server signature %s, want %s", got, wantServerSig)
	}
}

// BenchmarkRotate measures a whole rotation (admin login, ALTER ROLE with a fresh verifier,
// a login as the role) against the bare ALTER ROLE on one open connection, by the same loop.
func BenchmarkRotate(b *testing.B) {
	superURL := pgtest.RequirePasswords(b)
	_, dir := pgtest.Server(b)
	setupOnce.Do(func() { setupErr = configure(superURL, dir) })
	if setupErr != nil {
		b.Fatal(setupErr)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, superURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	role := fmt.Sprintf("bench_%d", os.Getpid())
	if _, err := conn.Exec(ctx, "CREATE ROLE "+role+" WITH LOGIN PASSWORD 'Bench-0'"); err != nil {
		b.Fatal(err)
	}
	a := account(role)
	b.Run("connector", func(b *testing.B) {
		c, old := New(), secret.FromString("Bench-0")
		for i := 0; b.Loop(); i++ {
			next := secret.FromString(fmt.Sprintf("Bench-%d", i+1))
			if err := c.Rotate(ctx, a, old, next); err != nil {
				b.Fatal(err)
			}
			if err := c.Verify(ctx, a, next); err != nil {
				b.Fatal(err)
			}
			old = next
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
	})
	b.Run("bare_alter", func(b *testing.B) {
		v, err := ScramVerifier(secret.FromString("Bench-bare"))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := conn.Exec(ctx, "ALTER ROLE "+role+" WITH PASSWORD '"+v+"'", pgx.QueryExecModeSimpleProtocol); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alters/s")
	})
}

// A role that may not log in is no proof of a wrong password: Verify says it cannot tell.
func TestNoLoginRoleIsNotRejected(t *testing.T) {
	superURL := testServer(t)
	ctx := context.Background()
	pw := "NoLogin-pw-2468"
	role := newRole(t, superURL, pw)
	conn, err := pgx.Connect(ctx, superURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	err = New().Verify(ctx, account(role), secret.FromString(pw))
	var ce *connector.Error
	if err == nil || errors.Is(err, connector.ErrRejected) || !errors.As(err, &ce) || ce.Transient {
		t.Fatalf("verify a NOLOGIN role: got %v, want a permanent error that is not ErrRejected", err)
	}
}

// Passwords that SASLprep changes (compatibility characters, non-ASCII spaces) log in after
// the change: the verifier is computed from the prepared password, as clients prepare it.
func TestRotateNonASCIIPassword(t *testing.T) {
	superURL := testServer(t)
	ctx := context.Background()
	role := newRole(t, superURL, "Ascii-pw-1357")
	a := account(role)
	c := New()
	old := secret.FromString("Ascii-pw-1357")
	for i, pw := range []string{"Päss-ﬁ-№-\u00a0-Ⅸ-x", "Ünïcödé-密码-9"} {
		next := secret.FromString(pw)
		if err := c.Rotate(ctx, a, old, next); err != nil {
			t.Fatalf("rotate: %v", err)
		}
		if err := c.Verify(ctx, a, next); err != nil {
			t.Fatalf("new password %d does not log in: %v", i, err)
		}
		old = next
	}
}
