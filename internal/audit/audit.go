// Package audit keeps keyturn's audit trail: append-only events, each chained to the one
// before it by a keyed hash, so that an altered, removed or inserted event is detectable.
package audit

import (
	"context"
	"crypto/hmac"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keyturn/keyturn/internal/keyring"
	"github.com/keyturn/keyturn/internal/store"
)

// Event types (Keeper's names, plus keyturn's own).
const (
	RotationOnDemandOK     = "record_rotation_on_demand_ok"
	RotationOnDemandFail   = "record_rotation_on_demand_fail"
	RotationScheduledOK    = "record_rotation_scheduled_ok"
	RotationScheduledFail  = "record_rotation_scheduled_fail"
	RotationNeedsAttention = "record_rotation_needs_attention"
	RotationCreated        = "record_rotation_created"
	RotationUpdated        = "record_rotation_updated"
	RotationDisabled       = "record_rotation_disabled"
	RotationDrift          = "record_rotation_drift"
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
}

// New returns a Log.
func New(db *store.DB, keys *keyring.Keyring) *Log {
	return &Log{db: db, keys: keys, now: time.Now}
}

// Append records an event inside the caller's transaction.
func (l *Log) Append(ctx context.Context, tx *store.Tx, teamID int64, e Event) error {
	details, err := json.Marshal(e.Details)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	prev, err := tx.LastAuditHash(ctx)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if prev == nil {
		prev = []byte{} // the first event: the column is NOT NULL
	}
	row := store.AuditEvent{TeamID: teamID, Type: e.Type, Actor: e.Actor, RecordUID: e.RecordUID,
		Details: details, CreatedAt: l.now().UTC(), PrevHash: prev}
	row.Hash = l.chainHash(row)
	return tx.InsertAuditEvent(ctx, row)
}

// chainHash is the keyed hash of an event and the hash before it.
func (l *Log) chainHash(e store.AuditEvent) []byte {
	var buf []byte
	field := func(b []byte) {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
		buf = append(buf, b...)
	}
	field(e.PrevHash)
	field(binary.BigEndian.AppendUint64(nil, uint64(e.TeamID)))
	field([]byte(e.Type))
	field([]byte(e.Actor))
	field([]byte(e.RecordUID))
	field(e.Details)
	field(binary.BigEndian.AppendUint64(nil, uint64(e.CreatedAt.UnixNano())))
	return l.keys.Hash("audit-chain", buf)
}

// List returns a team's events after seq, oldest first.
func (l *Log) List(ctx context.Context, teamID, after int64, limit int) ([]Event, error) {
	rows, err := l.db.AuditEvents(ctx, teamID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	out := make([]Event, len(rows))
	for i, r := range rows {
		out[i] = Event{Seq: r.Seq, Type: r.Type, Actor: r.Actor, RecordUID: r.RecordUID, CreatedAt: r.CreatedAt}
		if err := json.Unmarshal(r.Details, &out[i].Details); err != nil {
			return nil, fmt.Errorf("audit event %d: %w", r.Seq, err)
		}
	}
	return out, nil
}

// ErrBroken reports a break in the hash chain.
var ErrBroken = errors.New("audit: the hash chain is broken")

// Verify walks the whole chain and returns ErrBroken (with the first bad sequence number)
// if an event was altered, removed or inserted.
func (l *Log) Verify(ctx context.Context) error {
	var prev []byte
	var after int64
	for {
		rows, err := l.db.AllAuditEvents(ctx, after, 1000)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		for _, r := range rows {
			if !hmac.Equal(r.PrevHash, prev) || !hmac.Equal(r.Hash, l.chainHash(r)) {
				return fmt.Errorf("%w at event %d", ErrBroken, r.Seq)
			}
			prev, after = r.Hash, r.Seq
		}
	}
}
