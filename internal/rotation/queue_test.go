package rotation

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/store"
)

// The run queue holds every run this node takes however many fall due at once (a bounded
// queue used to drop the overflow until the next sweep), hands them out oldest first, and
// never holds a run twice.
func TestTakeQueuesEveryRunOnceInOrder(t *testing.T) {
	t.Parallel()
	e := New(nil, nil, nil, nil, nil, Options{})
	e.runCtx, e.cancel = context.WithCancel(context.Background())
	defer e.cancel()
	const n = 20_000
	now := time.Now()
	for i := range n {
		e.take(store.Lease{RunID: fmt.Sprintf("run-%05d", i), Epoch: 1}, now)
		e.take(store.Lease{RunID: fmt.Sprintf("run-%05d", i/2), Epoch: 2}, now) // already held: ignored
	}
	for i := range n {
		id, ok := e.next()
		if want := fmt.Sprintf("run-%05d", i); !ok || id != want {
			t.Fatalf("take %d: %q %v, want %q", i, id, ok, want)
		}
	}
	if id, ok := e.next(); ok {
		t.Fatalf("the queue still holds %q", id)
	}
	select {
	case <-e.wake:
	default:
		t.Fatal("no worker was woken")
	}
	// A run still held by this process (queued or executing) is not queued again.
	e.take(store.Lease{RunID: "run-00001", Epoch: 3}, now)
	if _, ok := e.next(); ok {
		t.Fatal("a run that was never released was queued twice")
	}
	if h, _ := e.hold("run-00001"); h.epoch != 1 {
		t.Fatalf("the hold of run-00001 is at epoch %d, want the first claim's 1", h.epoch)
	}
}
