package vault

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/keyring"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
)

// Password version states.
const (
	StateCurrent  = "current"
	StatePrevious = "previous"
	StatePending  = "pending"
	StateFailed   = "failed"
)

// Errors callers branch on (errors.Is).
var (
	// ErrStaleRevision: a change named a revision (of a record, or of its rotation settings)
	// that is no longer the stored one; read again and reapply the change.
	ErrStaleRevision = fault.NewSentinel(fault.Conflict, "stale_revision")
	// ErrStaleVersion: a password version was added while a new one was being sealed for the
	// next number; seal it again.
	ErrStaleVersion = fault.NewSentinel(fault.Conflict, "stale_version")
)

// DefaultHistory is how many previous and failed password versions a record keeps.
const DefaultHistory = 10

// Scope is what a caller may see: one team, and within it the records in or below Folders
// (all records when Folders is empty). A record outside the scope is "not found".
type Scope struct {
	TeamID  int64
	Folders []string
	Actor   string // who acts, for the audit trail ("system" when empty)
	KeyID   string // the API key the actor used, if any
}

// Journal records an event in the transaction of the change it describes, so that the event
// is written if, and only if, the change is. audit.Log is one.
type Journal interface {
	Append(ctx context.Context, tx *store.Tx, teamID int64, e audit.Event) error
}

// Event returns an audit event of something done in scope: the actor ("system" when the
// scope names none) and the key it used are filled in.
func (s Scope) Event(typ, recordUID string, details map[string]any) audit.Event {
	actor := s.Actor
	if actor == "" {
		actor = "system"
	}
	if details == nil {
		details = map[string]any{}
	}
	if s.KeyID != "" {
		details["key_id"] = s.KeyID
	}
	return audit.Event{Type: typ, Actor: actor, RecordUID: recordUID, Details: details}
}

// journal records a change made in scope; a Vault without a Journal records nothing.
func (v *Vault) journal(ctx context.Context, tx *store.Tx, scope Scope, typ, uid string, details map[string]any) error {
	if v.events == nil {
		return nil
	}
	return v.events.Append(ctx, tx, scope.TeamID, scope.Event(typ, uid, details))
}

