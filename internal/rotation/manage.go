package rotation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/vault"
)

// ErrNotConfigured: the record has no rotation settings yet.
var ErrNotConfigured = fault.NewSentinel(fault.Conflict, "not_configured")

// Record types that may carry scripts, and those a resource may be.
var (
	scriptRecordTypes   = []string{"pamUser", "pamMachine", "pamDatabase", "pamDirectory", "pamConfiguration"}
	resourceRecordTypes = []string{"pamMachine", "pamDatabase", "pamDirectory", "login", "general"}
)

// secretFieldTypes are left out of a connector's Target.Fields.
var secretFieldTypes = []string{"password", "secret", "pinCode", "oneTimeCode", "keyPair"}

// DefaultScriptTimeout is how long a script may run unless it says otherwise.
const DefaultScriptTimeout = 120 * time.Second

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
	if err := e.checkRef(ctx, scope, "configuration_uid", s.ConfigurationUID, []string{"pamConfiguration"}); err != nil {
		return Settings{}, err
	}
	if err := e.checkRef(ctx, scope, "resource_uid", s.ResourceUID, resourceRecordTypes); err != nil {
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

func (e *Engine) checkRef(ctx context.Context, scope vault.Scope, field, uid string, types []string) error {
	if uid == "" {
		return nil
	}
	rec, err := e.vault.Meta(ctx, scope, uid)
	if fault.KindOf(err) == fault.NotFound {
		return fault.Invalidf("%s: no record %q", field, uid)
	}
	if err != nil {
		return err
	}
	if !slices.Contains(types, rec.Type) {
		return fault.Invalidf("%s: record %s is a %s record; it must be one of %s", field, uid, rec.Type, strings.Join(types, ", "))
	}
	return nil
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

// ScriptInput is a script to attach.
type ScriptInput struct {
	Name           string
	Content        []byte
	Command        string
	CredentialUIDs []string
	Timeout        time.Duration
}

// ScriptInfo is an attached script as listed: never its content.
type ScriptInfo struct {
	ID             string    `json:"id"`
	RecordUID      string    `json:"record_uid"`
	Name           string    `json:"name"`
	Command        string    `json:"command"`
	CredentialUIDs []string  `json:"credential_uids"`
	TimeoutS       int64     `json:"timeout_s"`
	SHA256         string    `json:"sha256"`
	Size           int       `json:"size"`
	CreatedAt      time.Time `json:"created_at"`
}

// AddScript attaches a script to a pamUser, resource or configuration record, sealed under
// the record's data key; it runs after the record's other scripts.
func (e *Engine) AddScript(ctx context.Context, scope vault.Scope, uid string, in ScriptInput) (ScriptInfo, error) {
	if strings.TrimSpace(in.Name) == "" || len(in.Name) > 255 || strings.ContainsAny(in.Name, "/\x00") {
		return ScriptInfo{}, fault.Invalidf("a script needs a name of 1 to 255 characters without '/'")
	}
	if len(in.Content) == 0 {
		return ScriptInfo{}, fault.Invalidf("the script is empty")
	}
	if in.Timeout < 0 || in.Timeout > time.Hour {
		return ScriptInfo{}, fault.Invalidf("timeout_s must be between 1 and 3600")
	}
	if in.Timeout == 0 {
		in.Timeout = DefaultScriptTimeout
	}
	rec, err := e.vault.Meta(ctx, scope, uid)
	if err != nil {
		return ScriptInfo{}, err
	}
	if !slices.Contains(scriptRecordTypes, rec.Type) {
		return ScriptInfo{}, fault.Invalidf("scripts attach to %s records; %s is a %s record", strings.Join(scriptRecordTypes, ", "), uid, rec.Type)
	}
	for _, c := range in.CredentialUIDs {
		if _, err := e.vault.Meta(ctx, scope, c); err != nil {
			if fault.KindOf(err) == fault.NotFound {
				return ScriptInfo{}, fault.Invalidf("credential_uids: no record %q", c)
			}
			return ScriptInfo{}, err
		}
	}
	row := store.Script{ID: uuid.NewString(), RecordUID: uid, Name: in.Name, Command: in.Command,
		CredentialUIDs: in.CredentialUIDs, Timeout: in.Timeout, CreatedAt: e.opt.Now().UTC()}
	err = e.db.Tx(ctx, func(tx *store.Tx) error {
		sealed, err := e.vault.Seal(ctx, tx.Reader, scope.TeamID, uid, "script/"+row.ID, in.Content)
		if err != nil {
			return err
		}
		row.Content = sealed
		if err := tx.InsertScript(ctx, row); err != nil {
			return err
		}
		sum := sha256.Sum256(in.Content)
		return e.audit.Append(ctx, tx, scope.TeamID, scope.Event(audit.ScriptAdded, uid,
			map[string]any{"script_id": row.ID, "name": row.Name, "sha256": hex.EncodeToString(sum[:])}))
	})
	if err != nil {
		return ScriptInfo{}, fmt.Errorf("attach script to %s: %w", uid, err)
	}
	return scriptInfo(row, in.Content), nil
}

func scriptInfo(s store.Script, content []byte) ScriptInfo {
	sum := sha256.Sum256(content)
	creds := s.CredentialUIDs
	if creds == nil {
		creds = []string{}
	}
	return ScriptInfo{ID: s.ID, RecordUID: s.RecordUID, Name: s.Name, Command: s.Command, CredentialUIDs: creds,
		TimeoutS: int64(s.Timeout / time.Second), SHA256: hex.EncodeToString(sum[:]), Size: len(content), CreatedAt: s.CreatedAt}
}

// Scripts lists a record's scripts in the order they run.
func (e *Engine) Scripts(ctx context.Context, scope vault.Scope, uid string) ([]ScriptInfo, error) {
	if _, err := e.vault.Meta(ctx, scope, uid); err != nil {
		return nil, err
	}
	rows, err := e.db.Scripts(ctx, uid)
	if err != nil {
		return nil, err
	}
	out := make([]ScriptInfo, len(rows))
	for i, s := range rows {
		content, err := e.vault.Open(ctx, e.db.Reader, scope.TeamID, uid, "script/"+s.ID, s.Content)
		if err != nil {
			return nil, err
		}
		out[i] = scriptInfo(s, content)
	}
	return out, nil
}

// DeleteScript detaches a script.
func (e *Engine) DeleteScript(ctx context.Context, scope vault.Scope, uid, id string) error {
	if _, err := e.vault.Meta(ctx, scope, uid); err != nil {
		return err
	}
	err := e.db.Tx(ctx, func(tx *store.Tx) error {
		if err := tx.DeleteScript(ctx, uid, id); err != nil {
			return err
		}
		return e.audit.Append(ctx, tx, scope.TeamID, scope.Event(audit.ScriptDeleted, uid, map[string]any{"script_id": id}))
	})
	if errors.Is(err, store.ErrNotFound) {
		return fault.NotFoundf("record %s has no script %q", uid, id)
	}
	return err
}

// ScriptParams returns the decoded params the scripts of a pamUser record would receive in a
// rotation now, with a placeholder new password; secrets masked unless reveal.
func (e *Engine) ScriptParams(ctx context.Context, scope vault.Scope, uid string, reveal bool) (json.RawMessage, error) {
	rec, err := e.vault.Meta(ctx, scope, uid)
	if err != nil {
		return nil, err
	}
	if rec.Type != "pamUser" {
		return nil, fault.Invalidf("script params are those of a pamUser's rotation; %s is a %s record", uid, rec.Type)
	}
	j := &job{e: e, run: store.Run{TeamID: scope.TeamID, RecordUID: uid}}
	if err := j.load(ctx); err != nil {
		return nil, err
	}
	old, _ := j.user.Password()
	params := script.Params{Configuration: j.config, Resource: j.resource, User: j.user,
		NewPassword: secret.FromString("<the new password>"), OldPassword: secret.FromString(old)}
	if len(j.scripts) > 0 {
		params.Credentials = j.scripts[0].credentials
	}
	return params.Decoded(reveal)
}

// load reads what a run needs: the record, its settings, its resource and configuration,
// the connectors and the scripts.
func (j *job) load(ctx context.Context) error {
	e, teamID := j.e, j.run.TeamID
	var err error
	if j.user, j.userKey, err = e.vault.GetWithKey(ctx, e.db.Reader, teamID, j.run.RecordUID); err != nil {
		return err
	}
	if j.settings, j.state, err = e.settingsRow(ctx, e.db.Reader, teamID, j.run.RecordUID); err != nil {
		return err
	}
	j.method = j.settings.Method
	if isNOOP(j.user) {
		j.method = MethodScriptsOnly
	}
	for _, ref := range []struct {
		uid  string
		into **vault.Record
	}{{j.settings.ConfigurationUID, &j.config}, {j.settings.ResourceUID, &j.resource}} {
		if ref.uid == "" {
			continue
		}
		rec, err := e.vault.GetIn(ctx, e.db.Reader, teamID, ref.uid)
		if err != nil {
			return fault.New(fault.Invalid, "rotation_misconfigured", "record %s named in the rotation settings: %v", ref.uid, err)
		}
		*ref.into = &rec
	}
	if j.method == MethodGeneral {
		conn, ok := e.connectors[j.settings.Connector]
		if !ok {
			return fault.New(fault.Invalid, "connector_unavailable", "the %s connector is not available", j.settings.Connector)
		}
		if j.resource == nil {
			return fault.New(fault.Invalid, "rotation_misconfigured", "method general needs a resource record")
		}
		j.rotator, j.verifier, j.connName = conn, conn, j.settings.Connector
		j.issuer, _ = conn.(connector.Issuer)
		j.finalizer, _ = conn.(connector.Finalizer)
	} else if j.settings.VerifyWith != "" {
		conn, ok := e.connectors[j.settings.VerifyWith]
		if !ok {
			return fault.New(fault.Invalid, "connector_unavailable", "the %s connector named by verify_with is not available", j.settings.VerifyWith)
		}
		j.verifier, j.connName = conn, j.settings.VerifyWith
	}
	j.account = accountOf(j.user, j.resource)
	j.target = targetKey(j.connName, j.account.Target.URL, j.settings.ResourceUID)
	if t, ok := j.verifier.(connector.VerifyToggle); ok && !t.CanVerify(j.account) {
		j.verifier = nil
	}
	for _, rec := range []*vault.Record{&j.user, j.resource, j.config} {
		if rec == nil {
			continue
		}
		if err := j.loadScripts(ctx, *rec); err != nil {
			return err
		}
	}
	return nil
}

func (j *job) loadScripts(ctx context.Context, rec vault.Record) error {
	rows, err := j.e.db.Scripts(ctx, rec.UID)
	if err != nil {
		return err
	}
	for _, s := range rows {
		content, err := j.e.vault.Open(ctx, j.e.db.Reader, j.run.TeamID, rec.UID, "script/"+s.ID, s.Content)
		if err != nil {
			return err
		}
		a := attached{script: script.Script{Name: s.Name, Content: content, Command: s.Command, Timeout: s.Timeout}}
		for _, c := range s.CredentialUIDs {
			cred, err := j.e.vault.GetIn(ctx, j.e.db.Reader, j.run.TeamID, c)
			if err != nil {
				return fault.New(fault.Invalid, "rotation_misconfigured", "credential record %s of script %s: %v", c, s.Name, err)
			}
			a.credentials = append(a.credentials, cred)
		}
		j.scripts = append(j.scripts, a)
	}
	return nil
}

// accountOf describes the account for a connector: the pamUser's login, and the target and
// admin credential from the resource record (url, login and password fields). Fields holds the
// resource's fields and custom fields by label (or type), with the pamUser's custom fields
// over them, so that settings such as "Okta Admin Reset" may live on either record.
func accountOf(user vault.Record, resource *vault.Record) connector.Account {
	acct := connector.Account{Login: firstString(user, "login"), Target: connector.Target{Fields: map[string]string{}}}
	add := func(fields []vault.Field, override bool) {
		for _, f := range fields {
			if slices.Contains(secretFieldTypes, f.Type) {
				continue // secrets reach a connector only as AdminSecret
			}
			key := f.Label
			if key == "" {
				key = f.Type
			}
			var s string
			if _, seen := acct.Target.Fields[key]; (override || !seen) && len(f.Value) > 0 && json.Unmarshal(f.Value[0], &s) == nil {
				acct.Target.Fields[key] = s
			}
		}
	}
	if resource != nil {
		acct.Target.URL = firstString(*resource, "url")
		acct.Target.AdminLogin = firstString(*resource, "login")
		if pw, ok := resource.Password(); ok {
			acct.Target.AdminSecret = secret.FromString(pw)
		}
		add(resource.Fields, false)
		add(resource.Custom, false)
		for _, f := range resource.Custom {
			var v string
			if slices.Contains(secretFieldTypes, f.Type) && f.Label != "" && len(f.Value) > 0 && json.Unmarshal(f.Value[0], &v) == nil && v != "" {
				if acct.Target.Secrets == nil {
					acct.Target.Secrets = map[string]secret.Secret{}
				}
				acct.Target.Secrets[f.Label] = secret.FromString(v)
			}
		}
	}
	add(user.Custom, true)
	return acct
}

func firstString(rec vault.Record, fieldType string) string {
	for _, f := range rec.Fields {
		if f.Type == fieldType && len(f.Value) > 0 {
			var s string
			if json.Unmarshal(f.Value[0], &s) == nil {
				return s
			}
		}
	}
	return ""
}
