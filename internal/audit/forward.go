package audit

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
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
}

// Forwarder sends the audit trail to sinks. Each sink's position is kept in the database and
// advanced only after the sink took a batch, so every sink receives every event at least once,
// in order, across restarts. The trail in the database stays the record: a sink that is down
// holds nothing back, it falls behind and catches up.
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
	teams := map[int64]string{}
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
		sent, err := f.pass(ctx, name, s, teams)
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

// pass sends the next batch after the sink's cursor and moves the cursor past it.
func (f *Forwarder) pass(ctx context.Context, name string, s Sink, teams map[int64]string) (int, error) {
	after, err := f.db.AuditSinkCursor(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("read the cursor: %w", err)
	}
	rows, err := f.db.AllAuditEvents(ctx, after, f.opt.Batch)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	events := make([]Exported, len(rows))
	for i, r := range rows {
		team, ok := teams[r.TeamID]
		if !ok { // a team added since: read the names again (once: an unknown id stays unnamed)
			names, err := f.db.TeamNames(ctx)
			if err != nil {
				return 0, err
			}
			maps.Copy(teams, names)
			team = teams[r.TeamID]
			teams[r.TeamID] = team
		}
		events[i] = Exported{Seq: r.Seq, Team: team, Type: r.Type, Actor: r.Actor, RecordUID: r.RecordUID,
			Details: json.RawMessage(r.Details), CreatedAt: r.CreatedAt,
			PrevHash: hex.EncodeToString(r.PrevHash), Hash: hex.EncodeToString(r.Hash)}
	}
	// A send that has begun is finished, and its cursor moved, even when Stop comes meanwhile:
	// a clean stop sends nothing twice. Each sink bounds its own send (a timeout).
	ctx = context.WithoutCancel(ctx)
	if err := s.Send(ctx, events); err != nil {
		return 0, err
	}
	last := events[len(events)-1].Seq
	if err := f.db.Tx(ctx, func(tx *store.Tx) error { return tx.SetAuditSinkCursor(ctx, name, last, f.opt.Now().UTC()) }); err != nil {
		return 0, fmt.Errorf("move the cursor: %w", err)
	}
	f.opt.Observer.Delivered(name, len(events))
	return len(events), nil
}
