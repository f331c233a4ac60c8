package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"time"

	"github.com/keyturn/keyturn/internal/store"
)

// Exported is an event as the audit sinks receive it: the whole trail of every team, with the
// chain's hashes, so that a SIEM can see a gap (prev_hash differs from the hash before it).
type Exported struct {
	Seq       int64           `json:"seq"`
	Team      string          `json:"team"`
	Type      string          `json:"type"`
	Actor     string          `json:"actor"`
	RecordUID string          `json:"record_uid,omitempty"`
	Details   json.RawMessage `json:"details"`
	CreatedAt time.Time       `json:"created_at"`
	PrevHash  string          `json:"prev_hash"` // hex; empty for the first event
	Hash      string          `json:"hash"`      // hex
}

// Sink is a destination of the audit trail: a JSONL file, a webhook, a syslog server.
type Sink interface {
	// Send delivers events (in order, oldest first); nil means every one of them is kept.
	Send(ctx context.Context, events []Exported) error
	Close() error
}

// SinkObserver is told how the sinks fare, for metrics.
type SinkObserver interface {
	Delivered(sink string, events int)
	SinkFailed(sink string)
}

// ForwarderOptions configure a Forwarder; zero values take the defaults.
type ForwarderOptions struct {
	Poll     time.Duration // how often a sink that is up to date looks for new events (500 ms)
	Batch    int           // events sent at once, at most (500)
	RetryMax time.Duration // cap of the wait after a failed send, which doubles from 1 s (1 min)
	Logger   *slog.Logger
	Observer SinkObserver
	Now      func() time.Time
	// Node names this node in the sinks' export leases: the server's node name, which one
	// process at a time holds, so a restarted node takes its own leases back at once (default:
	// the host name and a random suffix).
	Node string
	// Lease is how long a node holds a sink's export once it stops renewing it: after it dies,
	// another node takes the sink over within Lease + Poll (15 s).
	Lease time.Duration
}

