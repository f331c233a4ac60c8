package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
)

// newPostgresTrail is a trail on a fresh PostgreSQL database, and a second connection pool to
// it: another node.
func newPostgresTrail(t *testing.T) (*trail, *store.DB) {
	t.Helper()
	db, dsn := testdb.OpenPostgres(t)
	other, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	return &trail{db: db, log: audit.New(db, testdb.Keys(t)), team: testdb.Team(t, db, "acme")}, other
}

// Two nodes on one database, each with a Forwarder to the same sink, send it every event
// once, in order, while both run; when the one exporting stops, the other goes on from the
// cursor.
func TestForwardersOnOneDatabaseSendEachEventOnce(t *testing.T) {
	t.Parallel()
	tr, nodeB := newPostgresTrail(t)
	siem := &memorySink{}
	tr.add(t, 200)
	a := audit.NewForwarder(tr.db, map[string]audit.Sink{"siem": siem}, fast)
	b := audit.NewForwarder(nodeB, map[string]audit.Sink{"siem": siem}, fast)
	a.Start()
	b.Start()
	tr.add(t, 100) // while both run
	waitFor(t, siem, 300)
	a.Stop() // whichever node exported, the other one goes on
	tr.add(t, 100)
	waitFor(t, siem, 400)
	b.Stop()
	assertSeqs(t, siem.seqs(), 1, 400)
}

// hangingSink is a node's connection to a sink whose send number hangAt hangs (a paused
// node, a stalled network) until release is closed, and then delivers its batch anyway.
type hangingSink struct {
	memorySink
	hangAt  int
	calls   int
	hung    chan struct{}
	release chan struct{}
}

func (s *hangingSink) Send(ctx context.Context, events []audit.Exported) error {
	s.mu.Lock()
	s.calls++
	hang := s.calls == s.hangAt
	s.mu.Unlock()
	if hang {
		close(s.hung)
		<-s.release
	}
	return s.memorySink.Send(ctx, events)
}

// A node stuck in a send past its lease loses the sink to another node, which sends from the
// cursor on, without a gap; when the stuck send comes back, its node cannot move the cursor
// (back or on) and sends nothing more. Only the batch it had in flight reaches the sink twice.
func TestForwarderTakeOverFromAStuckNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr, nodeB := newPostgresTrail(t)
	tr.add(t, 200)
	stuck := &hangingSink{hangAt: 2, hung: make(chan struct{}), release: make(chan struct{})}
	a := audit.NewForwarder(tr.db, map[string]audit.Sink{"siem": stuck}, fast)
	a.Start()
	<-stuck.hung // events 1..40 acknowledged, 41..80 in flight

	// Node B's clock is an hour ahead: to it, node A's lease has run out, as after a pause.
	later := fast
	later.Now = func() time.Time { return time.Now().Add(time.Hour) }
	fresh := &memorySink{}
	b := audit.NewForwarder(nodeB, map[string]audit.Sink{"siem": fresh}, later)
	b.Start()
	waitFor(t, fresh, 160)
	waitForCursor(t, tr.db, 200)

	close(stuck.release) // node A's send comes back, acknowledged
	a.Stop()
	if seq, err := tr.db.AuditSinkCursor(ctx, "siem"); err != nil || seq != 200 {
		t.Fatalf("after the stuck node's send the cursor is %d (%v), want 200", seq, err)
	}
	tr.add(t, 20)
	waitFor(t, fresh, 180)
	b.Stop()
	assertSeqs(t, stuck.seqs(), 1, 80) // its first batch and the one it had in flight
	assertSeqs(t, fresh.seqs(), 41, 220)
	if seq, err := tr.db.AuditSinkCursor(ctx, "siem"); err != nil || seq != 220 {
		t.Fatalf("the cursor is %d (%v), want 220", seq, err)
	}
}

// waitForCursor waits until the sink "siem" acknowledged every event up to seq.
func waitForCursor(t *testing.T, db *store.DB, seq int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := db.AuditSinkCursor(context.Background(), "siem")
		if err != nil {
			t.Fatal(err)
		}
		if got >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cursor is %d, want %d", got, seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
