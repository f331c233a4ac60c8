package rotation

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
)

// twoNodes returns the rate limits of two nodes on one fresh PostgreSQL database, each
// through its own connection pool, keeping the time of clock.
func twoNodes(t testing.TB, perSecond float64, burst int, clock Clock) [2]*targets {
	t.Helper()
	db, dsn := testdb.OpenPostgres(t)
	other, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	return [2]*targets{newTargets(perSecond, burst, clock).sharedOn(db), newTargets(perSecond, burst, clock).sharedOn(other)}
}

// Two nodes that take every token they can of one target, over 10 s of the rate limit's clock,
// get together what one node alone would: the burst and 10 s of the rate, not twice that.
func TestTargetsHoldTheirRateAcrossNodes(t *testing.T) {
	t.Parallel()
	const perSecond, burst = 10, 5
	clock := NewManualClock()
	nodes := twoNodes(t, perSecond, burst, clock)
	const a = "okta https://acme.okta.com"
	taken := [2]int{}
	for step := 0; ; step++ {
		for j := range nodes {
			i := (j + step) % 2 // each node asks first in turn
			for nodes[i].allow(a) {
				taken[i]++
			}
		}
		if step == 200 {
			break
		}
		clock.Advance(50 * time.Millisecond)
	}
	// The tokens of 10 s at 10 a second, and the burst (one may be lost to rounding).
	if total, most := taken[0]+taken[1], burst+10*perSecond; total > most || total < most-1 {
		t.Fatalf("two nodes took %v tokens in 10 s, want %d between them", taken, most)
	}
	// The runs they admit draw on the same tokens: none is left for either node now.
	if ok, _ := nodes[1].admit(a, "r1", true, func(string) {}); ok {
		t.Fatal("a run was admitted with the cluster's tokens spent")
	}
	// Another target has its own bucket.
	if !nodes[0].allow("okta https://other.okta.com") {
		t.Fatal("another target was held back")
	}
}

// Operations that wait for their turn on two nodes are spaced by the target's rate between
// them: the k-th operation asked for at one instant, on either node, goes after
// (k+1-burst)/rate, and a wait on one node ends only when the clock reaches its turn.
func TestTargetsSpaceWaitsAcrossNodes(t *testing.T) {
	t.Parallel()
	const perSecond, burst = 4, 2
	clock := NewManualClock()
	nodes := twoNodes(t, perSecond, burst, clock)
	const a = "rest https://api.example.com"
	ctx := context.Background()
	now := clock.Now()
	for k := range 10 {
		delay, _ := nodes[k%2].reserve(ctx, nodes[k%2].get(a), now)
		want := time.Duration(max(k+1-burst, 0)) * time.Second / perSecond
		if delay != want {
			t.Fatalf("operation %d (node %d) waits %v, want %v", k, k%2, delay, want)
		}
	}
	// The next one, on node B, waits behind all ten: (11-2)/4 s.
	synctest.Test(t, func(t *testing.T) {
		done := make(chan time.Duration, 1)
		go func() {
			waited, err := nodes[1].wait(ctx, a)
			if err != nil {
				t.Error(err)
			}
			done <- waited
		}()
		synctest.Wait()
		clock.Advance(2249 * time.Millisecond)
		synctest.Wait()
		if len(done) > 0 {
			t.Fatal("a wait ended before its turn")
		}
		clock.Advance(time.Millisecond)
		if waited := <-done; waited != 2250*time.Millisecond {
			t.Fatalf("waited %v, want 2.25s", waited)
		}
	})
}

// The cost of one connector operation's token: the in-memory limiter of one node, and the
// cluster's bucket on PostgreSQL (one statement), taken by one caller at a time and by many
// callers on two nodes at once (one target's row: the contended case). The rate is set so high
// that no operation waits: what is measured is the limiter, not the limit.
func BenchmarkTargetToken(b *testing.B) {
	const a = "okta https://acme.okta.com"
	ctx := context.Background()
	b.Run("memory", func(b *testing.B) {
		tg := newTargets(1e9, 1e6, realClock{})
		for b.Loop() {
			if _, err := tg.wait(ctx, a); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("postgres", func(b *testing.B) {
		nodes := twoNodes(b, 1e9, 1e6, realClock{})
		for b.Loop() {
			if _, err := nodes[0].wait(ctx, a); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("postgres-2-nodes-parallel", func(b *testing.B) {
		nodes := twoNodes(b, 1e9, 1e6, realClock{})
		var next atomic.Int64
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			n := nodes[next.Add(1)%2]
			for pb.Next() {
				if _, err := n.wait(ctx, a); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
