package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/vault"
)

// Options configure an Engine; zero values take the defaults.
type Options struct {
	Workers     int               // runs executed at once (16)
	Attempts    int               // tries of a transient failure before giving up (5)
	BackoffBase time.Duration     // first retry delay, doubled each time (1 s)
	BackoffMax  time.Duration     // cap of the retry delay (5 min)
	Failpoint   func(name string) // called at each point Failpoints lists; for crash tests
	// OnTransition is called for every state change of a run, including one the machine does
	// not declare and the engine refused; for tests.
	OnTransition func(Transition)
	Logger       *slog.Logger
	Now          func() time.Time

	MinInterval       time.Duration // shortest gap a schedule may have between runs (1 h)
	CatchUp           string        // what to do with occurrences missed while down: run_once (default) or skip
	HeartbeatInterval time.Duration // how often a credential that can be verified is checked (24 h); < 0: never
	Tick              time.Duration // how often the scheduler looks for due work (250 ms); < 0: only when Tick is called
	TargetRate        float64       // connector operations a second to one target (20); < 0: unlimited
	TargetBurst       int           // operations one target may take at once before the rate applies (the rate, at least 1)
	Observer          Observer      // told about runs and scheduling, for metrics (default: nobody)
	RateClock         Clock         // the time of the per-target rate limits (default: real time)

	// Node names this process among the nodes sharing the database (default: the host's
	// name). Two live processes must never share a name: a node starting takes over the runs
	// its name holds.
	Node          string
	Lease         time.Duration // how long a claimed run stays this node's without a renewal (30 s)
	ClaimInterval time.Duration // how often the node looks for runs nobody holds (1 s)
}

// Clock is a source of time and timers; tests give a fake one to step through a rate-limit
// window without waiting for it.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once d has passed, never from within AfterFunc itself; stop cancels
	// the call if it has not started, and reports whether it did.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// realClock is the system's clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// Observer is told about runs and scheduling, for metrics.
type Observer interface {
	RunEnded(trigger, status string, took time.Duration)
	Scheduled(lag time.Duration)
	Drifted()
	Throttled(connector string, wait time.Duration) // a connector operation waited for its target's rate limit
}

// PanicObserver is implemented by an Observer that also counts panics the engine recovered
// from (where: "run", "heartbeat", "scheduler" or "sweep").
type PanicObserver interface {
	Panicked(where string)
}

// CodeInternalPanic is the error code of a run that ended needs_attention because its
// execution panicked.
const CodeInternalPanic = "internal_panic"

type noObserver struct{}

func (noObserver) RunEnded(string, string, time.Duration) {}
func (noObserver) Scheduled(time.Duration)                {}
func (noObserver) Drifted()                               {}
func (noObserver) Throttled(string, time.Duration)        {}

