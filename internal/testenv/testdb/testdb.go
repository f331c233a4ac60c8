// Package testdb gives tests a fresh database to work on: a migrated SQLite file with a key
// ring and a team, or a whole data directory as `keyturn init` makes it. Each lives in the
// test's temporary directory and is closed when the test ends.
package testdb

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/keyring"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
)

// Open creates and migrates a SQLite database in a temporary directory and returns it with
// its file's path.
func Open(tb testing.TB) (*store.DB, string) {
	tb.Helper()
	ctx := context.Background()
	path := filepath.Join(tb.TempDir(), "keyturn.db")
	db, err := store.OpenSQLite(ctx, path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	return db, path
}

// OpenPostgres creates and migrates a database on the tests' PostgreSQL server (see pgtest;
// the test binary's TestMain must call pgtest.Main) and returns it with its URL.
func OpenPostgres(tb testing.TB) (*store.DB, string) {
	tb.Helper()
	ctx := context.Background()
	dsn := pgtest.DSN(tb)
	db, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	return db, dsn
}

// EnvStorage names the variable that makes DataDir use PostgreSQL ("postgres").
const EnvStorage = "KEYTURN_TEST_STORAGE"

// Keys returns a key ring with a new random master key (a key file, so no KDF cost).
func Keys(tb testing.TB) *keyring.Keyring {
	tb.Helper()
	keys, _, err := keyring.New(keyring.KeyFile(keyring.NewKeyFileContent()), keyring.KDFParams{})
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

// Team creates a team in db.
func Team(tb testing.TB, db *store.DB, name string) store.Team {
	tb.Helper()
	ctx := context.Background()
	var team store.Team
	if err := db.Tx(ctx, func(tx *store.Tx) (err error) {
		team, err = tx.CreateTeam(ctx, name, time.Now())
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	return team
}

// DataDir initialises a data directory for team in a temporary directory, as `keyturn init`
// does (with a key file), and opens it. It returns the open vault, the team admin's
// credentials and the directory. The vault is closed when the test ends, after the cleanups
// registered later (those that stop what runs on it).
//
// With KEYTURN_TEST_STORAGE=postgres, the database is a fresh one on the tests' PostgreSQL
// server instead (see pgtest), so that a package's tests can be run on PostgreSQL as well.
func DataDir(tb testing.TB, team string) (*datadir.Vault, auth.Credentials, string) {
	tb.Helper()
	return DataDirOn(tb, os.Getenv(EnvStorage), team)
}

// DataDirOn is DataDir on the engine named: "sqlite" or "" for the SQLite file in the data
// directory, "postgres" for a fresh database on the tests' PostgreSQL server.
func DataDirOn(tb testing.TB, engine, team string) (*datadir.Vault, auth.Credentials, string) {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	var storage string
	switch engine {
	case "", "sqlite":
	case "postgres":
		storage = pgtest.DSN(tb)
	default:
		tb.Fatalf("testdb: no engine %q (sqlite or postgres)", engine)
	}
	creds, err := datadir.InitStorage(ctx, dir, storage, team, datadir.Unseal{})
	if err != nil {
		tb.Fatal(err)
	}
	dv, err := datadir.OpenStorage(ctx, dir, storage, datadir.Unseal{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dv.Close() })
	return dv, creds, dir
}
