package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
)

// apiJSON calls the API of team acme with a JSON body and decodes the answer into out,
// failing the test unless the status is want.
func (s *server) apiJSON(t *testing.T, token, method, path string, body any, want int, out any) {
	t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	status, got := s.call(t, method, "/v1/teams/acme"+path, token, bytes.NewReader(raw))
	if status != want {
		t.Fatalf("%s %s: %d %s", method, path, status, got)
	}
	if out != nil {
		if err := json.Unmarshal(got, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, got)
		}
	}
}

// On PostgreSQL (--storage), init makes the vault in the database and leaves only the key
// file in the data directory; the server serves it and rotates a native Okta user, whose
// new password is the vault's current one, also after a restart; a second init on the same
// database refuses, and so does a second server with the first one's node name.
func TestPostgresInitServeRotate(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := filepath.Join(t.TempDir(), "data")
	creds := initVault(t, dir, "--storage", dsn)
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != datadir.KeyFileName {
		t.Fatalf("the data directory holds %v (%v), want only %s", entries, err, datadir.KeyFileName)
	}
	if code, _, errOut := keyturn(t, "init", "--data", filepath.Join(t.TempDir(), "other"), "--team", "beta",
		"--storage", dsn); code == 0 || !strings.Contains(errOut, "already holds a keyturn vault") {
		t.Fatalf("a second init on the database: exit %d: %s", code, errOut)
	}

	srv := startServer(t, "--data", dir, "--storage", dsn, "--target-rate", "0", "--node", "n1")
	token := srv.token(t, creds)
	okta := newOktaUser(t, srv, token)
	emu, login, oldPassword := okta.emu, okta.login, okta.password
	user := struct{ UID string }{okta.uid}
	var run struct {
		Status string          `json:"status"`
		Error  json.RawMessage `json:"error"`
	}
	srv.apiJSON(t, token, "POST", "/records/"+user.UID+"/rotate?wait=60s", nil, http.StatusOK, &run)
	if run.Status != "succeeded" {
		t.Fatalf("the rotation ended %s: %s", run.Status, run.Error)
	}
	current := func(s *server, token string) string {
		var got struct {
			Value string `json:"value"`
		}
		s.apiJSON(t, token, "GET", "/notation?ref=keeper://"+user.UID+"/field/password", nil, http.StatusOK, &got)
		return got.Value
	}
	live, _ := emu.Password(login)
	if live == oldPassword || current(srv, token) != live {
		t.Fatalf("after the rotation Okta has a password that is not the vault's current one (or the old one)")
	}

	// A second server on the same database as node n1, with a copy of the key file, refuses to
	// start.
	other := t.TempDir()
	key, err := os.ReadFile(filepath.Join(dir, datadir.KeyFileName))
	if err != nil || os.WriteFile(filepath.Join(other, datadir.KeyFileName), key, 0o600) != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	second := exec.CommandContext(ctx, os.Args[0], "server", "--listen", "127.0.0.1:0", "--data", other, "--storage", dsn, "--node", "n1")
	second.Env = append(os.Environ(), "KEYTURN_TEST_MAIN=1")
	out, err := second.CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "another keyturn server runs as this node") {
		t.Fatalf("a second server on the database: %v: %s", err, out)
	}

	srv.stop(t)
	srv = startServer(t, "--data", dir, "--storage", dsn, "--node", "n1")
	if got := current(srv, srv.token(t, creds)); got != live {
		t.Fatalf("after a restart the vault's current password is not Okta's")
	}
	srv.stop(t)
}

