package rotation

// The PAM scripts attached to records: adding, listing and deleting them.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/vault"
)

// scriptRecordTypes are the record types that may carry scripts.
var scriptRecordTypes = []string{"pamUser", "pamMachine", "pamDatabase", "pamDirectory", "pamConfiguration"}

// DefaultScriptTimeout is how long a script may run unless it says otherwise.
const DefaultScriptTimeout = 120 * time.Second

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
	creds := make([]string, len(in.CredentialUIDs))
	for i, c := range in.CredentialUIDs {
		// by uid or exact title, as every route takes a record; the script keeps the uid
		if creds[i], err = e.vault.Lookup(ctx, scope, c); err != nil {
			if fault.KindOf(err) == fault.NotFound {
				return ScriptInfo{}, fault.Invalidf("credential_uids: no record %q", c)
			}
			return ScriptInfo{}, fmt.Errorf("credential_uids: %w", err)
		}
	}
	in.CredentialUIDs = creds
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
