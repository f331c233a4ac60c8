package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/testenv/pgtest"
)

// TestMain stops the PostgreSQL server the tests started, if any.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// t0 is a fixed instant with a nanosecond part, so time round trips are checked exactly.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC)

// openTestDB opens and migrates a fresh database in a temporary directory.
func openTestDB(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyturn.db")
	db, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A test that found a hang must still end: give up on a Close that hangs too.
		closed := make(chan struct{})
		go func() { db.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Error("Close hung")
		}
	})
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db, path
}

// openPostgresTestDB opens and migrates a fresh database on the tests' PostgreSQL server.
func openPostgresTestDB(t testing.TB) *DB {
	t.Helper()
	db, err := OpenPostgres(context.Background(), pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

func mustTx(t testing.TB, db *DB, fn func(*Tx) error) {
	t.Helper()
	if err := db.Tx(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func mustTeam(t testing.TB, db *DB, name string) Team {
	t.Helper()
	var team Team
	mustTx(t, db, func(tx *Tx) error {
		var err error
		team, err = tx.CreateTeam(context.Background(), name, t0)
		return err
	})
	return team
}

func teamExists(t *testing.T, db *DB, name string) bool {
	t.Helper()
	_, err := db.TeamByName(context.Background(), name)
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrNotFound):
		return false
	default:
		t.Fatalf("TeamByName(%q): %v", name, err)
		return false
	}
}

// holdCommitter starts a Tx whose fn blocks until release is called, and returns once that fn
// is running: every Tx queued meanwhile waits, and the committer takes them as one batch
// (up to maxBatch) once released. release returns the held Tx's result.
func holdCommitter(t *testing.T, db *DB) (release func() error) {
	t.Helper()
	running, unblock, result := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		result <- db.Tx(context.Background(), func(*Tx) error {
			close(running)
			<-unblock
			return nil
		})
	}()
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("the holding transaction never started")
	}
	var (
		once sync.Once
		err  error
	)
	return func() error {
		once.Do(func() {
			close(unblock)
			select {
			case err = <-result:
			case <-time.After(10 * time.Second):
				err = errors.New("the holding transaction never finished")
			}
		})
		return err
	}
}

// waitQueued waits until n requests wait in the committer's queue.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(db.commits.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", len(db.commits.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// boomError is the error fn i returns on purpose.
type boomError struct{ i int }

func (e boomError) Error() string { return fmt.Sprintf("boom %d", e.i) }

// withTimeout fails the test if f does not return within d (a hang, not a slow test).
func withTimeout(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still running after %s (hang)", what, d)
	}
}