func (o *Options) defaults() {
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	if o.Failpoint == nil {
		o.Failpoint = func(string) {}
	}
	if o.OnTransition == nil {
		o.OnTransition = func(Transition) {}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MinInterval == 0 {
		o.MinInterval = time.Hour
	}
	if o.CatchUp == "" {
		o.CatchUp = CatchUpRunOnce
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 24 * time.Hour
	}
	if o.Tick == 0 {
		o.Tick = 250 * time.Millisecond
	}
	if o.Observer == nil {
		o.Observer = noObserver{}
	}
	if o.TargetRate == 0 {
		o.TargetRate = 20
	}
	if o.RateClock == nil {
		o.RateClock = realClock{}
	}
	if o.Node == "" {
		o.Node, _ = os.Hostname()
		if o.Node == "" {
			o.Node = "localhost"
		}
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.ClaimInterval <= 0 {
		o.ClaimInterval = time.Second
	}
}

// Engine runs rotations: it queues them, executes each through the state machine, and settles
// every run a crash left unfinished: its own at start, another node's once that node's lease
// has expired (see leases.go).
type Engine struct {
	db         *store.DB
	vault      *vault.Vault
	audit      *audit.Log
	runner     *script.Runner
	connectors map[string]connector.Connector
	targets    *targets
	opt        Options

	mu      sync.Mutex
	holds   map[string]*hold         // runs this node holds a lease on: queued here or executing
	queue   []string                 // runs waiting for a worker, oldest first
	waiters map[string]chan struct{} // closed when that run ends

	wake     chan struct{} // a run was queued
	idle     chan struct{} // a worker found the queue empty: claim more
	beating  atomic.Bool   // a batch of heartbeats is under way
	stopping chan struct{}
	runCtx   context.Context
	cancel   context.CancelFunc
	workers  sync.WaitGroup
	stopOnce sync.Once
}

// New returns an Engine; connectors maps the names of ConnectorNames to implementations
// (missing ones make runs that need them fail with a clear error).
func New(db *store.DB, v *vault.Vault, log *audit.Log, runner *script.Runner, connectors map[string]connector.Connector, opt Options) *Engine {
	opt.defaults()
	return &Engine{db: db, vault: v, audit: log, runner: runner, connectors: connectors, opt: opt,
		targets: newTargets(opt.TargetRate, opt.TargetBurst, opt.RateClock).sharedOn(db),
		holds:   map[string]*hold{}, waiters: map[string]chan struct{}{}, wake: make(chan struct{}, 1),
		idle: make(chan struct{}, 1), stopping: make(chan struct{})}
}

// Start starts the workers, resumes the runs this node's name held before, and claims the
// runs nobody holds. Runs go on until Stop.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	e.runCtx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	e.mu.Unlock()
	for range e.opt.Workers {
		e.workers.Go(e.worker)
	}
	if err := e.takeOver(ctx); err != nil {
		return fmt.Errorf("resume unfinished rotations: %w", err)
	}
	if err := e.claim(ctx); err != nil {
		return fmt.Errorf("resume unfinished rotations: %w", err)
	}
	e.workers.Go(e.leaseLoop)
	if e.opt.Tick > 0 {
		e.workers.Go(e.scheduleLoop)
	}
	return nil
}

// Stop stops taking runs, lets the running ones finish until ctx ends, then interrupts them.
// An interrupted run is left in its last committed state, and its lease released: any node
// (this one after a restart) settles it.
func (e *Engine) Stop(ctx context.Context) {
	e.stopOnce.Do(func() { close(e.stopping) })
	done := make(chan struct{})
	go func() {
		e.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		e.cancel()
		<-done
	}
	if e.cancel != nil {
		e.cancel()
		e.releaseAll()
	}
}

// logPanic logs a recovered panic with its stack and counts it. Neither holds a secret's
// value: a stack shows argument words, not strings, and secret.Secret prints [REDACTED].
func (e *Engine) logPanic(where string, p any, attrs ...any) {
	attrs = append(attrs, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	e.opt.Logger.Error("rotation engine: recovered from a panic in a "+where, attrs...)
	if o, ok := e.opt.Observer.(PanicObserver); ok {
		o.Panicked(where)
	}
}

// guard runs fn and turns a panic in it into an error, logged and counted, so that a bug in
// one pass of a loop cannot take the server down.
func (e *Engine) guard(where string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			e.logPanic(where, p)
			err = fmt.Errorf("%s: internal error (recovered from a panic; see the log above)", where)
		}
	}()
	return fn()
}

// recoverRun settles a run whose execution panicked: the panic is logged and counted, and the
// run is handed over (see handOver), so that one bad run cannot take the server down and the
// others go on.
func (e *Engine) recoverRun(ctx context.Context, id string, p any) error {
	e.logPanic("run", p, "run", id)
	return e.handOver(ctx, id, CodeInternalPanic, "the rotation stopped on an internal error (see the server log)", fmt.Errorf("panic: %v", p))
}

// handOver ends a run needs_attention from its last committed state, both passwords kept as
// they are (the candidate, if saved, stays pending): what the job held in memory is not
// trusted. cause is logged; msg is what the run shows.
func (e *Engine) handOver(ctx context.Context, id, code, msg string, cause error) error {
	if code != CodeInternalPanic {
		e.opt.Logger.Error("rotation run handed over", "run", id, "code", code, "err", cause)
	}
	ctx = context.WithoutCancel(ctx)
	run, err := e.db.RunByID(ctx, id)
	if err != nil {
		return fmt.Errorf("rotation %s stopped (%v), and its run cannot be read: %w", id, cause, err)
	}
	if run.Status != StatusQueued && run.Status != StatusRunning {
		return nil // it had ended before
	}
	if !e.holdsLease(run) {
		return fmt.Errorf("rotation %s stopped (%v): %w", id, cause, errLeaseLost)
	}
	if run.PendingVersion != 0 {
		msg += "; the target may hold the candidate password, which is kept as pending, and the current password is kept"
	} else {
		msg += "; no candidate password was saved, and the current password is kept"
	}
	j := &job{e: e, run: run}
	if err := j.needsAttention(ctx, code, msg); err != nil {
		return fmt.Errorf("rotation %s stopped (%v), and it could not be ended needs_attention: %w", id, cause, err)
	}
	return nil
}

