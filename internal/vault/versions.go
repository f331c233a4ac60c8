package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/keyturn/keyturn/internal/keyring"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
)

// These methods change password versions inside a caller's transaction, so that the rotation
// engine can commit a version change and its own state in one step.

// AddPending seals pw as a new pending version of the record and returns its number.
func (v *Vault) AddPending(ctx context.Context, tx *store.Tx, teamID int64, uid string, pw secret.Secret) (int64, error) {
	k, err := v.KeyOf(ctx, tx.Reader, teamID, uid)
	if err != nil {
		return 0, err
	}
	p, err := v.PreparePending(ctx, tx.Reader, k, pw)
	if err != nil {
		return 0, err
	}
	n, _, err := v.ApplyPending(ctx, tx, p)
	return n, err
}

// Pending is a new pending version sealed ahead of its transaction: the data key is opened and
// the value sealed outside the single writer, which then only checks and writes.
type Pending struct {
	uid     string
	version int64 // the number the value is sealed for
	value   []byte
}

// Key is a record's opened data key: it seals and opens the record's password versions without
// reading the record again (a record's data key never changes).
type Key struct {
	uid string
	dk  *keyring.DataKey
}

// KeyOf opens the data key of a record.
func (v *Vault) KeyOf(ctx context.Context, r store.Reader, teamID int64, uid string) (Key, error) {
	dk, err := v.dataKey(ctx, r, teamID, uid)
	if err != nil {
		return Key{}, err
	}
	return Key{uid: uid, dk: dk}, nil
}

// GetWithKey reads a record through r, ignoring folder grants, with its data key.
func (v *Vault) GetWithKey(ctx context.Context, r store.Reader, teamID int64, uid string) (Record, Key, error) {
	row, err := r.Record(ctx, teamID, uid)
	if err != nil {
		return Record{}, Key{}, notFound(err, uid)
	}
	rec, dk, err := v.openRecord(row)
	if err != nil {
		return Record{}, Key{}, err
	}
	return rec, Key{uid: uid, dk: dk}, nil
}

// PreparePending seals pw for the record's next version number, reading through r without
// writing. ApplyPending fails with a Conflict when another version was added in between;
// prepare again then.
func (v *Vault) PreparePending(ctx context.Context, r store.Reader, k Key, pw secret.Secret) (Pending, error) {
	latest, _, err := r.VersionNumbers(ctx, k.uid)
	if err != nil {
		return Pending{}, err
	}
	n := latest + 1
	return Pending{uid: k.uid, version: n, value: k.dk.Seal(pw.Bytes(), versionAAD(k.uid, n))}, nil
}

