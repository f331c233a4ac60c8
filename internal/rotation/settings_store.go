package rotation

// Reading and saving a record's rotation settings, and Info: the settings with the record's
// rotation state.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/vault"
)

// ErrNotConfigured: the record has no rotation settings yet.
var ErrNotConfigured = fault.NewSentinel(fault.Conflict, "not_configured")

// resourceRecordTypes are the record types a rotation's resource may be.
var resourceRecordTypes = []string{"pamMachine", "pamDatabase", "pamDirectory", "login", "general"}

// Info is a record's rotation settings with its rotation state.
type Info struct {
	Settings
	State           string     `json:"state"` // the last run's status, or "never_rotated"
	LastRotationID  string     `json:"last_rotation_id"`
	NextRunAt       *time.Time `json:"next_run_at"`
	NextHeartbeatAt *time.Time `json:"next_heartbeat_at"`
	Drift           *DriftInfo `json:"drift"`
}

// DriftInfo is what the last heartbeat found wrong.
type DriftInfo struct {
	State   string     `json:"state"`
	At      *time.Time `json:"at"`
	Message string     `json:"message"`
}

// settings reads a record's rotation settings.
func (e *Engine) settings(ctx context.Context, r store.Reader, teamID int64, uid string) (Settings, error) {
	s, _, err := e.settingsRow(ctx, r, teamID, uid)
	return s, err
}

// settingsRow reads a record's rotation settings with their scheduling and heartbeat state.
func (e *Engine) settingsRow(ctx context.Context, r store.Reader, teamID int64, uid string) (Settings, store.RotationSettings, error) {
	row, err := r.RotationSettings(ctx, teamID, uid)
	if errors.Is(err, store.ErrNotFound) {
		return Settings{}, row, ErrNotConfigured.New(
			"record %s has no rotation settings: set them with PUT …/records/%s/rotation first", uid, uid)
	}
	if err != nil {
		return Settings{}, row, err
	}
	var s Settings
	if err := json.Unmarshal(row.Settings, &s); err != nil {
		return Settings{}, row, fmt.Errorf("record %s: rotation settings: %w", uid, err)
	}
	return s, row, nil
}