// holdsLease reports whether this node holds the run, as stored, at the epoch of its hold.
func (e *Engine) holdsLease(run store.Run) bool {
	h, ok := e.hold(run.ID)
	return ok && run.LeaseNode == e.opt.Node && run.LeaseEpoch == h.epoch
}

// dispatch queues a run this node has just taken (see held) for the workers.
func (e *Engine) dispatch(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.queue = append(e.queue, id)
	e.signal()
}

// requeue queues again a run this process holds (one its target put off).
func (e *Engine) requeue(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.queue = append(e.queue, id)
	e.signal()
}

// signal wakes one idle worker; the caller holds e.mu.
func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// next takes the oldest queued run, and passes the wake-up on when more are waiting.
func (e *Engine) next() (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.queue) == 0 {
		return "", false
	}
	id := e.queue[0]
	e.queue[0] = ""
	e.queue = e.queue[1:]
	if len(e.queue) > 0 {
		e.signal()
	}
	return id, true
}

func (e *Engine) worker() {
	for {
		select {
		case <-e.stopping:
			return
		default:
		}
		id, ok := e.next()
		if !ok {
			select {
			case e.idle <- struct{}{}:
			default:
			}
			select {
			case <-e.stopping:
				return
			case <-e.wake:
				continue
			}
		}
		h, ok := e.hold(id)
		if !ok {
			continue
		}
		err := e.execute(h.ctx, id)
		if errors.Is(err, errDeferred) {
			continue // still held: its target hands it back (requeue)
		}
		switch {
		case err == nil:
		case errors.Is(err, errLeaseLost) || errors.Is(err, store.ErrLeaseLost) || errors.Is(context.Cause(h.ctx), errLeaseLost):
			e.opt.Logger.Warn("rotation run: this node lost its lease; another node settles the run", "run", id)
		case errors.Is(err, errScriptElsewhere):
			e.opt.Logger.Info("rotation run waits for a script on another machine", "run", id, "err", err)
			e.release(id)
		default:
			if e.runCtx.Err() == nil {
				e.opt.Logger.Error("rotation run", "run", id, "err", err)
			}
			e.release(id) // unfinished: any node may take it again at once
		}
		e.drop(id)
	}
}

// ended wakes whoever waits for the run.
func (e *Engine) ended(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ch, ok := e.waiters[id]; ok {
		close(ch)
		delete(e.waiters, id)
	}
}

// forget drops a waiter channel that is no longer needed; anyone still waiting on it notices
// the run's end through Wait's periodic check.
func (e *Engine) forget(id string, ch chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.waiters[id] == ch {
		delete(e.waiters, id)
	}
}

// waiter returns a channel closed when the run ends (after this call).
func (e *Engine) waiter(id string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch, ok := e.waiters[id]
	if !ok {
		ch = make(chan struct{})
		e.waiters[id] = ch
	}
	return ch
}

// Rotate queues a rotation of a pamUser record and returns the run. When the record already
// has an active run, it returns that one and created is false: there is never a second.
func (e *Engine) Rotate(ctx context.Context, scope vault.Scope, uid, trigger string) (run Run, created bool, err error) {
	rec, err := e.vault.Meta(ctx, scope, uid)
	if err != nil {
		return Run{}, false, err
	}
	if rec.Type != "pamUser" {
		return Run{}, false, fault.Invalidf("only pamUser records rotate; %s is a %s record", uid, rec.Type)
	}
	settings, err := e.settings(ctx, e.db.Reader, scope.TeamID, uid)
	if err != nil {
		return Run{}, false, err
	}
	if !settings.IsEnabled() {
		return Run{}, false, fault.New(fault.Conflict, "rotation_disabled", "rotation of record %s is disabled", uid)
	}
	now := e.opt.Now().UTC()
	row := store.Run{ID: uuid.NewString(), TeamID: scope.TeamID, RecordUID: uid, Trigger: trigger,
		Status: StatusQueued, State: string(StateQueued), CreatedAt: now, UpdatedAt: now}
	e.mu.Lock()
	started := e.runCtx != nil
	e.mu.Unlock()
	select {
	case <-e.stopping:
		started = false
	default:
	}
	claimed := time.Now()
	err = e.db.Tx(ctx, func(tx *store.Tx) error {
		if started { // this node runs it: it holds it from the start (otherwise Start claims it)
			until, err := tx.LeaseDeadline(ctx, e.opt.Lease)
			if err != nil {
				return err
			}
			row.LeaseNode, row.LeaseEpoch, row.LeaseUntil = e.opt.Node, 1, &until
		}
		if err := tx.InsertRun(ctx, row); err != nil {
			return err
		}
		return e.audit.Append(ctx, tx, scope.TeamID, scope.Event(audit.RotationRequested, uid,
			map[string]any{"rotation_id": row.ID, "trigger": trigger}))
	})
	if errors.Is(err, store.ErrConflict) {
		active, err := e.db.ActiveRun(ctx, uid)
		if errors.Is(err, store.ErrNotFound) { // it ended in between: try again
			return e.Rotate(ctx, scope, uid, trigger)
		}
		if err != nil {
			return Run{}, false, err
		}
		view, err := e.view(ctx, active)
		return view, false, err
	}
	if err != nil {
		return Run{}, false, fmt.Errorf("queue rotation of %s: %w", uid, err)
	}
	if started {
		e.take(store.Lease{RunID: row.ID, Epoch: row.LeaseEpoch}, claimed)
	}
	view, err := e.view(ctx, row)
	return view, true, err
}