// Forwarder sends the audit trail to sinks. Each sink's position is kept in the database and
// advanced only after the sink took a batch, so every sink receives every event at least once,
// in order, across restarts. The trail in the database stays the record: a sink that is down
// holds nothing back, it falls behind and catches up.
//
// Every node of a cluster runs a Forwarder; one node at a time exports to a sink, the holder
// of its lease in the database, which it renews while it exports (and while a send is in
// flight). The others stand by and take the sink over, from its cursor, once the lease has run
// out (a dead node) or been released (a clean stop). The cursor moves only under the lease's
// epoch, so a node that lost the lease (paused past it, cut off) cannot move it, back or on.
// Each event is sent once in normal operation. Across a take-over, the batch the old holder
// had in flight may reach the sink twice (at least once, never lost, in order per holder).
type Forwarder struct {
	db    *store.DB
	sinks map[string]Sink
	opt   ForwarderOptions

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type noSinkObserver struct{}

func (noSinkObserver) Delivered(string, int) {}
func (noSinkObserver) SinkFailed(string)     {}

// NewForwarder returns a Forwarder for sinks by name; Start it.
func NewForwarder(db *store.DB, sinks map[string]Sink, o ForwarderOptions) *Forwarder {
	if o.Poll <= 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observer == nil {
		o.Observer = noSinkObserver{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Lease <= 0 {
		o.Lease = 15 * time.Second
	}
	if o.Node == "" {
		o.Node = nodeName()
	}
	return &Forwarder{db: db, sinks: sinks, opt: o}
}

// Start starts sending, one goroutine a sink.
func (f *Forwarder) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	for name, s := range f.sinks {
		f.wg.Go(func() { f.run(ctx, name, s) })
	}
}

// Stop stops sending, once a send in flight has ended, and closes the sinks. What was not
// acknowledged is sent after a restart.
func (f *Forwarder) Stop() {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	for name, s := range f.sinks {
		if err := s.Close(); err != nil {
			f.opt.Logger.Warn("audit sink: close", "sink", name, "err", err)
		}
	}
}

func (f *Forwarder) run(ctx context.Context, name string, s Sink) {
	x := &export{name: name, sink: s, teams: map[int64]string{}}
	defer f.release(x)
	retry := time.Second
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		sent, err := f.pass(ctx, x)
		if ctx.Err() != nil {
			return
		}
		delay := f.opt.Poll
		switch {
		case err != nil:
			f.opt.Observer.SinkFailed(name)
			f.opt.Logger.Warn("audit sink: send failed; the events are sent again", "sink", name, "err", err, "retry_in", retry)
			delay, retry = retry, min(2*retry, f.opt.RetryMax)
		case sent == f.opt.Batch:
			delay, retry = 0, time.Second // more are waiting
		default:
			retry = time.Second
		}
		if delay > 0 && !wait(delay) {
			return
		}
	}
}

// export is one sink's state in this node: its lease, while the node holds it.
type export struct {
	name  string
	sink  Sink
	teams map[int64]string // team names by id, as far as read
	lease *store.AuditSinkLease
	until time.Time // the lease's end, by f.opt.Now, as last written
}

// hold makes sure this node holds x's lease, taking it when it has run out or renewing it when
// a third of it has passed, and reports whether it does.
func (f *Forwarder) hold(ctx context.Context, x *export) (bool, error) {
	now := f.opt.Now().UTC()
	until := now.Add(f.opt.Lease)
	if x.lease == nil {
		var l store.AuditSinkLease
		var ok bool
		if err := f.db.Tx(ctx, func(tx *store.Tx) (err error) {
			l, ok, err = tx.TakeAuditSinkLease(ctx, x.name, f.opt.Node, now, until)
			return err
		}); err != nil {
			return false, fmt.Errorf("take the export lease: %w", err)
		}
		if !ok {
			return false, nil // another node exports to this sink
		}
		x.lease, x.until = &l, until
		f.opt.Logger.Info("audit sink: this node exports to it now", "sink", x.name, "epoch", l.Epoch, "after_seq", l.Seq)
		return true, nil
	}
	if now.Before(x.until.Add(-2 * f.opt.Lease / 3)) {
		return true, nil
	}
	err := f.db.Tx(ctx, func(tx *store.Tx) error { return tx.RenewAuditSinkLease(ctx, *x.lease, until) })
	switch {
	case errors.Is(err, store.ErrSinkLeaseLost):
		f.lost(x)
		return false, nil
	case err != nil:
		return false, fmt.Errorf("renew the export lease: %w", err)
	}
	x.until = until
	return true, nil
}

// lost forgets x's lease, which another node took over.
func (f *Forwarder) lost(x *export) {
	f.opt.Logger.Warn("audit sink: another node took the export over", "sink", x.name, "epoch", x.lease.Epoch)
	x.lease = nil
}

// release gives x's lease up, if this node holds it, so that another node goes on at once.
func (f *Forwarder) release(x *export) {
	if x.lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.db.Tx(ctx, func(tx *store.Tx) error { return tx.ReleaseAuditSinkLease(ctx, *x.lease) }); err != nil {
		f.opt.Logger.Warn("audit sink: release the export lease; another node takes it once it runs out", "sink", x.name, "err", err)
	}
	x.lease = nil
}

// pass sends the next batch after the sink's cursor and moves the cursor past it, if this node
// holds the sink's lease.
func (f *Forwarder) pass(ctx context.Context, x *export) (int, error) {
	if ok, err := f.hold(ctx, x); !ok || err != nil {
		return 0, err
	}
	rows, err := f.db.AllAuditEvents(ctx, x.lease.Seq, f.opt.Batch)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	events := make([]Exported, len(rows))
	for i, r := range rows {
		team, ok := x.teams[r.TeamID]
		if !ok { // a team added since: read the names again (once: an unknown id stays unnamed)
			names, err := f.db.TeamNames(ctx)
			if err != nil {
				return 0, err
			}
			maps.Copy(x.teams, names)
			team = x.teams[r.TeamID]
			x.teams[r.TeamID] = team
		}
		events[i] = Exported{Seq: r.Seq, Team: team, Type: r.Type, Actor: r.Actor, RecordUID: r.RecordUID,
			Details: json.RawMessage(r.Details), CreatedAt: r.CreatedAt,
			PrevHash: hex.EncodeToString(r.PrevHash), Hash: hex.EncodeToString(r.Hash)}
	}
	// A send that has begun is finished, and its cursor moved, even when Stop comes meanwhile:
	// a clean stop sends nothing twice. Each sink bounds its own send (a timeout); the lease is
	// renewed while it runs, and the send is cancelled once the lease is lost or runs out.
	ctx = context.WithoutCancel(ctx)
	if err := f.send(ctx, x, events); err != nil {
		return 0, err
	}
	last := events[len(events)-1].Seq
	now := f.opt.Now().UTC()
	until := now.Add(f.opt.Lease)
	err = f.db.Tx(ctx, func(tx *store.Tx) error { return tx.AdvanceAuditSinkCursor(ctx, *x.lease, last, now, until) })
	switch {
	case errors.Is(err, store.ErrSinkLeaseLost):
		// The new holder sends this batch again from the cursor: at least once, across a take-over.
		f.opt.Logger.Warn("audit sink: the export lease was lost during a send; the new holder may send the batch again",
			"sink", x.name, "first_seq", events[0].Seq, "last_seq", last)
		f.lost(x)
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("move the cursor: %w", err)
	}
	x.lease.Seq, x.until = last, until
	f.opt.Observer.Delivered(x.name, len(events))
	return len(events), nil
}

// send gives events to x's sink while renewing x's lease every third of it; the send's context
// ends when the lease is lost, or has not been renewed for a whole lease.
func (f *Forwarder) send(ctx context.Context, x *export, events []Exported) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	expire := time.AfterFunc(f.opt.Lease, func() { cancel(errors.New("the export lease ran out during the send")) })
	defer expire.Stop()
	done := make(chan struct{})
	var keeper sync.WaitGroup
	defer keeper.Wait()
	defer close(done)
	l := *x.lease
	keeper.Go(func() {
		tick := time.NewTicker(f.opt.Lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			until := f.opt.Now().UTC().Add(f.opt.Lease)
			err := f.db.Tx(ctx, func(tx *store.Tx) error { return tx.RenewAuditSinkLease(ctx, l, until) })
			switch {
			case errors.Is(err, store.ErrSinkLeaseLost):
				cancel(err)
				return
			case err == nil:
				expire.Reset(f.opt.Lease)
			}
		}
	})
	if err := x.sink.Send(ctx, events); err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return fmt.Errorf("%w (%w)", err, cause)
		}
		return err
	}
	return nil
}

// nodeName names this process for the export leases: its host and a random suffix, so that
// two processes on one host differ.
func nodeName() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}
