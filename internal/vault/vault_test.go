package vault_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/keyring"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
	"github.com/keyturn/keyturn/internal/vault"
)

type fixture struct {
	v     *vault.Vault
	db    *store.DB
	raw   *sql.DB // a second connection for tampering with the stored bytes
	scope vault.Scope
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	db, path := testdb.Open(t)
	keys, team := testdb.Keys(t), testdb.Team(t, db, "acme")
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return &fixture{v: vault.New(db, keys, nil), db: db, raw: raw, scope: vault.Scope{TeamID: team.ID}}
}

func str(s string) json.RawMessage { b, _ := json.Marshal(s); return b }

func login(title, password string) vault.Record {
	return vault.Record{Type: "login", Title: title, Fields: []vault.Field{
		{Type: "login", Value: []json.RawMessage{str(title + "@example.com")}},
		{Type: "password", Value: []json.RawMessage{str(password)}},
	}}
}

func (f *fixture) create(t *testing.T, rec vault.Record) vault.Record {
	t.Helper()
	out, err := f.v.Create(context.Background(), f.scope, rec)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fixture) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	res, err := f.raw.Exec(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%s: %d rows", q, n)
	}
}

// assertUnreadable checks that reading the record fails with an error (never garbage).
func assertUnreadable(t *testing.T, f *fixture, uid string) {
	t.Helper()
	rec, err := f.v.Get(context.Background(), f.scope, uid)
	if err == nil {
		t.Fatalf("tampered record %s read back as %+v", uid, rec)
	}
	if !errors.Is(err, keyring.ErrDecrypt) {
		t.Fatalf("tampered record %s: error %v does not say it failed to authenticate", uid, err)
	}
}

func TestCiphertextCopiedToAnotherRecordFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := f.create(t, login("alpha", "alpha-password"))
	b := f.create(t, login("beta", "beta-password"))

	// The sealed data of a moved into b: b's data key cannot open it.
	f.exec(t, `UPDATE records SET data = (SELECT data FROM records WHERE uid = $1) WHERE uid = $2`, a.UID, b.UID)
	assertUnreadable(t, f, b.UID)

	// Data key and data both moved: the data key is bound to a's uid.
	c := f.create(t, login("gamma", "gamma-password"))
	f.exec(t, `UPDATE records SET data_key = (SELECT data_key FROM records WHERE uid = $1),
		data = (SELECT data FROM records WHERE uid = $1) WHERE uid = $2`, a.UID, c.UID)
	assertUnreadable(t, f, c.UID)

	// A password version moved from a to d.
	d := f.create(t, login("delta", "delta-password"))
	f.exec(t, `UPDATE password_versions SET value = (SELECT value FROM password_versions WHERE record_uid = $1)
		WHERE record_uid = $2`, a.UID, d.UID)
	if _, err := f.v.Versions(context.Background(), f.scope, d.UID); !errors.Is(err, keyring.ErrDecrypt) {
		t.Fatalf("moved password version: %v", err)
	}

	// An old revision's ciphertext replayed under the current revision number.
	e := f.create(t, login("epsilon", "v1"))
	var old []byte
	if err := f.raw.QueryRow(`SELECT data FROM records WHERE uid = $1`, e.UID).Scan(&old); err != nil {
		t.Fatal(err)
	}
	e.Fields[1].Value = []json.RawMessage{str("v2")}
	if _, err := f.v.Update(context.Background(), f.scope, e); err != nil {
		t.Fatal(err)
	}
	f.exec(t, `UPDATE records SET data = $1 WHERE uid = $2`, old, e.UID)
	assertUnreadable(t, f, e.UID)

	// The untouched record still reads.
	if _, err := f.v.Get(context.Background(), f.scope, a.UID); err != nil {
		t.Fatal(err)
	}
}

func TestFlippedBitFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rec := f.create(t, login("alpha", "alpha-password"))
	var data, dataKey []byte
	if err := f.raw.QueryRow(`SELECT data, data_key FROM records WHERE uid = $1`, rec.UID).Scan(&data, &dataKey); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		column string
		orig   []byte
	}{{"data", data}, {"data_key", dataKey}} {
		for _, pos := range []int{0, 1, 5, len(tc.orig) / 2, len(tc.orig) - 1} {
			for _, bit := range []byte{0x01, 0x80} {
				flipped := append([]byte(nil), tc.orig...)
				flipped[pos] ^= bit
				f.exec(t, fmt.Sprintf(`UPDATE records SET %s = $1 WHERE uid = $2`, tc.column), flipped, rec.UID)
				if _, err := f.v.Get(context.Background(), f.scope, rec.UID); err == nil {
					t.Fatalf("%s with bit %#x of byte %d flipped still reads", tc.column, bit, pos)
				}
			}
		}
		f.exec(t, fmt.Sprintf(`UPDATE records SET %s = $1 WHERE uid = $2`, tc.column), tc.orig, rec.UID)
	}
	got, err := f.v.Get(context.Background(), f.scope, rec.UID)
	if err != nil {
		t.Fatal(err)
	}
	if pw, _ := got.Password(); pw != "alpha-password" {
		t.Fatalf("restored record reads %q", pw)
	}
}

func TestStaleRevisionChangesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	rec := f.create(t, login("alpha", "one"))
	next := rec
	next.Fields = []vault.Field{rec.Fields[0], {Type: "password", Value: []json.RawMessage{str("two")}}}
	updated, err := f.v.Update(ctx, f.scope, next)
	if err != nil {
		t.Fatal(err)
	}
	if updated.Revision != 2 {
		t.Fatalf("revision %d", updated.Revision)
	}
	stale := rec // still at revision 1
	stale.Title = "changed"
	stale.Fields = []vault.Field{rec.Fields[0], {Type: "password", Value: []json.RawMessage{str("three")}}}
	_, err = f.v.Update(ctx, f.scope, stale)
	if fe, ok := fault.As(err); !errors.Is(err, vault.ErrStaleRevision) || !ok || fe.Kind != fault.Conflict || fe.Code != "stale_revision" {
		t.Fatalf("stale update: %v, want vault.ErrStaleRevision, a 409 stale_revision", err)
	}
	got, err := f.v.Get(ctx, f.scope, rec.UID)
	if err != nil {
		t.Fatal(err)
	}
	if pw, _ := got.Password(); got.Revision != 2 || got.Title != "alpha" || pw != "two" {
		t.Fatalf("after a stale update: revision %d title %q password %q", got.Revision, got.Title, pw)
	}
	versions, err := f.v.Versions(ctx, f.scope, rec.UID)
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 2 || versions[0].Value.Reveal() != "two" || versions[0].State != vault.StateCurrent ||
		versions[1].Value.Reveal() != "one" || versions[1].State != vault.StatePrevious {
		t.Fatalf("versions after a stale update: %+v", versions)
	}
}

func TestPasswordHistory(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	rec := f.create(t, login("alpha", "pw-0"))
	for i := 1; i <= 15; i++ {
		rec.Fields[1].Value = []json.RawMessage{str(fmt.Sprintf("pw-%d", i))}
		var err error
		if rec, err = f.v.Update(ctx, f.scope, rec); err != nil {
			t.Fatal(err)
		}
	}
	// An update that leaves the password alone makes no version.
	rec.Notes = "just notes"
	if _, err := f.v.Update(ctx, f.scope, rec); err != nil {
		t.Fatal(err)
	}
	versions, err := f.v.Versions(ctx, f.scope, rec.UID)
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 1+vault.DefaultHistory {
		t.Fatalf("%d versions kept, want %d", len(versions), 1+vault.DefaultHistory)
	}
	for i, v := range versions {
		want := fmt.Sprintf("pw-%d", 15-i)
		state := vault.StatePrevious
		if i == 0 {
			state = vault.StateCurrent
		}
		if v.Value.Reveal() != want || v.State != state {
			t.Fatalf("version %d: %q %s, want %q %s", i, v.Value.Reveal(), v.State, want, state)
		}
	}
}

