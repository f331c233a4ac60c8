package audit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
)

// memorySink keeps what it is sent; it refuses the first failures sends, and with keepFailed
// it keeps a refused batch anyway (a sink that took the events but could not say so).
type memorySink struct {
	mu         sync.Mutex
	got        []audit.Exported
	sends      int
	failures   int
	keepFailed bool
}

func (s *memorySink) Send(_ context.Context, events []audit.Exported) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends++
	if s.sends <= s.failures {
		if s.keepFailed {
			s.got = append(s.got, events...)
		}
		return errors.New("sink down")
	}
	s.got = append(s.got, events...)
	return nil
}

func (s *memorySink) Close() error { return nil }

func (s *memorySink) seqs() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int64, len(s.got))
	for i, e := range s.got {
		out[i] = e.Seq
	}
	return out
}

type trail struct {
	db   *store.DB
	log  *audit.Log
	team store.Team
	path string
}

func newTrail(t *testing.T) *trail {
	t.Helper()
	db, path := testdb.Open(t)
	return &trail{db: db, log: audit.New(db, testdb.Keys(t)), path: path, team: testdb.Team(t, db, "acme")}
}

// add appends n events, one transaction each.
func (tr *trail) add(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if err := tr.db.Tx(ctx, func(tx *store.Tx) error {
			return tr.log.Append(ctx, tx, tr.team.ID, audit.Event{Type: audit.RecordUpdated, Actor: "test", RecordUID: fmt.Sprintf("uid-%d", i)})
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor waits until the sink holds at least n events.
func waitFor(t *testing.T, s *memorySink, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(s.seqs()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the sink holds %d events, want %d", len(s.seqs()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var fast = audit.ForwarderOptions{Poll: 5 * time.Millisecond, Batch: 40, RetryMax: 20 * time.Millisecond}

// A sink gets every event once and in order, through failed sends; after a restart it gets
// only what came since, and a second sink has a position of its own.
func TestForwarderDeliversEveryEventInOrder(t *testing.T) {
	t.Parallel()
	tr := newTrail(t)
	tr.add(t, 150)
	down := &memorySink{failures: 3}
	f := audit.NewForwarder(tr.db, map[string]audit.Sink{"siem": down}, fast)
	f.Start()
	waitFor(t, down, 150)
	tr.add(t, 30) // while running
	waitFor(t, down, 180)
	f.Stop()
	assertSeqs(t, down.seqs(), 1, 180)
	if e := down.got[0]; e.Team != "acme" || e.Type != audit.RecordUpdated || e.Hash == "" || e.PrevHash != "" {
		t.Fatalf("first event %+v", e)
	}
	if down.got[1].PrevHash != down.got[0].Hash {
		t.Fatal("an event's prev_hash is not the hash before it")
	}

	tr.add(t, 25) // while stopped
	again, other := &memorySink{}, &memorySink{}
	f = audit.NewForwarder(tr.db, map[string]audit.Sink{"siem": again, "archive": other}, fast)
	f.Start()
	waitFor(t, again, 25)
	waitFor(t, other, 205)
	f.Stop()
	assertSeqs(t, again.seqs(), 181, 205)
	assertSeqs(t, other.seqs(), 1, 205)
}

// A batch the sink kept without acknowledging it is sent again: events may come twice, never
// go missing, and never come out of order.
func TestForwarderResendsWhatWasNotAcknowledged(t *testing.T) {
	t.Parallel()
	tr := newTrail(t)
	tr.add(t, 100)
	s := &memorySink{failures: 2, keepFailed: true}
	f := audit.NewForwarder(tr.db, map[string]audit.Sink{"siem": s}, fast)
	f.Start()
	waitFor(t, s, 100+2*fast.Batch)
	f.Stop()
	seqs := s.seqs()
	seen := map[int64]bool{}
	for i, q := range seqs {
		seen[q] = true
		if i > 0 && q != seqs[i-1]+1 && q > seqs[i-1] {
			t.Fatalf("seq %d follows %d: a gap", q, seqs[i-1])
		}
	}
	for q := int64(1); q <= 100; q++ {
		if !seen[q] {
			t.Fatalf("event %d never reached the sink", q)
		}
	}
	if n := len(seqs); n != 100+2*fast.Batch {
		t.Fatalf("%d deliveries, want 100 and the twice-refused first batch again: %v", n, seqs)
	}
}

func assertSeqs(t *testing.T, got []int64, first, last int64) {
	t.Helper()
	if len(got) != int(last-first+1) {
		t.Fatalf("%d events, want %d..%d: %v", len(got), first, last, got)
	}
	for i, q := range got {
		if q != first+int64(i) {
			t.Fatalf("event %d is seq %d, want %d", i, q, first+int64(i))
		}
	}
}