// Wait returns the run once it has ended, or its latest state when ctx ends first.
func (e *Engine) Wait(ctx context.Context, scope vault.Scope, id string) (Run, error) {
	for {
		ch := e.waiter(id)
		run, err := e.Get(ctx, scope, id)
		if err != nil || run.Terminal() {
			e.forget(id, ch)
			return run, err
		}
		select {
		case <-ch:
		case <-time.After(time.Second): // a safety net: the run's end is seen within a second anyway
		case <-ctx.Done():
			e.forget(id, ch)
			return e.Get(context.WithoutCancel(ctx), scope, id)
		}
	}
}

// Get returns a run of a record within the caller's scope.
func (e *Engine) Get(ctx context.Context, scope vault.Scope, id string) (Run, error) {
	row, err := e.db.Run(ctx, scope.TeamID, id)
	if errors.Is(err, store.ErrNotFound) {
		return Run{}, fault.NotFoundf("no rotation %q", id)
	}
	if err != nil {
		return Run{}, err
	}
	if _, err := e.vault.Meta(ctx, scope, row.RecordUID); err != nil {
		if fault.KindOf(err) == fault.NotFound {
			return Run{}, fault.NotFoundf("no rotation %q", id)
		}
		return Run{}, err
	}
	run, err := e.view(ctx, row)
	if err != nil {
		return Run{}, err
	}
	states, err := e.db.RunStates(ctx, id)
	if err != nil {
		return Run{}, fmt.Errorf("rotation %s: its timeline: %w", id, err)
	}
	run.States = make([]StateAt, len(states))
	for i, st := range states {
		run.States[i] = StateAt{State: st.State, At: st.At}
	}
	return run, nil
}

// RunFilter selects runs to list.
type RunFilter struct {
	RecordUID string
	Status    string
	Count     int
	Offset    int
}

// List returns runs newest first and whether more remain.
func (e *Engine) List(ctx context.Context, scope vault.Scope, f RunFilter) ([]Run, bool, error) {
	if f.Status != "" && !slices.Contains(Statuses, f.Status) {
		return nil, false, fault.New(fault.Invalid, "invalid_request", "status %q: want one of %s", f.Status, strings.Join(Statuses, ", "))
	}
	if f.Count <= 0 {
		f.Count = 100
	}
	rows, err := e.db.ListRuns(ctx, store.RunFilter{TeamID: scope.TeamID, RecordUID: f.RecordUID, Status: f.Status,
		Within: scope.Folders, Limit: f.Count + 1, Offset: f.Offset})
	if err != nil {
		return nil, false, fmt.Errorf("list rotations: %w", err)
	}
	more := len(rows) > f.Count
	rows = rows[:min(len(rows), f.Count)]
	out := make([]Run, len(rows))
	for i, r := range rows {
		if out[i], err = e.view(ctx, r); err != nil {
			return nil, false, err
		}
	}
	return out, more, nil
}

// view turns a stored run into the API's shape, opening its sealed exec log.
func (e *Engine) view(ctx context.Context, r store.Run) (Run, error) {
	out := Run{ID: r.ID, RecordUID: r.RecordUID, Trigger: r.Trigger, Status: r.Status, State: r.State,
		Attempt: r.Attempt, CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
		ExecLog: []script.Result{}}
	if r.ErrorCode != "" {
		out.Error = &RunError{Code: r.ErrorCode, Message: r.ErrorMessage}
	}
	if len(r.ExecLog) > 0 {
		log, err := e.openLog(ctx, e.db.Reader, r)
		if err != nil {
			return Run{}, err
		}
		out.ExecLog = log
	}
	return out, nil
}
