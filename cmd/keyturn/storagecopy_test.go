package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
)

// tableCounts counts the rows of every table storage copy copies, and the audit chain's
// newest event, in the database storage.
func tableCounts(t *testing.T, storage string) (map[string]int64, int64) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, storage)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	counts := map[string]int64{}
	for _, table := range store.CopiedTables() {
		n, err := db.CountRows(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		counts[table] = n
	}
	events, err := db.AllAuditEvents(ctx, 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	var head int64
	if len(events) > 0 {
		head = events[len(events)-1].Seq
	}
	return counts, head
}

// storage copy moves a SQLite vault with records, password versions, a rotation setting,
// runs, two teams, service users, keys and audit events into PostgreSQL: it refuses while a
// server holds the data directory; the copy has as many rows in every table as the source,
// a server on it serves the rotated password by notation, audit verify passes on it with the
// source's head, and events appended on PostgreSQL chain on (audit_head was set). A second
// copy into the same database is refused, exit 1, and changes nothing.
func TestStorageCopySQLiteToPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := filepath.Join(t.TempDir(), "data")
	creds := initVault(t, dir)
	if code, _, errOut := keyturn(t, "team", "add", "--data", dir, "--team", "beta"); code != 0 {
		t.Fatalf("team add: exit %d: %s", code, errOut)
	}

	srv := startServer(t, "--data", dir, "--target-rate", "0")
	token := srv.token(t, creds)
	okta := newOktaUser(t, srv, token)
	emu, login, oldPassword := okta.emu, okta.login, okta.password
	user := struct{ UID string }{okta.uid}
	var run struct {
		Status string `json:"status"`
	}
	for range 2 {
		srv.apiJSON(t, token, "POST", "/records/"+user.UID+"/rotate?wait=60s", nil, http.StatusOK, &run)
		if run.Status != "succeeded" {
			t.Fatalf("the rotation ended %s", run.Status)
		}
	}
	live, _ := emu.Password(login)

	// Bad command lines: exit 2, and nothing is opened.
	for _, args := range [][]string{
		{"storage", "copy", "--from", dir, "--to", dsn},
		{"storage", "copy", "--from", "sqlite:" + dir, "--to", filepath.Join(t.TempDir(), "x.db")},
		{"audit", "verify", "--data", dir, "--team", "acme", "--storage", filepath.Join(t.TempDir(), "x.db")},
	} {
		if code, _, errOut := keyturn(t, args...); code != 2 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
	}

	// A server holds the data directory: the copy is refused and writes nothing.
	if code, _, errOut := keyturn(t, "storage", "copy", "--from", "sqlite:"+dir, "--to", dsn); code != 1 ||
		!strings.Contains(errOut, "data directory in use") || !strings.Contains(errOut, "stop the server") {
		t.Fatalf("a copy beside the server: exit %d: %s", code, errOut)
	}
	srv.stop(t)

	code, verifyOut, errOut := keyturn(t, "audit", "verify", "--data", dir, "--team", "acme")
	if code != 0 {
		t.Fatalf("audit verify on SQLite: exit %d: %s", code, errOut)
	}
	want, wantHead := tableCounts(t, store.SQLitePath(dir))
	for _, table := range []string{"teams", "service_users", "api_keys", "records", "password_versions",
		"rotation_settings", "rotation_runs", "audit_events", "keyring"} {
		if want[table] == 0 {
			t.Fatalf("the source has no rows in %s: the test copies too little", table)
		}
	}

	code, out, errOut := keyturn(t, "storage", "copy", "--from", "sqlite:"+dir, "--to", dsn)
	if code != 0 {
		t.Fatalf("storage copy: exit %d: %s", code, errOut)
	}
	got, gotHead := tableCounts(t, dsn)
	for table, n := range want {
		if got[table] != n {
			t.Errorf("table %s: %d rows in the copy, %d in the source", table, got[table], n)
		}
	}
	if gotHead != wantHead || !strings.Contains(out, "audit chain's head is event") {
		t.Fatalf("the copy's audit head is %d, the source's %d; output:\n%s", gotHead, wantHead, out)
	}

	// audit verify passes on the copy, with the same count and head as on the source.
	code, copyVerifyOut, errOut := keyturn(t, "audit", "verify", "--data", dir, "--storage", dsn, "--team", "acme")
	if code != 0 || copyVerifyOut != verifyOut {
		t.Fatalf("audit verify on the copy: exit %d: %q %s, on the source %q", code, copyVerifyOut, errOut, verifyOut)
	}
	// So does the vault-wide chain's.
	if code, out, errOut := keyturn(t, "audit", "verify", "--chain", "vault", "--data", dir, "--storage", dsn, "--team", "acme"); code != 0 ||
		!strings.Contains(out, "vault-wide audit chain holds") {
		t.Fatalf("audit verify --chain vault on the copy: exit %d: %s %s", code, out, errOut)
	}

	// A server on the copy serves the rotated password, and its new events chain on.
	srv = startServer(t, "--data", dir, "--storage", dsn, "--target-rate", "0")
	token = srv.token(t, creds)
	var secret struct {
		Value string `json:"value"`
	}
	srv.apiJSON(t, token, "GET", "/notation?ref=keeper://"+user.UID+"/field/password", nil, http.StatusOK, &secret)
	if secret.Value != live || live == oldPassword {
		t.Fatal("the copy's current password is not the one Okta has")
	}
	srv.apiJSON(t, token, "POST", "/records", map[string]any{"type": "login", "title": "after the copy", "folder": "x",
		"fields": []any{map[string]any{"type": "password", "value": []string{"s3cret-after"}}}}, http.StatusCreated, nil)
	srv.stop(t)
	if code, out, errOut := keyturn(t, "audit", "verify", "--data", dir, "--storage", dsn, "--team", "acme"); code != 0 || out == copyVerifyOut {
		t.Fatalf("audit verify after a write on the copy: exit %d: %s %s", code, out, errOut)
	}

	// A second copy into the same database: exit 1, a clear message, nothing changed.
	before, beforeHead := tableCounts(t, dsn)
	code, _, errOut = keyturn(t, "storage", "copy", "--from", "sqlite:"+dir, "--to", dsn)
	if code != 1 || !strings.Contains(errOut, "not empty") || !strings.Contains(errOut, "nothing was copied") {
		t.Fatalf("a second copy: exit %d: %s", code, errOut)
	}
	after, afterHead := tableCounts(t, dsn)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("a refused copy changed table %s: %d rows, were %d", table, after[table], n)
		}
	}
	if afterHead != beforeHead {
		t.Fatalf("a refused copy moved the audit head from %d to %d", beforeHead, afterHead)
	}
}