func TestFolderScope(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	inApps := login("in apps", "a")
	inApps.Folder = "Apps/Payments"
	inApps = f.create(t, inApps)
	other := login("elsewhere", "b")
	other.Folder = "Infra"
	other = f.create(t, other)

	apps := vault.Scope{TeamID: f.scope.TeamID, Folders: []string{"Apps"}}
	if _, err := f.v.Get(ctx, apps, inApps.UID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Get(ctx, apps, other.UID); fault.KindOf(err) != fault.NotFound {
		t.Fatalf("record outside the grant: %v", err)
	}
	if _, _, err := f.v.Resolve(ctx, apps, "keeper://elsewhere/field/password"); fault.KindOf(err) != fault.NotFound {
		t.Fatalf("notation outside the grant: %v", err)
	}
	list, _, err := f.v.List(ctx, apps, vault.ListOptions{})
	if err != nil || len(list) != 1 || list[0].UID != inApps.UID {
		t.Fatalf("list within grant: %+v %v", list, err)
	}
	if _, err := f.v.Get(ctx, vault.Scope{TeamID: f.scope.TeamID + 1}, inApps.UID); fault.KindOf(err) != fault.NotFound {
		t.Fatalf("record of another team: %v", err)
	}
}

func TestResolveByUIDAndTitle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	rec := f.create(t, login("Okta API Access Details", "ssws-token"))
	for _, ref := range []string{
		"keeper://" + rec.UID + "/field/password",
		"keeper://Okta API Access Details/field/password",
	} {
		val, _, err := f.v.Resolve(ctx, f.scope, ref)
		if err != nil || string(val) != `"ssws-token"` {
			t.Fatalf("%s: %s %v", ref, val, err)
		}
	}
	f.create(t, login("Okta API Access Details", "other"))
	_, _, err := f.v.Resolve(ctx, f.scope, "keeper://Okta API Access Details/field/password")
	if fe, ok := fault.As(err); !ok || fe.Code != "ambiguous_title" {
		t.Fatalf("ambiguous title: %v", err)
	}
	if _, _, err := f.v.Resolve(ctx, f.scope, "keeper://nothing/field/password"); fault.KindOf(err) != fault.NotFound {
		t.Fatalf("unknown record: %v", err)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for name, tc := range map[string]struct {
		rec  vault.Record
		code string
	}{
		"unknown type":     {vault.Record{Type: "bogus", Title: "x"}, "unknown_record_type"},
		"no title":         {vault.Record{Type: "login"}, "invalid_request"},
		"pamUser no login": {vault.Record{Type: "pamUser", Title: "x"}, "missing_required_field"},
		"bad folder":       {vault.Record{Type: "login", Title: "x", Folder: "a//b"}, "invalid_request"},
		"dotdot folder":    {vault.Record{Type: "login", Title: "x", Folder: "a/.."}, "invalid_request"},
		"field no type":    {vault.Record{Type: "login", Title: "x", Fields: []vault.Field{{}}}, "invalid_request"},
		"password number":  {vault.Record{Type: "login", Title: "x", Fields: []vault.Field{{Type: "password", Value: []json.RawMessage{json.RawMessage(`1`)}}}}, "invalid_request"},
		"control in title": {vault.Record{Type: "login", Title: "a\x00b"}, "invalid_request"},
	} {
		_, err := f.v.Create(context.Background(), f.scope, tc.rec)
		fe, ok := fault.As(err)
		if !ok || fe.Kind != fault.Invalid || fe.Code != tc.code {
			t.Errorf("%s: %v", name, err)
		}
	}
	list, _, err := f.v.List(context.Background(), f.scope, vault.ListOptions{})
	if err != nil || len(list) != 0 {
		t.Fatalf("invalid records were stored: %+v %v", list, err)
	}
}

func TestNewUIDNeverStartsWithADash(t *testing.T) {
	t.Parallel()
	for range 5000 {
		uid := vault.NewUID()
		if len(uid) != 22 || uid[0] == '-' {
			t.Fatalf("uid %q", uid)
		}
	}
}

// A pending version sealed outside the writer lands with the number it was sealed for, and
// names the version current at that moment; if a password is set by hand in between, it is
// refused (stale_version) and nothing is written.
func TestPreparedPendingVersion(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	rec := f.create(t, login("alpha", "pw-1"))
	apply := func(p vault.Pending) (version, current int64, err error) {
		err = f.db.Tx(ctx, func(tx *store.Tx) error {
			version, current, err = f.v.ApplyPending(ctx, tx, p)
			return err
		})
		return version, current, err
	}
	k, err := f.v.KeyOf(ctx, f.db.Reader, f.scope.TeamID, rec.UID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.v.PreparePending(ctx, f.db.Reader, k, secret.New([]byte("candidate-1")))
	if err != nil {
		t.Fatal(err)
	}
	if n, cur, err := apply(p); err != nil || n != 2 || cur != 1 {
		t.Fatalf("ApplyPending = %d, %d, %v; want version 2, current 1", n, cur, err)
	}

	stale, err := f.v.PreparePending(ctx, f.db.Reader, k, secret.New([]byte("candidate-2")))
	if err != nil {
		t.Fatal(err)
	}
	rec.Fields[1].Value = []json.RawMessage{str("set-by-hand")}
	if _, err := f.v.Update(ctx, f.scope, rec); err != nil {
		t.Fatal(err)
	}
	if _, _, err := apply(stale); func() bool {
		fe, ok := fault.As(err)
		return !errors.Is(err, vault.ErrStaleVersion) || !ok || fe.Kind != fault.Conflict || fe.Code != "stale_version"
	}() {
		t.Fatalf("a version sealed for a number taken since: %v, want a stale_version conflict", err)
	}
	versions, err := f.v.Versions(ctx, f.scope, rec.UID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range versions {
		got = append(got, fmt.Sprintf("%d:%s:%s", v.Version, v.State, v.Value.Reveal()))
	}
	if want := "3:current:set-by-hand 2:pending:candidate-1 1:previous:pw-1"; strings.Join(got, " ") != want {
		t.Fatalf("versions %s, want %s", strings.Join(got, " "), want)
	}
}

// SetPasswordIf changes a record's password only while it holds the expected one: then the new
// password is current (the old one previous) and the revision increments; a record holding
// another password, or the new one already, is left as it is.
func TestSetPasswordIf(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	rec := f.create(t, login("admin", "pw-1"))
	set := func(expected, pw string) vault.PasswordChange {
		t.Helper()
		var did vault.PasswordChange
		if err := f.db.Tx(ctx, func(tx *store.Tx) (err error) {
			did, err = f.v.SetPasswordIf(ctx, tx, f.scope.TeamID, rec.UID, secret.FromString(expected), secret.FromString(pw))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return did
	}
	state := func() (pw string, revision int64, versions map[string]string) {
		t.Helper()
		got, err := f.v.Get(ctx, f.scope, rec.UID)
		if err != nil {
			t.Fatal(err)
		}
		vs, err := f.v.Versions(ctx, f.scope, rec.UID)
		if err != nil {
			t.Fatal(err)
		}
		versions = map[string]string{}
		for _, v := range vs {
			versions[v.Value.Reveal()] = v.State
		}
		pw, _ = got.Password()
		return pw, got.Revision, versions
	}
	if did := set("someone-else", "pw-2"); did != vault.PasswordKept {
		t.Fatalf("another expected password: %v, want kept", did)
	}
	if pw, rev, _ := state(); pw != "pw-1" || rev != 1 {
		t.Fatalf("after a refused change: password changed %v, revision %d", pw != "pw-1", rev)
	}
	if did := set("pw-1", "pw-2"); did != vault.PasswordSet {
		t.Fatalf("the expected password: %v, want set", did)
	}
	pw, rev, versions := state()
	if pw != "pw-2" || rev != 2 || versions["pw-2"] != vault.StateCurrent || versions["pw-1"] != vault.StatePrevious {
		t.Fatalf("after the change: new password %v, revision %d, versions %v", pw == "pw-2", rev, len(versions))
	}
	if did := set("pw-1", "pw-2"); did != vault.PasswordUnchanged {
		t.Fatalf("setting it again: %v, want unchanged", did)
	}
	if _, rev, _ := state(); rev != 2 {
		t.Fatalf("setting it again changed the revision to %d", rev)
	}
}