// PasswordVersion is one version of a record's password.
type PasswordVersion struct {
	Version   int64         `json:"version"`
	State     string        `json:"state"`
	Value     secret.Secret `json:"-"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
}

// ListOptions filters and pages a record listing.
type ListOptions struct {
	Type   string
	Folder string
	Title  string
	Count  int
	Offset int
}

// Vault stores and reads records.
type Vault struct {
	db      *store.DB
	keys    *keyring.Keyring
	events  Journal // nil: changes are not audited
	now     func() time.Time
	history int
}

// New returns a Vault over an open database and an unsealed keyring; it records its changes
// in events (nil: nowhere).
func New(db *store.DB, keys *keyring.Keyring, events Journal) *Vault {
	return &Vault{db: db, keys: keys, events: events, now: time.Now, history: DefaultHistory}
}

// NewUID returns a fresh record uid: 16 random bytes, URL-safe base64 without padding, never
// starting with '-' (which a command line would take for a flag).
func NewUID() string {
	b := make([]byte, 16)
	for {
		_, _ = rand.Read(b)
		if uid := base64.RawURLEncoding.EncodeToString(b); uid[0] != '-' {
			return uid
		}
	}
}

func keyAAD(uid string) []byte { return []byte("keyturn/record-key/" + uid) }

func dataAAD(uid string, revision int64) []byte {
	return []byte("keyturn/record/" + uid + "/" + strconv.FormatInt(revision, 10))
}

func versionAAD(uid string, version int64) []byte {
	return []byte("keyturn/password/" + uid + "/" + strconv.FormatInt(version, 10))
}

// Create validates and stores a new record at revision 1; its password, if any, becomes the
// current version.
func (v *Vault) Create(ctx context.Context, scope Scope, in Record) (Record, error) {
	if err := in.Validate(); err != nil {
		return Record{}, err
	}
	if !InFolders(in.Folder, scope.Folders) {
		return Record{}, fault.New(fault.Forbidden, "folder_not_granted", "folder %q is outside the folders granted to you", in.Folder)
	}
	now := v.now().UTC()
	rec := in
	rec.UID, rec.Revision, rec.CreatedAt, rec.UpdatedAt = NewUID(), 1, now, now
	dk, wrapped, err := v.keys.NewDataKey(keyAAD(rec.UID))
	if err != nil {
		return Record{}, err
	}
	row, err := v.sealRecord(dk, rec)
	if err != nil {
		return Record{}, err
	}
	row.TeamID, row.DataKey = scope.TeamID, wrapped
	err = v.db.Tx(ctx, func(tx *store.Tx) error {
		if err := tx.InsertRecord(ctx, row); err != nil {
			return err
		}
		if pw, ok := rec.Password(); ok {
			if err := v.addVersion(ctx, tx, dk, rec.UID, StateCurrent, pw, now); err != nil {
				return err
			}
		}
		return v.journal(ctx, tx, scope, audit.RecordCreated, rec.UID, map[string]any{"type": rec.Type, "revision": rec.Revision})
	})
	if err != nil {
		return Record{}, fmt.Errorf("create record: %w", err)
	}
	return rec, nil
}

// Get returns a record with its values.
func (v *Vault) Get(ctx context.Context, scope Scope, uid string) (Record, error) {
	row, err := v.db.Record(ctx, scope.TeamID, uid)
	if err != nil {
		return Record{}, notFound(err, uid)
	}
	if !InFolders(row.Folder, scope.Folders) {
		return Record{}, notFound(store.ErrNotFound, uid)
	}
	rec, _, err := v.openRecord(row)
	return rec, err
}

// maxTitleMatches bounds how many records sharing a title an ambiguity error lists.
const maxTitleMatches = 20

// Lookup returns the uid of the record a name denotes within the scope: the record whose uid
// it is, or else the one record whose title it is exactly. It is how every route and command
// that takes a record accepts a title. A title no record in the scope has is NotFound, like an
// unknown uid; a title several records in the scope share is Invalid with the code
// ambiguous_title, listing their uids. Records outside the scope are never counted or listed,
// so neither error tells the caller of a record it may not see.
func (v *Vault) Lookup(ctx context.Context, scope Scope, name string) (string, error) {
	row, err := v.lookup(ctx, scope, name)
	return row.UID, err
}

func (v *Vault) lookup(ctx context.Context, scope Scope, name string) (store.Record, error) {
	row, err := v.db.Record(ctx, scope.TeamID, name)
	switch {
	case err == nil && InFolders(row.Folder, scope.Folders):
		return row, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return store.Record{}, fmt.Errorf("find record %q: %w", name, err)
	}
	rows, err := v.db.RecordsByTitle(ctx, scope.TeamID, name, scope.Folders, maxTitleMatches+1)
	if err != nil {
		return store.Record{}, fmt.Errorf("find record titled %q: %w", name, err)
	}
	switch len(rows) {
	case 0:
		return store.Record{}, notFound(nil, name)
	case 1:
		return rows[0], nil
	}
	uids := make([]string, 0, len(rows))
	for _, r := range rows[:min(len(rows), maxTitleMatches)] {
		uids = append(uids, r.UID)
	}
	count := strconv.Itoa(len(rows))
	if len(rows) > maxTitleMatches {
		count = "more than " + strconv.Itoa(maxTitleMatches)
		uids = append(uids, "…")
	}
	return store.Record{}, fault.New(fault.Invalid, "ambiguous_title", "%s records have the title %q: name one by its uid (%s)",
		count, name, strings.Join(uids, ", "))
}

// Meta returns a record's metadata (no field values, nothing decrypted) within the scope.
func (v *Vault) Meta(ctx context.Context, scope Scope, uid string) (Summary, error) {
	row, err := v.db.Record(ctx, scope.TeamID, uid)
	if err != nil || !InFolders(row.Folder, scope.Folders) {
		return Summary{}, notFound(err, uid)
	}
	return Summary{UID: row.UID, Type: row.Type, Title: row.Title, Folder: row.Folder, Revision: row.Revision,
		CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt}, nil
}

// List returns record metadata matching the options, and whether more remain past this page.
func (v *Vault) List(ctx context.Context, scope Scope, opt ListOptions) ([]Summary, bool, error) {
	if opt.Type != "" && !slices.Contains(Types, opt.Type) {
		return nil, false, fault.New(fault.Invalid, "invalid_request", "type %q: want one of %s", opt.Type, strings.Join(Types, ", "))
	}
	if opt.Count <= 0 {
		opt.Count = 100
	}
	rows, err := v.db.ListRecords(ctx, store.RecordFilter{
		TeamID: scope.TeamID, Within: scope.Folders, Type: opt.Type, Folder: opt.Folder, Title: opt.Title,
		Limit: opt.Count + 1, Offset: opt.Offset,
	})
	if err != nil {
		return nil, false, fmt.Errorf("list records: %w", err)
	}
	more := len(rows) > opt.Count
	rows = rows[:min(len(rows), opt.Count)]
	out := make([]Summary, len(rows))
	for i, r := range rows {
		out[i] = Summary{UID: r.UID, Type: r.Type, Title: r.Title, Folder: r.Folder, Revision: r.Revision,
			CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	}
	return out, more, nil
}

// Update replaces a record's contents. in.Revision must be the record's current revision; a
// stale one gives a Conflict error and changes nothing. A changed password becomes the current
// version and the old one previous.
func (v *Vault) Update(ctx context.Context, scope Scope, in Record) (Record, error) {
	if err := in.Validate(); err != nil {
		return Record{}, err
	}
	if !InFolders(in.Folder, scope.Folders) {
		return Record{}, fault.New(fault.Forbidden, "folder_not_granted", "folder %q is outside the folders granted to you", in.Folder)
	}
	var out Record
	err := v.db.Tx(ctx, func(tx *store.Tx) error {
		row, err := tx.Record(ctx, scope.TeamID, in.UID)
		if err != nil {
			return notFound(err, in.UID)
		}
		if !InFolders(row.Folder, scope.Folders) {
			return notFound(store.ErrNotFound, in.UID)
		}
		if row.Revision != in.Revision {
			return staleRevision(in.UID, in.Revision, row.Revision)
		}
		old, dk, err := v.openRecord(row)
		if err != nil {
			return err
		}
		now := v.now().UTC()
		out = in
		out.Revision, out.CreatedAt, out.UpdatedAt = row.Revision+1, old.CreatedAt, now
		newRow, err := v.sealRecord(dk, out)
		if err != nil {
			return err
		}
		newRow.TeamID = scope.TeamID
		if err := tx.UpdateRecord(ctx, newRow); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return staleRevision(in.UID, in.Revision, -1)
			}
			return err
		}
		oldPW, hadPW := old.Password()
		newPW, hasPW := out.Password()
		if hadPW != hasPW || oldPW != newPW {
			if err := tx.SetPasswordVersionState(ctx, out.UID, StateCurrent, StatePrevious, now); err != nil {
				return err
			}
			if hasPW {
				if err := v.addVersion(ctx, tx, dk, out.UID, StateCurrent, newPW, now); err != nil {
					return err
				}
			}
			if err := tx.PrunePasswordVersions(ctx, out.UID, v.history, StatePrevious, StateFailed); err != nil {
				return err
			}
		}
		return v.journal(ctx, tx, scope, audit.RecordUpdated, out.UID, map[string]any{"revision": out.Revision})
	})
	if err != nil {
		return Record{}, fmt.Errorf("update record %s: %w", in.UID, err)
	}
	return out, nil
}

// Delete removes a record and its password versions.
func (v *Vault) Delete(ctx context.Context, scope Scope, uid string) error {
	err := v.db.Tx(ctx, func(tx *store.Tx) error {
		row, err := tx.Record(ctx, scope.TeamID, uid)
		if err != nil || !InFolders(row.Folder, scope.Folders) {
			return notFound(err, uid)
		}
		if _, err := tx.ActiveRun(ctx, uid); err == nil {
			return fault.New(fault.Conflict, "rotation_active", "record %s is being rotated: delete it once the rotation has ended", uid)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := tx.DeleteRecord(ctx, scope.TeamID, uid); err != nil {
			return err
		}
		return v.journal(ctx, tx, scope, audit.RecordDeleted, uid, nil)
	})
	if err != nil {
		return fmt.Errorf("delete record %s: %w", uid, err)
	}
	return nil
}

// Versions returns a record's password versions, newest first.
func (v *Vault) Versions(ctx context.Context, scope Scope, uid string) ([]PasswordVersion, error) {
	row, err := v.db.Record(ctx, scope.TeamID, uid)
	if err != nil || !InFolders(row.Folder, scope.Folders) {
		return nil, notFound(err, uid)
	}
	dk, err := v.keys.OpenDataKey(row.DataKey, keyAAD(uid))
	if err != nil {
		return nil, fmt.Errorf("record %s: data key: %w", uid, err)
	}
	rows, err := v.db.PasswordVersions(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("record %s: versions: %w", uid, err)
	}
	out := make([]PasswordVersion, len(rows))
	for i, pv := range rows {
		plain, err := dk.Open(pv.Value, versionAAD(uid, pv.Version))
		if err != nil {
			return nil, fmt.Errorf("record %s: password version %d: %w", uid, pv.Version, err)
		}
		out[i] = PasswordVersion{Version: pv.Version, State: pv.State, Value: secret.New(plain),
			CreatedAt: pv.CreatedAt, UpdatedAt: pv.UpdatedAt}
		clear(plain)
	}
	return out, nil
}

func (v *Vault) addVersion(ctx context.Context, tx *store.Tx, dk *keyring.DataKey, uid, state, pw string, now time.Time) error {
	latest, _, err := tx.VersionNumbers(ctx, uid)
	if err != nil {
		return err
	}
	n := latest + 1
	return tx.InsertPasswordVersion(ctx, store.PasswordVersion{
		RecordUID: uid, Version: n, State: state, Value: dk.Seal([]byte(pw), versionAAD(uid, n)),
		CreatedAt: now, UpdatedAt: now,
	})
}

func (v *Vault) sealRecord(dk *keyring.DataKey, rec Record) (store.Record, error) {
	plain, err := json.Marshal(content{Fields: rec.Fields, Custom: rec.Custom, Notes: rec.Notes})
	if err != nil {
		return store.Record{}, fmt.Errorf("record %s: %w", rec.UID, err)
	}
	defer clear(plain)
	return store.Record{
		UID: rec.UID, Type: rec.Type, Title: rec.Title, Folder: rec.Folder, Revision: rec.Revision,
		Data: dk.Seal(plain, dataAAD(rec.UID, rec.Revision)), CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt,
	}, nil
}

func (v *Vault) openRecord(row store.Record) (Record, *keyring.DataKey, error) {
	dk, err := v.keys.OpenDataKey(row.DataKey, keyAAD(row.UID))
	if err != nil {
		return Record{}, nil, fmt.Errorf("record %s: data key: %w", row.UID, err)
	}
	plain, err := dk.Open(row.Data, dataAAD(row.UID, row.Revision))
	if err != nil {
		return Record{}, nil, fmt.Errorf("record %s: %w", row.UID, err)
	}
	defer clear(plain)
	var c content
	if err := json.Unmarshal(plain, &c); err != nil {
		return Record{}, nil, fmt.Errorf("record %s: sealed content: %w", row.UID, err)
	}
	return Record{
		UID: row.UID, Type: row.Type, Title: row.Title, Folder: row.Folder, Revision: row.Revision,
		Fields: c.Fields, Custom: c.Custom, Notes: c.Notes, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt,
	}, dk, nil
}

func notFound(err error, uid string) error {
	if err == nil || errors.Is(err, store.ErrNotFound) {
		return fault.NotFoundf("no record %q", uid)
	}
	return err
}

func staleRevision(uid string, given, stored int64) error {
	msg := fmt.Sprintf("record %s has changed since revision %d", uid, given)
	if stored >= 0 {
		msg = fmt.Sprintf("record %s is at revision %d, not %d: read it again and reapply your change", uid, stored, given)
	}
	return ErrStaleRevision.New("%s", msg)
}
