package pgtest

import (
	"context"
	"database/sql"
	"os"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestDSNGivesEachTestItsOwnDatabase checks that the server answers and that a table made in
// one test's database is absent from the next one's.
func TestDSNGivesEachTestItsOwnDatabase(t *testing.T) {
	ctx := context.Background()
	a, err := sql.Open("pgx", DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.ExecContext(ctx, `CREATE TABLE marker (x int)`); err != nil {
		t.Fatal(err)
	}
	b, err := sql.Open("pgx", DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var n int
	if err := b.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'marker'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("a fresh database has the other test's table")
	}
	var v string
	if err := b.QueryRowContext(ctx, `SHOW server_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL %s at %s", v, srv.admin.Host)
}
