package rotation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyturn/keyturn/internal/store"
)

// Many nodes share one database's runs without a leader (see store.ClaimRuns): a node executes
// only the runs it holds a lease on, renews those leases while it works, and every commit of a
// run is fenced on the lease's epoch. Besides the fence in the database, a node checks its
// lease on its own clock before each side effect on a target (a connector call, a script): a
// node paused past its lease (SIGSTOP, a long GC, a cut-off network) must not touch a target
// for a run another node may be settling.

// errLeaseLost means this node no longer holds the run's lease: it leaves the run alone.
var errLeaseLost = errors.New("rotation: this node lost the run's lease to another node")

// hold is a run this node holds: queued here or executing.
type hold struct {
	epoch  int64
	until  time.Time // this node's deadline: the lease, on the local monotonic clock
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// held adds a lease this node obtained at start (its local time before asking the database)
// and reports whether it is new here; a run already held keeps its hold.
func (e *Engine) held(l store.Lease, start time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.holds[l.RunID]; ok {
		return false
	}
	ctx, cancel := context.WithCancelCause(e.runCtx)
	e.holds[l.RunID] = &hold{epoch: l.Epoch, until: start.Add(e.opt.Lease), ctx: ctx, cancel: cancel}
	return true
}

// take queues a run this node obtained the lease of at start, unless it holds it already.
func (e *Engine) take(l store.Lease, start time.Time) {
	if e.held(l, start) {
		e.dispatch(l.RunID)
	}
}

// hold returns this node's hold on a run, if any.
func (e *Engine) hold(id string) (*hold, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h, ok := e.holds[id]
	return h, ok
}

// drop forgets a run this node no longer works on.
func (e *Engine) drop(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if h, ok := e.holds[id]; ok {
		h.cancel(nil)
		delete(e.holds, id)
	}
}

// lose stops the work on a run whose lease this node lost.
func (e *Engine) lose(id string) {
	if h, ok := e.hold(id); ok {
		h.cancel(errLeaseLost)
	}
}

// leaseLive reports whether this node may still act on the run: it holds it, and its lease has
// at least a third of its time left (renewals come every third, so one may fail).
func (e *Engine) leaseLive(id string) bool {
	h, ok := e.hold(id)
	if !ok || h.ctx.Err() != nil {
		return false
	}
	e.mu.Lock()
	until := h.until
	e.mu.Unlock()
	return time.Until(until) > e.opt.Lease/3
}

// checkLease returns errLeaseLost, and stops the work on the run, unless this node may still
// act on it; it is called before each side effect on the target.
func (j *job) checkLease() error {
	if j.e.leaseLive(j.run.ID) {
		return nil
	}
	j.e.lose(j.run.ID)
	return fmt.Errorf("run %s: %w", j.run.ID, errLeaseLost)
}

// claim takes as many free runs as this node has room for, and queues them.
func (e *Engine) claim(ctx context.Context) error {
	e.mu.Lock()
	room := 2*e.opt.Workers - len(e.holds)
	e.mu.Unlock()
	if room <= 0 {
		return nil
	}
	return e.takeAll(func() ([]store.Lease, error) { return e.db.ClaimRuns(ctx, e.opt.Node, room, e.opt.Lease) })
}

// takeOver claims again the runs this node's name held before it started, and queues them.
func (e *Engine) takeOver(ctx context.Context) error {
	return e.takeAll(func() ([]store.Lease, error) { return e.db.TakeOverRuns(ctx, e.opt.Node, e.opt.Lease) })
}

// takeAll takes the leases obtain gets from the database, each held from the time it asked.
func (e *Engine) takeAll(obtain func() ([]store.Lease, error)) error {
	start := time.Now()
	leases, err := obtain()
	if err != nil {
		return err
	}
	for _, l := range leases {
		e.take(l, start)
	}
	return nil
}

// renew renews every lease this node holds, stops the work on those it lost, and stops it
// too on those whose lease ran out on this node's clock while it could not renew them.
func (e *Engine) renew(ctx context.Context) error {
	e.mu.Lock()
	leases := make([]store.Lease, 0, len(e.holds))
	for id, h := range e.holds {
		leases = append(leases, store.Lease{RunID: id, Epoch: h.epoch})
	}
	e.mu.Unlock()
	if len(leases) == 0 {
		return nil
	}
	start := time.Now()
	lost, err := e.db.RenewLeases(ctx, e.opt.Node, leases, e.opt.Lease)
	if err != nil {
		e.expire()
		return err
	}
	gone := map[string]bool{}
	for _, l := range lost {
		gone[l.RunID] = true
	}
	e.mu.Lock()
	for _, l := range leases {
		if h, ok := e.holds[l.RunID]; ok && h.epoch == l.Epoch && !gone[l.RunID] {
			h.until = start.Add(e.opt.Lease)
		}
	}
	e.mu.Unlock()
	for _, l := range lost {
		e.opt.Logger.Warn("rotation run: lease lost; another node settles the run", "run", l.RunID)
		e.lose(l.RunID)
	}
	return nil
}

// expire stops the work on the runs whose lease ran out on this node's clock.
func (e *Engine) expire() {
	e.mu.Lock()
	var out []string
	for id, h := range e.holds {
		if time.Now().After(h.until) {
			out = append(out, id)
		}
	}
	e.mu.Unlock()
	for _, id := range out {
		e.lose(id)
	}
}

// release gives up this node's lease on a run it leaves unfinished, so that any node may take
// it at once rather than after the lease expires.
func (e *Engine) release(id string) {
	h, ok := e.hold(id)
	if !ok || errors.Is(context.Cause(h.ctx), errLeaseLost) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.db.ReleaseLeases(ctx, e.opt.Node, []store.Lease{{RunID: id, Epoch: h.epoch}}); err != nil {
		e.opt.Logger.Warn("release a rotation lease", "run", id, "err", err)
	}
}

// releaseAll gives up every lease this node still holds (when it stops).
func (e *Engine) releaseAll() {
	e.mu.Lock()
	leases := make([]store.Lease, 0, len(e.holds))
	for id, h := range e.holds {
		if !errors.Is(context.Cause(h.ctx), errLeaseLost) {
			leases = append(leases, store.Lease{RunID: id, Epoch: h.epoch})
		}
	}
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.db.ReleaseLeases(ctx, e.opt.Node, leases); err != nil {
		e.opt.Logger.Warn("release rotation leases", "err", err)
	}
}

// leaseLoop claims free runs every ClaimInterval, and at once when a worker is idle, and renews
// this node's leases every third of the lease.
func (e *Engine) leaseLoop() {
	claim := time.NewTicker(e.opt.ClaimInterval)
	defer claim.Stop()
	renew := time.NewTicker(e.opt.Lease / 3)
	defer renew.Stop()
	for {
		var err error
		select {
		case <-e.stopping:
			return
		case <-renew.C:
			err = e.guard("lease renewal", func() error { return e.renew(e.runCtx) })
		case <-claim.C:
			err = e.guard("claim", func() error { return e.claim(e.runCtx) })
		case <-e.idle:
			err = e.guard("claim", func() error { return e.claim(e.runCtx) })
		}
		if err != nil && e.runCtx.Err() == nil {
			e.opt.Logger.Warn("rotation leases", "err", err)
		}
	}
}