// /readyz on a server on PostgreSQL answers 200 ready while the database answers and the keys
// are unsealed, 503 database_unreachable while the database refuses connections, and 200
// again once it accepts them.
func TestPostgresReadyz(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := filepath.Join(t.TempDir(), "data")
	initVault(t, dir, "--storage", dsn)
	srv := startServer(t, "--data", dir, "--storage", dsn)
	type answer struct {
		Status, Database, Keys string
		Code, Message          string
	}
	readyz := func() (int, answer) {
		t.Helper()
		status, body := srv.call(t, "GET", "/readyz", "", nil)
		var a answer
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("/readyz: %v in %s", err, body)
		}
		return status, a
	}
	if status, a := readyz(); status != http.StatusOK || a != (answer{Status: "ready", Database: "reachable", Keys: "unsealed"}) {
		t.Fatalf("/readyz on a healthy server: %d %+v", status, a)
	}

	// Close the vault's database to every connection, and end those it has.
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	admin, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := context.Background()
	run := func(q string) {
		t.Helper()
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	run("ALTER DATABASE " + name + " ALLOW_CONNECTIONS false")
	run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name + "'")
	status, a := readyz()
	if status != http.StatusServiceUnavailable || a.Code != "database_unreachable" || !strings.Contains(a.Message, "database cannot be reached") {
		t.Fatalf("/readyz with the database closed: %d %+v, want 503 database_unreachable", status, a)
	}
	if strings.Contains(a.Message, name) || strings.Contains(a.Message, u.Host) {
		t.Fatalf("/readyz names the database's address or name: %s", a.Message)
	}

	run("ALTER DATABASE " + name + " ALLOW_CONNECTIONS true")
	if status, a := readyz(); status != http.StatusOK || a.Status != "ready" {
		t.Fatalf("/readyz once the database is back: %d %+v", status, a)
	}
	srv.stop(t)
}

