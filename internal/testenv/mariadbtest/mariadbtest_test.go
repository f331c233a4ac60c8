package mariadbtest

import (
	"context"
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestStart proves the server runs, root logs in over the socket, and the general log records
// statements.
func TestStart(t *testing.T) {
	s := Start(t)
	db := s.Root(t)
	var v string
	if err := db.QueryRowContext(context.Background(), "SELECT VERSION() /* mariadbtest-marker */").Scan(&v); err != nil {
		t.Fatal(err)
	}
	t.Logf("server %s started in %v on %s", v, s.StartupTime(), s.Addr())
	log, err := os.ReadFile(s.GeneralLog)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(log, "mariadbtest-marker") {
		t.Fatalf("the general log does not record statements:\n%s", log)
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
