package rotation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/schedule"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/vault"
)

// Scheduling works from two indexed columns of each record's rotation settings: next_run_at
// and next_heartbeat_at. Each is computed once per occurrence and stored, so that a restart
// changes nothing: no timer per record, no schedule recomputed from the clock at start.

// dueBatch bounds how many due records one pass takes.
const dueBatch = 1000

// scheduleLoop runs Tick until the engine stops: every Tick, and sooner when a scheduled
// rotation falls due in between, so that it is queued at its instant.
func (e *Engine) scheduleLoop() {
	t := time.NewTimer(e.opt.Tick)
	defer t.Stop()
	for {
		select {
		case <-e.stopping:
			return
		case <-t.C:
			wait := e.opt.Tick
			if err := e.guard("scheduler", func() error { return e.fireAllDue(e.runCtx) }); err != nil {
				if e.runCtx.Err() == nil {
					e.opt.Logger.Warn("scheduler", "err", err)
				}
			} else if next, err := e.db.NextDue(e.runCtx); err == nil && !next.IsZero() {
				wait = min(wait, max(minWait, next.Sub(e.opt.Now())))
			}
			// Heartbeats run beside the scheduler, one batch at a time: a slow target's checks
			// must not make scheduled rotations late.
			if e.beating.CompareAndSwap(false, true) {
				e.workers.Go(func() {
					defer e.beating.Store(false)
					if err := e.guard("heartbeat", func() error { return e.startHeartbeats(e.runCtx) }); err != nil && e.runCtx.Err() == nil {
						e.opt.Logger.Warn("heartbeats", "err", err)
					}
				})
			}
			t.Reset(wait)
		}
	}
}

// minWait is the shortest pause between two scheduler passes.
const minWait = 5 * time.Millisecond

// Tick starts the scheduled rotations and heartbeats that are due now. The scheduler calls it
// on its own; tests call it with a fake clock.
func (e *Engine) Tick(ctx context.Context) error {
	if err := e.fireAllDue(ctx); err != nil {
		return err
	}
	return e.startHeartbeats(ctx)
}

// fireAllDue queues a run for every record whose scheduled rotation is due, a batch at a time.
func (e *Engine) fireAllDue(ctx context.Context) error {
	for {
		n, err := e.fireDue(ctx)
		if err != nil || n < dueBatch {
			return err
		}
	}
}