// The commands that open the data directly take the vault's database too: on PostgreSQL,
// team add with --storage adds a team whose admin key the server then accepts, and audit
// verify --data with KEYTURN_STORAGE verifies that team's chain; without the storage, team add
// finds no vault in the directory and changes nothing.
func TestPostgresTeamAddAndAuditVerify(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := filepath.Join(t.TempDir(), "data")
	initVault(t, dir, "--storage", dsn)

	if code, out, errOut := keyturn(t, "team", "add", "--data", dir, "--team", "gamma"); code == 0 {
		t.Fatalf("team add without the storage succeeded: %s", out)
	} else if strings.Contains(errOut, dsn) {
		t.Fatalf("team add's error names the storage URL: %s", errOut)
	}
	code, out, errOut := keyturn(t, "team", "add", "--data", dir, "--team", "beta", "--storage", dsn)
	if code != 0 {
		t.Fatalf("team add --storage: exit %d: %s", code, errOut)
	}
	var creds initOutput
	if err := json.Unmarshal([]byte(out), &creds); err != nil || creds.TeamName != "beta" || creds.KeySecret == "" {
		t.Fatalf("team add --storage printed %q (%v)", out, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != datadir.KeyFileName {
		t.Fatalf("after team add the data directory holds %v (%v), want only %s", entries, err, datadir.KeyFileName)
	}

	t.Setenv("KEYTURN_STORAGE", dsn)
	code, out, errOut = keyturn(t, "audit", "verify", "--data", dir, "--team", "beta")
	if code != 0 || !strings.Contains(out, "The audit chain holds") {
		t.Fatalf("audit verify --data with KEYTURN_STORAGE: exit %d: %s%s", code, out, errOut)
	}
	t.Setenv("KEYTURN_STORAGE", "")

	srv := startServer(t, "--data", dir, "--storage", dsn)
	body, _ := json.Marshal(map[string]string{"key_id": creds.KeyID, "key_secret": creds.KeySecret})
	if status, raw := srv.call(t, "POST", "/v1/teams/beta/service_token", "", bytes.NewReader(body)); status != http.StatusOK {
		t.Fatalf("the server refuses the new team's admin key: %d %s", status, raw)
	}
	if status, raw := srv.call(t, "POST", "/v1/teams/gamma/service_token", "", bytes.NewReader(body)); status == http.StatusOK {
		t.Fatalf("team gamma exists after a failed team add: %s", raw)
	}
	srv.stop(t)
}

// TestPostgresNodeLockSurvivesItsSession ends the database sessions of a running server, its
// node lock's among them. The server must take the lock again as soon as it can, so that a
// second server with its node name still refuses to start; and when another process took the
// lock first, the server must stop at once rather than work on the runs the other takes over.
func TestPostgresNodeLockSurvivesItsSession(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := filepath.Join(t.TempDir(), "data")
	initVault(t, dir, "--storage", dsn)
	srv := startServer(t, "--data", dir, "--storage", dsn, "--node", "n1")
	nodeLockKey := store.NodeLockKey("n1")

	vault, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer vault.Close()
	ctx := context.Background()
	// One session of the test's own, which ending the others spares.
	conn, err := vault.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var name string
	if err := conn.QueryRowContext(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	endSessions := func() {
		t.Helper()
		if _, err := conn.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, name); err != nil {
			t.Fatal(err)
		}
	}
	holder := func() int {
		t.Helper()
		var pid int
		err := conn.QueryRowContext(ctx, `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND ((classid::bigint << 32) | objid::bigint) = $1`, nodeLockKey).Scan(&pid)
		if errors.Is(err, sql.ErrNoRows) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	before := holder()
	if before == 0 {
		t.Fatal("the server holds no node lock")
	}

	// 1. The session ends: the server takes the lock again, and a second server is refused.
	endSessions()
	deadline := time.Now().Add(30 * time.Second)
	for p := holder(); p == 0 || p == before; p = holder() {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after its session ended, the server has not taken the node lock again (holder pid %d)", p)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A second server, with a copy of the key file in another data directory: only the
	// database's lock can refuse it.
	other := t.TempDir()
	key, err := os.ReadFile(filepath.Join(dir, datadir.KeyFileName))
	if err != nil || os.WriteFile(filepath.Join(other, datadir.KeyFileName), key, 0o600) != nil {
		t.Fatal(err)
	}
	secondCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	second := exec.CommandContext(secondCtx, os.Args[0], "server", "--listen", "127.0.0.1:0", "--data", other, "--storage", dsn, "--node", "n1")
	second.Env = append(os.Environ(), "KEYTURN_TEST_MAIN=1")
	if out, err := second.CombinedOutput(); err == nil || secondCtx.Err() != nil ||
		!strings.Contains(string(out), "another keyturn server runs as this node") {
		t.Fatalf("a second server on the database, once the first took its lock again: %v: %s", err, out)
	}

	// 2. The session ends and another process takes the lock first: the server stops at once.
	// (the server checks its lock every second, so it may take the lock back first: try again)
	got := false
	for try := 0; !got; try++ {
		if try == 20 {
			t.Fatal("could not take the node lock after ending the server's session 20 times")
		}
		endSessions()
		// The ended backend lets go of the lock as it exits, a moment later.
		for wait := time.Now().Add(500 * time.Millisecond); !got && time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
			if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", nodeLockKey).Scan(&got); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case err := <-srv.exited:
		if err == nil || !strings.Contains(srv.stderr.String(), "another keyturn server took the lock") {
			t.Fatalf("the server stopped with %v, log:\n%s", err, srv.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server still runs 30 s after another process took its node lock")
	}
}

// oktaUser is a user of an Okta emulator whose password a server rotates natively.
type oktaUser struct {
	emu             *emulator.Emulator
	login, password string // the user's login and its password before any rotation
	uid             string // the pamUser record's uid
}

// newOktaUser starts an Okta emulator with one user, and creates on srv (team acme) the
// records of a native okta rotation of that user: the org's record and the pamUser.
func newOktaUser(t *testing.T, srv *server, token string) oktaUser {
	t.Helper()
	emu := emulator.New(emulator.Options{Users: 1, AuthnPerUserPerSecond: -1})
	emuSrv := httptest.NewServer(emu)
	t.Cleanup(func() { emu.Close(); emuSrv.Close() })
	u := oktaUser{emu: emu, login: emulator.SeedLogin(1), password: emulator.SeedPassword(1)}
	field := func(typ, value string) map[string]any { return map[string]any{"type": typ, "value": []string{value}} }
	var api, user struct {
		UID string `json:"uid"`
	}
	srv.apiJSON(t, token, "POST", "/records", map[string]any{"type": "login", "title": "Okta API Access Details", "folder": "Okta",
		"fields": []any{field("url", emuSrv.URL), field("password", emu.Token())}}, http.StatusCreated, &api)
	srv.apiJSON(t, token, "POST", "/records", map[string]any{"type": "pamUser", "title": "okta user", "folder": "Okta",
		"fields": []any{field("login", u.login), field("password", u.password)}}, http.StatusCreated, &user)
	srv.apiJSON(t, token, "PUT", "/records/"+user.UID+"/rotation",
		map[string]any{"method": "general", "connector": "okta", "resource_uid": api.UID}, http.StatusOK, nil)
	u.uid = user.UID
	return u
}
