package auth_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
)

// TestMain stops the PostgreSQL server the tests started, if any.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestSharedLimiterTablesAreBounded: on PostgreSQL, where the failed-exchange limiter's tables
// are shared by the nodes, they stay within LimiterEntries plus what each node lets through
// between two of its prunes (a tenth of the bound here), however many key ids and addresses
// fail on however many nodes; and a pair past its limit is still refused afterwards.
func TestSharedLimiterTablesAreBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, dsn := testdb.OpenPostgres(t)
	raw, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	const entries, nodes = 50, 2
	clock := time.Unix(1_700_000_000, 0)
	now := func() time.Time { return clock }
	keys := testdb.Keys(t)
	var svcs [nodes]*auth.Service
	for i := range svcs {
		svcs[i] = auth.New(db, keys, auth.Options{LimiterEntries: entries, FailureLimit: 3, Now: now})
	}
	rows := func() (n [3]int) {
		for i, table := range []string{"exchange_pair_failures", "exchange_key_failures", "exchange_good_addresses"} {
			if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n[i]); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	const bound = entries + nodes*entries/10
	for i := range 20 * entries {
		if _, err := svcs[i%nodes].IssueToken(ctx, "acme", uuid.NewString(), secret.FromString("x"),
			fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)); !isUnauthorized(err) {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if n := rows(); n[0] > bound || n[1] > bound {
			t.Fatalf("after %d failures from distinct key ids and addresses: %d pair and %d key rows, over %d", i+1, n[0], n[1], bound)
		}
	}
	// A full table still counts a new pair, on every node.
	key := uuid.NewString()
	for i := range 3 {
		if _, err := svcs[i%nodes].IssueToken(ctx, "acme", key, secret.FromString("x"), "192.0.2.1"); !isUnauthorized(err) {
			t.Fatalf("guess %d of a new pair: %v", i, err)
		}
	}
	if _, err := svcs[1].IssueToken(ctx, "acme", key, secret.FromString("x"), "192.0.2.1"); !isRateLimited(err) {
		t.Fatalf("a pair past its limit in a full table: %v, want too_many_attempts", err)
	}
}

func isUnauthorized(err error) bool {
	fe, ok := fault.As(err)
	return ok && fe.Kind == fault.Unauthenticated
}

func isRateLimited(err error) bool {
	fe, ok := fault.As(err)
	return ok && fe.Kind == fault.RateLimited
}