// fireDue queues a run for each record whose next_run_at has come, and moves next_run_at to
// the occurrence after now: however many occurrences were missed, one run covers them (or
// none, with catch-up "skip"). A record with an active run gets no second one. The due records
// are read and moved on in one transaction that locks them, so that nodes firing at once take
// different records; and an occurrence makes one run at most (unique per record and due time).
// The runs are queued unclaimed: this node claims them at once, and the others as they have
// room.
func (e *Engine) fireDue(ctx context.Context) (int, error) {
	now := e.opt.Now().UTC()
	type parsed struct {
		s     Settings
		sched schedule.Schedule
		err   error
	}
	cache := map[string]parsed{} // many records share their settings (and configuration) within a pass
	var (
		due  []store.RotationSettings
		lags []time.Duration
	)
	err := e.db.Tx(ctx, func(tx *store.Tx) error {
		lags = lags[:0]
		var err error
		if due, err = tx.DueSchedules(ctx, now, dueBatch); err != nil {
			return err
		}
		for _, d := range due {
			p, ok := cache[string(d.Settings)]
			if !ok {
				if err := json.Unmarshal(d.Settings, &p.s); err != nil {
					return fmt.Errorf("record %s: rotation settings: %w", d.RecordUID, err)
				}
				p.sched, p.err = e.loadSchedule(ctx, tx.Reader, d.TeamID, p.s)
				cache[string(d.Settings)] = p
			}
			s := p.s
			var next *time.Time
			if p.err != nil {
				e.opt.Logger.Warn("schedule cannot be read: scheduled rotation stops", "record", d.RecordUID, "err", p.err)
			} else if t, ok := p.sched.Next(now, d.AnchorAt); ok {
				next = &t
			}
			if e.shouldFire(s, *d.NextRunAt, now) {
				run := store.Run{ID: uuid.NewString(), TeamID: d.TeamID, RecordUID: d.RecordUID, Trigger: TriggerScheduled,
					Status: StatusQueued, State: string(StateQueued), CreatedAt: now, UpdatedAt: now, DueAt: d.NextRunAt}
				inserted, err := tx.InsertRunIfIdle(ctx, run)
				if err != nil {
					return err
				}
				if inserted { // otherwise the record's active run covers this occurrence
					lags = append(lags, now.Sub(*d.NextRunAt))
				}
			}
			if s.Paused || !s.IsEnabled() {
				next = nil
			}
			if err := tx.SetNextRun(ctx, d.RecordUID, next); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("scheduler: %w", err)
	}
	for _, lag := range lags {
		e.opt.Observer.Scheduled(lag)
	}
	if len(lags) > 0 {
		select {
		case e.idle <- struct{}{}: // claim them now
		default:
		}
	}
	return len(due), nil
}

// shouldFire decides whether a due occurrence runs: not when paused or disabled, not when its
// window has passed, and with catch-up "skip" not when it was missed (keyturn was down).
func (e *Engine) shouldFire(s Settings, due, now time.Time) bool {
	if s.Paused || !s.IsEnabled() {
		return false
	}
	late := now.Sub(due)
	if w := s.window(); w > 0 && late > w {
		return false
	}
	policy := s.CatchUp
	if policy == "" {
		policy = e.opt.CatchUp
	}
	return policy != CatchUpSkip || late <= e.missedAfter()
}

// missedAfter is how late an occurrence must be to count as missed rather than merely due.
func (e *Engine) missedAfter() time.Duration { return max(4*e.opt.Tick, time.Minute) }

// loadSchedule reads a settings' schedule, resolving DEFAULT to the configuration's default.
func (e *Engine) loadSchedule(ctx context.Context, r store.Reader, teamID int64, s Settings) (schedule.Schedule, error) {
	sched, err := schedule.Load(s.Schedule)
	if err != nil || !sched.UsesDefault() {
		return sched, err
	}
	raw, err := e.defaultSchedule(ctx, r, teamID, s.ConfigurationUID)
	if err != nil {
		return schedule.Schedule{}, err
	}
	return schedule.Load(raw)
}

// defaultSchedule reads a pamConfiguration's default rotation schedule: Keeper keeps it in a
// field labelled defaultRotationSchedule (type schedule).
func (e *Engine) defaultSchedule(ctx context.Context, r store.Reader, teamID int64, configUID string) (json.RawMessage, error) {
	if configUID == "" {
		return nil, fault.New(fault.Invalid, "invalid_schedule", "schedule DEFAULT needs configuration_uid: the configuration holds the default schedule")
	}
	rec, err := e.vault.GetIn(ctx, r, teamID, configUID)
	if err != nil {
		return nil, err
	}
	for _, group := range [][]vault.Field{rec.Fields, rec.Custom} {
		for _, f := range group {
			if (f.Label == "defaultRotationSchedule" || f.Type == "schedule" && f.Label == "") && len(f.Value) > 0 {
				return f.Value[0], nil
			}
		}
	}
	return nil, fault.New(fault.Invalid, "invalid_schedule",
		"schedule DEFAULT: configuration %s has no defaultRotationSchedule field", configUID)
}

// scheduleState computes what a settings change does to the schedule: a new or changed
// schedule (or pause, or enabling) starts a new phase at now and recomputes the next run; an
// unchanged one keeps its stored next run, so saving the same settings never moves it.
func (e *Engine) scheduleState(ctx context.Context, r store.Reader, teamID int64, s Settings, override *time.Time,
	old *store.RotationSettings, canVerify bool, now time.Time) (store.ScheduleState, error) {
	sched, err := e.loadSchedule(ctx, r, teamID, s)
	if err != nil {
		return store.ScheduleState{}, err
	}
	var st store.ScheduleState
	changed := true
	if old != nil {
		var prev Settings
		_ = json.Unmarshal(old.Settings, &prev)
		changed = !sameSchedule(prev, s)
		st = store.ScheduleState{NextRunAt: old.NextRunAt, AnchorAt: old.AnchorAt, NextHeartbeatAt: old.NextHeartbeatAt}
	}
	if changed || st.AnchorAt.IsZero() {
		st.AnchorAt = now
		st.NextRunAt = nil
		if t, ok := sched.Next(now, now); ok {
			st.NextRunAt = &t
		}
	}
	if override != nil {
		st.NextRunAt = override
	}
	if s.Paused || !s.IsEnabled() {
		st.NextRunAt = nil
	}
	switch {
	case !canVerify || e.opt.HeartbeatInterval < 0 || !s.IsEnabled():
		st.NextHeartbeatAt = nil
	case st.NextHeartbeatAt == nil && (old == nil || old.Drift == ""):
		t := now.Add(e.opt.HeartbeatInterval)
		st.NextHeartbeatAt = &t
	}
	return st, nil
}

// sameSchedule reports whether two settings schedule the same runs.
func sameSchedule(a, b Settings) bool {
	return canonical(a.Schedule) == canonical(b.Schedule) && a.Paused == b.Paused && a.IsEnabled() == b.IsEnabled() &&
		a.ConfigurationUID == b.ConfigurationUID
}

func canonical(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// checkSchedule validates a new schedule against the clock and the minimum interval.
func (e *Engine) checkSchedule(ctx context.Context, r store.Reader, teamID int64, s Settings, now time.Time) error {
	if _, err := schedule.Parse(s.Schedule, now); err != nil {
		return err
	}
	sched, err := e.loadSchedule(ctx, r, teamID, s)
	if err != nil {
		return err
	}
	if sched.OnDemand() {
		return nil
	}
	// The rule is about the schedule's nominal spacing: a DST change may bring two fires of an
	// hourly cron closer once a year (02:16 does not exist, so it fires at 03:00, then 03:16).
	if utc, err := schedule.Load(inUTC(s.Schedule)); err == nil {
		sched = utc
	}
	if gap, ok := sched.MinInterval(now, now, 400); ok && gap < e.opt.MinInterval {
		return fault.New(fault.Invalid, "invalid_schedule", "schedule fires %s apart at times; the minimum interval is %s",
			gap.Round(time.Second), e.opt.MinInterval)
	}
	return nil
}

// inUTC returns a cron schedule with its time zone set to UTC; other schedules unchanged.
func inUTC(raw json.RawMessage) json.RawMessage {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil || !strings.EqualFold(fmt.Sprint(m["type"]), "CRON") {
		return raw
	}
	m["tz"] = "Etc/UTC"
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}

// startHeartbeats checks the credentials whose heartbeat is due, 8 at a time, and returns when
// they are done. Each is moved a few minutes ahead first, so that a slow check is not started
// twice.
func (e *Engine) startHeartbeats(ctx context.Context) error {
	if e.opt.HeartbeatInterval < 0 {
		return nil
	}
	now := e.opt.Now().UTC()
	later := now.Add(5 * time.Minute)
	var due []store.RotationSettings
	err := e.db.Tx(ctx, func(tx *store.Tx) error {
		var err error
		if due, err = tx.DueHeartbeats(ctx, now, 100); err != nil { // locked: one node checks each
			return err
		}
		for _, d := range due {
			if err := tx.SetHeartbeat(ctx, d.RecordUID, &later, store.Drift{State: d.Drift, At: d.DriftAt, Message: d.DriftMessage}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(due) == 0 {
		return err
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, d := range due {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			defer func() {
				if p := recover(); p != nil {
					e.heartbeatPanicked(ctx, d, p)
				}
			}()
			if err := e.heartbeat(ctx, d); err != nil && ctx.Err() == nil {
				e.opt.Logger.Warn("heartbeat", "record", d.RecordUID, "err", err)
			}
		})
	}
	wg.Wait()
	return nil
}

// heartbeat checks, without changing it, that the target still accepts the vault's current
// password. A refusal marks the record drifted and stops its heartbeats (so that they cannot
// lock the account out), and, where the record allows it, reconciles with a rotation.
func (e *Engine) heartbeat(ctx context.Context, d store.RotationSettings) error {
	now := e.opt.Now().UTC()
	j := &job{e: e, run: store.Run{TeamID: d.TeamID, RecordUID: d.RecordUID}}
	keep := store.Drift{State: d.Drift, At: d.DriftAt, Message: d.DriftMessage}
	set := func(next *time.Time, drift store.Drift) error {
		return e.db.Tx(ctx, func(tx *store.Tx) error { return tx.SetHeartbeat(ctx, d.RecordUID, next, drift) })
	}
	if err := j.load(ctx); err != nil {
		keep.Message = "heartbeat: " + err.Error()
		return set(nil, keep)
	}
	if j.verifier == nil {
		return set(nil, keep)
	}
	if _, err := e.db.ActiveRun(ctx, d.RecordUID); err == nil {
		later := now.Add(time.Minute)
		return set(&later, keep) // a rotation is on its way: check after it
	}
	current, _, err := j.currentPassword(ctx)
	if err != nil {
		return err
	}
	acct := j.account
	if fields := j.currentFields(); len(fields) > 0 {
		acct = withFields(acct, fields)
	}
	// A heartbeat gives way to rotations: when its target has no token now, it comes back later.
	if !e.targets.allow(j.target) {
		later := now.Add(time.Minute)
		return set(&later, keep)
	}
	verdict := j.verifier.Verify(ctx, acct, current)
	if connector.IsTransient(verdict) && e.targets.allow(j.target) { // once more, before deciding anything
		verdict = j.verifier.Verify(ctx, acct, current)
	}
	switch {
	case verdict == nil:
		next := now.Add(e.opt.HeartbeatInterval)
		return set(&next, store.Drift{})
	case errors.Is(verdict, connector.ErrRejected):
		return e.drifted(ctx, j, acct, now)
	default:
		next := now.Add(min(e.opt.HeartbeatInterval, 15*time.Minute))
		_, msg := errorInfo(verdict, "heartbeat_failed")
		keep.Message = "the last heartbeat could not check the credential: " + msg
		return set(&next, keep)
	}
}

// heartbeatPanicked settles a heartbeat that panicked: the panic is logged and counted, the
// record's drift state is kept with a message saying so, and the heartbeat comes back later,
// as after a check that could not tell. Heartbeats never change a password, so both stay.
func (e *Engine) heartbeatPanicked(ctx context.Context, d store.RotationSettings, p any) {
	e.logPanic("heartbeat", p, "record", d.RecordUID)
	ctx = context.WithoutCancel(ctx)
	if row, err := e.db.RotationSettings(ctx, d.TeamID, d.RecordUID); err != nil || row.Drift == DriftDrifted {
		return // the heartbeat found drift before it panicked (and stopped heartbeats): leave that be
	}
	next := e.opt.Now().UTC().Add(min(e.opt.HeartbeatInterval, 15*time.Minute))
	drift := store.Drift{State: d.Drift, At: d.DriftAt,
		Message: "the last heartbeat stopped on an internal error (" + CodeInternalPanic + "; see the server log)"}
	if err := e.db.Tx(ctx, func(tx *store.Tx) error { return tx.SetHeartbeat(ctx, d.RecordUID, &next, drift) }); err != nil {
		e.opt.Logger.Warn("heartbeat", "record", d.RecordUID, "err", err)
	}
}

// drifted records that the target refuses the vault's current password and reconciles when
// the record allows it.
func (e *Engine) drifted(ctx context.Context, j *job, acct connector.Account, now time.Time) error {
	reconcile := false
	if r, ok := j.rotator.(connector.Reconciler); ok && j.method == MethodGeneral {
		reconcile = r.CanReconcile(acct)
	}
	msg := "the target refuses the vault's current password: it was changed behind keyturn's back"
	if reconcile {
		msg += "; reconciling with a rotation"
	} else {
		msg += "; heartbeats stop until the credential is rotated"
	}
	err := e.db.Tx(ctx, func(tx *store.Tx) error {
		if err := tx.SetHeartbeat(ctx, j.run.RecordUID, nil, store.Drift{State: DriftDrifted, At: &now, Message: msg}); err != nil {
			return err
		}
		return e.audit.Append(ctx, tx, j.run.TeamID, audit.Event{Type: audit.RotationDrift, Actor: "heartbeat",
			RecordUID: j.run.RecordUID, Details: map[string]any{"reconcile": reconcile}})
	})
	if err != nil {
		return err
	}
	e.opt.Observer.Drifted()
	if !reconcile {
		return nil
	}
	_, _, err = e.Rotate(ctx, vault.Scope{TeamID: j.run.TeamID}, j.run.RecordUID, TriggerRecovery)
	return err
}

// DriftDrifted is the drift state of a record whose target refuses the vault's current password.
const DriftDrifted = "drifted"

// currentFields are the record's custom fields that identify its current credential (key_id).
func (j *job) currentFields() map[string]string {
	out := map[string]string{}
	for _, f := range j.user.Custom {
		var v string
		if strings.EqualFold(f.Label, "key_id") && len(f.Value) > 0 && json.Unmarshal(f.Value[0], &v) == nil {
			out[f.Label] = v
		}
	}
	return out
}

func withFields(a connector.Account, fields map[string]string) connector.Account {
	m := make(map[string]string, len(a.Target.Fields)+len(fields))
	for k, v := range a.Target.Fields {
		m[k] = v
	}
	for k, v := range fields {
		m[k] = v
	}
	a.Target.Fields = m
	return a
}
