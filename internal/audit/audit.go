// Package audit keeps keyturn's audit trail: append-only events, each chained to the one
// before it by a keyed hash, so that an altered, removed or inserted event is detectable.
package audit

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keyturn/keyturn/internal/keyring"
	"github.com/keyturn/keyturn/internal/store"
)

// Event types (Keeper's names, plus keyturn's own).
const (
	RotationRequested      = "record_rotation_requested" // who asked for a rotation
	RotationOnDemandOK     = "record_rotation_on_demand_ok"
	RotationOnDemandFail   = "record_rotation_on_demand_fail"
	RotationScheduledOK    = "record_rotation_scheduled_ok"
	RotationScheduledFail  = "record_rotation_scheduled_fail"
	RotationNeedsAttention = "record_rotation_needs_attention"
	RotationCreated        = "record_rotation_created"
	RotationUpdated        = "record_rotation_updated"
	RotationDisabled       = "record_rotation_disabled"
	RotationDrift          = "record_rotation_drift"
	ScriptAdded            = "record_rotation_script_added"
	ScriptDeleted          = "record_rotation_script_deleted"
	// A self-rotation (the account is the resource's admin) wrote the admin's new password to
	// the resource record, or left it because someone had changed it while the rotation ran.
	RotationResourceUpdated = "record_rotation_resource_updated"
	RotationResourceKept    = "record_rotation_resource_kept"

	RecordCreated      = "record_created"
	RecordUpdated      = "record_updated"
	RecordDeleted      = "record_deleted"
	RecordSecretRead   = "record_secret_read"
	ServiceUserCreated = "service_user_created"
	ServiceUserUpdated = "service_user_updated"
	APIKeyRotated      = "api_key_rotated"
	APIKeyDeleted      = "api_key_deleted"
)

// Event is one audit event. Details never hold a secret.
type Event struct {
	Seq       int64          `json:"seq"`
	Type      string         `json:"type"`
	Actor     string         `json:"actor"`
	RecordUID string         `json:"record_uid,omitempty"`
	Details   map[string]any `json:"details"`
	CreatedAt time.Time      `json:"created_at"`
}

// Log writes and reads the audit trail.
type Log struct {
	db   *store.DB
	keys *keyring.Keyring
	now  func() time.Time

	queue   chan queued // events recorded after the fact, written in batches
	stopped chan struct{}

	mu      sync.Mutex
	failing error // the last batch could not be written
	once    sync.Once
	wg      sync.WaitGroup
}

type queued struct {
	teamID int64
	event  Event
}

// queueSize bounds the events waiting to be written; Record blocks beyond it.
const queueSize = 8192

// New returns a Log. Start it to write the events given to Record.
func New(db *store.DB, keys *keyring.Keyring) *Log {
	return &Log{db: db, keys: keys, now: time.Now, queue: make(chan queued, queueSize), stopped: make(chan struct{})}
}

// Append records an event inside the caller's transaction: it is written if, and only if,
// the change it describes is.
func (l *Log) Append(ctx context.Context, tx *store.Tx, teamID int64, e Event) error {
	e.CreatedAt = l.now().UTC()
	return l.appendAll(ctx, tx, []queued{{teamID, e}})
}

// Record queues an event that follows an action rather than being part of it (a secret read,
// an identity change), to be written within moments in a batch with others. It blocks only
// when the queue is full, so that events are never dropped. While events cannot be written,
// it returns ErrUnavailable instead, and the caller must not reveal what the event is about.
func (l *Log) Record(teamID int64, e Event) error {
	if err := l.failure(); err != nil {
		return err
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = l.now().UTC()
	}
	l.queue <- queued{teamID, e}
	return nil
}

// ErrUnavailable is returned by Record while the trail cannot be written.
var ErrUnavailable = errors.New("audit: the trail cannot be written")

func (l *Log) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failing
}

func (l *Log) setFailure(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failing = err
}

// Start starts writing recorded events.
func (l *Log) Start() {
	l.wg.Go(l.writer)
}

// Stop writes what is queued and stops.
func (l *Log) Stop() {
	l.once.Do(func() { close(l.stopped) })
	l.wg.Wait()
}

// writer writes queued events in batches of up to 1,000, one transaction each.
func (l *Log) writer() {
	for {
		var first queued
		select {
		case first = <-l.queue:
		case <-l.stopped:
			for len(l.queue) > 0 {
				l.flush(<-l.queue)
			}
			return
		}
		l.flush(first)
	}
}

// flushEvery is how long the writer gathers events before writing them: many events share a
// commit (and its fsync) instead of each paying for one.
const flushEvery = 50 * time.Millisecond