// SetSettings validates and stores a pamUser record's rotation settings.
func (e *Engine) SetSettings(ctx context.Context, scope vault.Scope, uid string, s Settings) (Settings, error) {
	if err := s.validate(); err != nil {
		return Settings{}, err
	}
	rec, err := e.vault.Meta(ctx, scope, uid)
	if err != nil {
		return Settings{}, err
	}
	if rec.Type != "pamUser" {
		return Settings{}, fault.Invalidf("rotation settings belong on a pamUser record; %s is a %s record", uid, rec.Type)
	}
	if s.ConfigurationUID, err = e.resolveRef(ctx, scope, "configuration_uid", s.ConfigurationUID, []string{"pamConfiguration"}); err != nil {
		return Settings{}, err
	}
	if s.ResourceUID, err = e.resolveRef(ctx, scope, "resource_uid", s.ResourceUID, resourceRecordTypes); err != nil {
		return Settings{}, err
	}
	now := e.opt.Now().UTC()
	// A schedule is checked against the clock when it is new or changed: saving other settings
	// must keep working after, say, a RUN_ONCE has fired.
	var stored Settings
	if prev, err := e.db.RotationSettings(ctx, scope.TeamID, uid); err == nil {
		_ = json.Unmarshal(prev.Settings, &stored)
	}
	if canonical(stored.Schedule) != canonical(s.Schedule) || stored.ConfigurationUID != s.ConfigurationUID {
		if err := e.checkSchedule(ctx, e.db.Reader, scope.TeamID, s, now); err != nil {
			return Settings{}, err
		}
	}
	override := s.NextRunAt
	if override != nil && !override.After(now) {
		return Settings{}, fault.Invalidf("next_run_at must be in the future")
	}
	expected := s.Revision
	s.NextRunAt, s.Revision = nil, 0 // an override and the revision are state, not settings
	raw, err := json.Marshal(s)
	if err != nil {
		return Settings{}, err
	}
	canVerify := s.Method == MethodGeneral || s.VerifyWith != ""
	err = e.db.Tx(ctx, func(tx *store.Tx) error {
		event := audit.RotationCreated
		var old *store.RotationSettings
		if prev, err := tx.RotationSettings(ctx, scope.TeamID, uid); err == nil {
			event, old = audit.RotationUpdated, &prev
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		switch {
		case expected == 0: // an unconditional write
		case old == nil:
			return vault.ErrStaleRevision.New(
				"record %s has no rotation settings, so not revision %d: read them again and reapply your change", uid, expected)
		case old.Revision != expected:
			return vault.ErrStaleRevision.New(
				"the rotation settings of record %s are at revision %d, not %d: read them again and reapply your change",
				uid, old.Revision, expected)
		}
		s.Revision = 1
		if old != nil {
			s.Revision = old.Revision + 1
		}
		if !s.IsEnabled() {
			event = audit.RotationDisabled
		}
		st, err := e.scheduleState(ctx, tx.Reader, scope.TeamID, s, override, old, canVerify, now)
		if err != nil {
			return err
		}
		if err := tx.SaveRotationSettings(ctx, store.RotationSettings{RecordUID: uid, TeamID: scope.TeamID,
			Settings: raw, Revision: s.Revision, UpdatedAt: now}); err != nil {
			return err
		}
		if err := tx.SetScheduleState(ctx, uid, st); err != nil {
			return err
		}
		return e.audit.Append(ctx, tx, scope.TeamID, scope.Event(event, uid, map[string]any{"method": s.Method,
			"connector": s.Connector, "verify_with": s.VerifyWith, "schedule": json.RawMessage(s.Schedule), "paused": s.Paused,
			"revision": s.Revision}))
	})
	if err != nil {
		return Settings{}, fmt.Errorf("save rotation settings of %s: %w", uid, err)
	}
	return s, nil
}

// resolveRef returns the uid of the record that a settings field names by uid or exact title
// (as every route does), checking that it is one of types; the settings store the uid.
func (e *Engine) resolveRef(ctx context.Context, scope vault.Scope, field, name string, types []string) (string, error) {
	if name == "" {
		return "", nil
	}
	uid, err := e.vault.Lookup(ctx, scope, name)
	if fault.KindOf(err) == fault.NotFound {
		return "", fault.Invalidf("%s: no record %q", field, name)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	rec, err := e.vault.Meta(ctx, scope, uid)
	if err != nil {
		return "", err
	}
	if !slices.Contains(types, rec.Type) {
		return "", fault.Invalidf("%s: record %s is a %s record; it must be one of %s", field, uid, rec.Type, strings.Join(types, ", "))
	}
	return uid, nil
}

// Info returns a record's rotation settings and state.
func (e *Engine) Info(ctx context.Context, scope vault.Scope, uid string) (Info, error) {
	if _, err := e.vault.Meta(ctx, scope, uid); err != nil {
		return Info{}, err
	}
	s, err := e.settings(ctx, e.db.Reader, scope.TeamID, uid)
	if err != nil {
		if errors.Is(err, ErrNotConfigured) {
			return Info{}, fault.NotFoundf("record %s has no rotation settings", uid)
		}
		return Info{}, err
	}
	row, err := e.db.RotationSettings(ctx, scope.TeamID, uid)
	if err != nil {
		return Info{}, err
	}
	s.Revision = row.Revision
	info := Info{Settings: s, State: "never_rotated", NextRunAt: row.NextRunAt, NextHeartbeatAt: row.NextHeartbeatAt}
	if row.Drift != "" || row.DriftMessage != "" {
		info.Drift = &DriftInfo{State: row.Drift, At: row.DriftAt, Message: row.DriftMessage}
	}
	last, err := e.db.LatestRun(ctx, uid)
	switch {
	case err == nil:
		info.State, info.LastRotationID = last.Status, last.ID
	case !errors.Is(err, store.ErrNotFound):
		return Info{}, err
	}
	return info, nil
}
