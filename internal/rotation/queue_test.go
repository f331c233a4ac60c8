package rotation

import (
	"fmt"
	"testing"
)

// The run queue holds every dispatched run however many fall due at once (a bounded queue
// used to drop the overflow until the next sweep), hands them out oldest first, and never
// holds a run twice.
func TestDispatchQueuesEveryRunOnceInOrder(t *testing.T) {
	t.Parallel()
	e := New(nil, nil, nil, nil, nil, Options{})
	const n = 20_000
	for i := range n {
		e.dispatch(fmt.Sprintf("run-%05d", i))
		e.dispatch(fmt.Sprintf("run-%05d", i/2)) // already queued: ignored
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
	e.dispatch("run-00001")
	if _, ok := e.next(); ok {
		t.Fatal("a run that was never released was queued twice")
	}
}