func (l *Log) flush(first queued) {
	batch := []queued{first}
	deadline := time.NewTimer(flushEvery)
	defer deadline.Stop()
gather:
	for len(batch) < 1000 {
		select {
		case q := <-l.queue:
			batch = append(batch, q)
		case <-deadline.C:
			break gather
		case <-l.stopped:
			break gather
		}
	}
	// A batch that fails is tried again until it is written (or the log stops): events are
	// never dropped. Meanwhile Record refuses new events.
	ctx := context.Background()
	for try := 0; ; try++ {
		err := l.db.Tx(ctx, func(tx *store.Tx) error { return l.appendAll(ctx, tx, batch) })
		if err == nil {
			l.setFailure(nil)
			return
		}
		l.setFailure(fmt.Errorf("%w: %w", ErrUnavailable, err))
		select {
		case <-time.After(min(time.Duration(try+1)*100*time.Millisecond, 5*time.Second)):
		case <-l.stopped:
			return // stopping with the database failing: nothing more can be done
		}
	}
}

// appendAll chains and inserts events after the newest one, in the vault-wide chain and in
// each event's team chain.
func (l *Log) appendAll(ctx context.Context, tx *store.Tx, events []queued) error {
	var teams []int64
	for _, q := range events {
		if !slices.Contains(teams, q.teamID) {
			teams = append(teams, q.teamID)
		}
	}
	prev, heads, err := tx.AuditHeads(ctx, teams...)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if prev == nil {
		prev = []byte{} // the first event: the column is NOT NULL
	}
	rows := make([]store.AuditEvent, len(events))
	for i, q := range events {
		details, err := json.Marshal(q.event.Details)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		head := heads[q.teamID]
		rows[i] = store.AuditEvent{TeamID: q.teamID, Type: q.event.Type, Actor: q.event.Actor, RecordUID: q.event.RecordUID,
			Details: details, CreatedAt: q.event.CreatedAt, PrevHash: prev, TeamSeq: head.Seq + 1, TeamPrevHash: head.Hash}
		if rows[i].TeamPrevHash == nil {
			rows[i].TeamPrevHash = []byte{}
		}
		rows[i].Hash = l.chainHash(rows[i])
		rows[i].TeamHash = l.teamChainHash(rows[i])
		prev = rows[i].Hash
		heads[q.teamID] = store.ChainHead{Seq: rows[i].TeamSeq, Hash: rows[i].TeamHash}
	}
	return tx.InsertAuditEvents(ctx, rows)
}

// chainHash is the keyed hash of an event and the hash before it in the vault-wide chain.
func (l *Log) chainHash(e store.AuditEvent) []byte {
	return l.keys.Hash("audit-chain", eventBytes(e.PrevHash, e, nil))
}

// teamChainHash is the keyed hash of an event, its place in its team's chain and the team
// hash before it. It is keyed apart from chainHash, so neither stands in for the other.
func (l *Log) teamChainHash(e store.AuditEvent) []byte {
	return l.keys.Hash("audit-team-chain", eventBytes(e.TeamPrevHash, e, binary.BigEndian.AppendUint64(nil, uint64(e.TeamSeq))))
}

// eventBytes encodes the hash before, the event's contents and then extra, each field
// length-prefixed.
func eventBytes(prev []byte, e store.AuditEvent, extra []byte) []byte {
	var buf []byte
	field := func(b []byte) {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
		buf = append(buf, b...)
	}
	field(prev)
	field(binary.BigEndian.AppendUint64(nil, uint64(e.TeamID)))
	field([]byte(e.Type))
	field([]byte(e.Actor))
	field([]byte(e.RecordUID))
	field(e.Details)
	field(binary.BigEndian.AppendUint64(nil, uint64(e.CreatedAt.UnixNano())))
	if extra != nil {
		field(extra)
	}
	return buf
}

// List returns a team's events after seq, oldest first.
func (l *Log) List(ctx context.Context, teamID, after int64, limit int) ([]Event, error) {
	return l.ListWithin(ctx, teamID, nil, after, limit)
}

// ListWithin returns the events after seq, oldest first, that a caller of the team limited to
// folders may see: those of records that are in or below one of the folders. Events that name
// no record (service users, API keys) and those of records since deleted are about more than
// those folders, so only a caller without a folder limit sees them. With no folders, it is List.
func (l *Log) ListWithin(ctx context.Context, teamID int64, folders []string, after int64, limit int) ([]Event, error) {
	rows, err := l.db.AuditEventsWithin(ctx, teamID, folders, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return events(rows)
}

// Page returns a team's events that f lets through, newest first; f.Folders limits them as
// ListWithin does for a caller limited to folders.
func (l *Log) Page(ctx context.Context, teamID int64, f store.AuditFilter) ([]Event, error) {
	rows, err := l.db.AuditEventsPage(ctx, teamID, f)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return events(rows)
}

func events(rows []store.AuditEvent) ([]Event, error) {
	out := make([]Event, len(rows))
	for i, r := range rows {
		out[i] = Event{Seq: r.Seq, Type: r.Type, Actor: r.Actor, RecordUID: r.RecordUID, CreatedAt: r.CreatedAt}
		if err := json.Unmarshal(r.Details, &out[i].Details); err != nil {
			return nil, fmt.Errorf("audit event %d: %w", r.Seq, err)
		}
	}
	return out, nil
}