// ApplyPending stores a prepared pending version. It returns the version's number and the
// number of the version current at that moment (0 when none).
func (v *Vault) ApplyPending(ctx context.Context, tx *store.Tx, p Pending) (version, current int64, err error) {
	latest, current, err := tx.VersionNumbers(ctx, p.uid)
	if err != nil {
		return 0, 0, err
	}
	if latest+1 != p.version {
		return 0, 0, ErrStaleVersion.New("record %s got password version %d while version %d was being sealed", p.uid, latest, p.version)
	}
	now := v.now().UTC()
	err = tx.InsertPasswordVersion(ctx, store.PasswordVersion{
		RecordUID: p.uid, Version: p.version, State: StatePending, Value: p.value, CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		return 0, 0, err
	}
	return p.version, current, nil
}

// VersionValue returns the value and state of one password version.
func (v *Vault) VersionValue(ctx context.Context, r store.Reader, teamID int64, uid string, version int64) (secret.Secret, string, error) {
	dk, err := v.dataKey(ctx, r, teamID, uid)
	if err != nil {
		return secret.Secret{}, "", err
	}
	return openVersion(ctx, r, dk, uid, version)
}

// VersionValues returns the values of several password versions of a record (an empty secret
// for version 0).
func (v *Vault) VersionValues(ctx context.Context, r store.Reader, k Key, versions ...int64) ([]secret.Secret, error) {
	out := make([]secret.Secret, len(versions))
	for i, version := range versions {
		if version == 0 {
			continue
		}
		var err error
		if out[i], _, err = openVersion(ctx, r, k.dk, k.uid, version); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// openVersion reads and decrypts one password version with the record's data key.
func openVersion(ctx context.Context, r store.Reader, dk *keyring.DataKey, uid string, version int64) (secret.Secret, string, error) {
	pv, err := r.PasswordVersion(ctx, uid, version)
	if err != nil {
		return secret.Secret{}, "", fmt.Errorf("record %s: password version %d: %w", uid, version, err)
	}
	plain, err := dk.Open(pv.Value, versionAAD(uid, version))
	if err != nil {
		return secret.Secret{}, "", fmt.Errorf("record %s: password version %d: %w", uid, version, err)
	}
	defer clear(plain)
	return secret.New(plain), pv.State, nil
}

// CurrentVersion returns the number of the record's current password version (0 if none).
func (v *Vault) CurrentVersion(ctx context.Context, r store.Reader, uid string) (int64, error) {
	_, current, err := r.VersionNumbers(ctx, uid)
	return current, err
}

// SetVersionState changes one version's state (for example pending to failed).
func (v *Vault) SetVersionState(ctx context.Context, tx *store.Tx, uid string, version int64, state string) error {
	return tx.SetVersionState(ctx, uid, version, state, v.now().UTC())
}

// SetCurrent makes a version the record's current password: the version that was current
// becomes previous, the record's password field takes the value, the custom text fields named
// in custom take their values (added when missing, as an API key's key_id), and the record's
// revision increments. It does nothing when the version is current already.
func (v *Vault) SetCurrent(ctx context.Context, tx *store.Tx, teamID int64, uid string, version int64, custom map[string]string) error {
	p, err := v.PreparePromotion(ctx, tx.Reader, teamID, uid, version, custom)
	if err != nil {
		return err
	}
	return v.ApplyPromotion(ctx, tx, p)
}

// Promotion is a SetCurrent worked out ahead of its transaction: the decryption and sealing
// happen outside the single writer, which then only writes.
type Promotion struct {
	uid     string
	version int64
	done    bool         // the version is current already
	row     store.Record // the record re-sealed at the next revision
}

// PreparePromotion works out SetCurrent from r without writing. ApplyPromotion fails with a
// Conflict when the record changed in between; prepare again then.
func (v *Vault) PreparePromotion(ctx context.Context, r store.Reader, teamID int64, uid string, version int64, custom map[string]string) (Promotion, error) {
	row, err := r.Record(ctx, teamID, uid)
	if err != nil {
		return Promotion{}, notFound(err, uid)
	}
	rec, dk, err := v.openRecord(row)
	if err != nil {
		return Promotion{}, err
	}
	pv, err := r.PasswordVersion(ctx, uid, version)
	if err != nil {
		return Promotion{}, fmt.Errorf("record %s: password version %d: %w", uid, version, err)
	}
	if pv.State == StateCurrent {
		return Promotion{uid: uid, version: version, done: true}, nil
	}
	plain, err := dk.Open(pv.Value, versionAAD(uid, version))
	if err != nil {
		return Promotion{}, fmt.Errorf("record %s: password version %d: %w", uid, version, err)
	}
	value, err := json.Marshal(string(plain))
	clear(plain)
	if err != nil {
		return Promotion{}, err
	}
	if f := rec.field("password"); f != nil {
		if len(f.Value) == 0 {
			f.Value = []json.RawMessage{value}
		} else {
			f.Value[0] = value
		}
	} else {
		rec.Fields = append(rec.Fields, Field{Type: "password", Value: []json.RawMessage{value}})
	}
	for _, label := range slices.Sorted(maps.Keys(custom)) {
		val, _ := json.Marshal(custom[label])
		i := slices.IndexFunc(rec.Custom, func(f Field) bool { return f.Label == label })
		if i < 0 {
			rec.Custom = append(rec.Custom, Field{Type: "text", Label: label, Value: []json.RawMessage{val}})
		} else {
			rec.Custom[i].Value = []json.RawMessage{val}
		}
	}
	rec.Revision, rec.UpdatedAt = rec.Revision+1, v.now().UTC()
	newRow, err := v.sealRecord(dk, rec)
	if err != nil {
		return Promotion{}, err
	}
	newRow.TeamID = teamID
	return Promotion{uid: uid, version: version, row: newRow}, nil
}

// ApplyPromotion writes a prepared promotion; a record changed since it was prepared gives
// a Conflict error (and nothing is written).
func (v *Vault) ApplyPromotion(ctx context.Context, tx *store.Tx, p Promotion) error {
	if p.done {
		return nil
	}
	if err := tx.UpdateRecord(ctx, p.row); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return staleRevision(p.uid, p.row.Revision-1, -1)
		}
		return err
	}
	if err := tx.MakeCurrent(ctx, p.uid, p.version, p.row.UpdatedAt); err != nil {
		return err
	}
	if p.version <= int64(v.history) || p.version%4 != 0 {
		return nil // history is pruned every few versions: it keeps at least v.history
	}
	return tx.PrunePasswordVersions(ctx, p.uid, v.history, StatePrevious, StateFailed)
}

// GetIn reads a record through r (a transaction or the database), ignoring folder grants.
func (v *Vault) GetIn(ctx context.Context, r store.Reader, teamID int64, uid string) (Record, error) {
	rec, _, err := v.GetWithKey(ctx, r, teamID, uid)
	return rec, err
}

// Seal encrypts data bound to a record and a purpose (such as a script or a run's log) under
// the record's data key.
func (v *Vault) Seal(ctx context.Context, r store.Reader, teamID int64, uid, purpose string, data []byte) ([]byte, error) {
	dk, err := v.dataKey(ctx, r, teamID, uid)
	if err != nil {
		return nil, err
	}
	return dk.Seal(data, []byte("keyturn/"+purpose+"/"+uid)), nil
}

// Open decrypts what Seal sealed for the same record and purpose.
func (v *Vault) Open(ctx context.Context, r store.Reader, teamID int64, uid, purpose string, sealed []byte) ([]byte, error) {
	dk, err := v.dataKey(ctx, r, teamID, uid)
	if err != nil {
		return nil, err
	}
	plain, err := dk.Open(sealed, []byte("keyturn/"+purpose+"/"+uid))
	if err != nil {
		return nil, fmt.Errorf("record %s: %s: %w", uid, purpose, err)
	}
	return plain, nil
}

func (v *Vault) dataKey(ctx context.Context, r store.Reader, teamID int64, uid string) (*keyring.DataKey, error) {
	row, err := r.Record(ctx, teamID, uid)
	if err != nil {
		return nil, notFound(err, uid)
	}
	dk, err := v.keys.OpenDataKey(row.DataKey, keyAAD(uid))
	if err != nil {
		return nil, fmt.Errorf("record %s: data key: %w", uid, err)
	}
	return dk, nil
}

// PasswordChange is what SetPasswordIf did.
type PasswordChange int

// What SetPasswordIf did.
const (
	PasswordKept      PasswordChange = iota // the record held another password: nothing changed
	PasswordSet                             // the record held the expected password and now holds the new one
	PasswordUnchanged                       // the record held the new password already: nothing changed
)

// SetPasswordIf sets a record's password field to pw, in the caller's transaction, when the
// field still holds expected (zero: the record has no password): pw becomes the record's
// current password version, the version that was current becomes previous, and the revision
// increments. When the field holds anything else it changes nothing. The rotation engine uses
// it to keep a resource's admin password in step with a self-rotation.
func (v *Vault) SetPasswordIf(ctx context.Context, tx *store.Tx, teamID int64, uid string, expected, pw secret.Secret) (PasswordChange, error) {
	row, err := tx.Record(ctx, teamID, uid)
	if err != nil {
		return PasswordKept, notFound(err, uid)
	}
	rec, dk, err := v.openRecord(row)
	if err != nil {
		return PasswordKept, err
	}
	switch have, _ := rec.Password(); have {
	case pw.Reveal():
		return PasswordUnchanged, nil
	case expected.Reveal():
	default:
		return PasswordKept, nil
	}
	value, err := json.Marshal(pw.Reveal())
	if err != nil {
		return PasswordKept, err
	}
	if f := rec.field("password"); f != nil {
		if len(f.Value) == 0 {
			f.Value = []json.RawMessage{value}
		} else {
			f.Value[0] = value
		}
	} else {
		rec.Fields = append(rec.Fields, Field{Type: "password", Value: []json.RawMessage{value}})
	}
	now := v.now().UTC()
	rec.Revision, rec.UpdatedAt = rec.Revision+1, now
	newRow, err := v.sealRecord(dk, rec)
	clear(value)
	if err != nil {
		return PasswordKept, err
	}
	newRow.TeamID = teamID
	if err := tx.UpdateRecord(ctx, newRow); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return PasswordKept, staleRevision(uid, row.Revision, -1)
		}
		return PasswordKept, err
	}
	if err := tx.SetPasswordVersionState(ctx, uid, StateCurrent, StatePrevious, now); err != nil {
		return PasswordKept, err
	}
	if err := v.addVersion(ctx, tx, dk, uid, StateCurrent, pw.Reveal(), now); err != nil {
		return PasswordKept, err
	}
	return PasswordSet, tx.PrunePasswordVersions(ctx, uid, v.history, StatePrevious, StateFailed)
}
