package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testRecord(teamID int64, uid, typ, title, folder string) Record {
	return Record{UID: uid, TeamID: teamID, Type: typ, Title: title, Folder: folder, Revision: 1,
		DataKey: []byte("dk-" + uid), Data: []byte("data-" + uid), CreatedAt: t0, UpdatedAt: t0}
}

func mustInsert(t testing.TB, db *DB, recs ...Record) {
	t.Helper()
	mustTx(t, db, func(tx *Tx) error {
		for _, r := range recs {
			if err := tx.InsertRecord(context.Background(), r); err != nil {
				return err
			}
		}
		return nil
	})
}

func uids(recs []Record) string {
	s := make([]string, len(recs))
	for i, r := range recs {
		s[i] = r.UID
	}
	return strings.Join(s, " ")
}

func testRecordRoundTrip(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	want := testRecord(team.ID, "uid-1", "login", "Okta Admin", "Shared/Okta")
	want.UpdatedAt = t0.Add(time.Hour)
	mustInsert(t, db, want)

	got, err := db.Record(ctx, team.ID, "uid-1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Record\n got %+v\nwant %+v", got, want)
	}
	if _, err := db.Record(ctx, team.ID+1, "uid-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Record of another team = %v, want ErrNotFound", err)
	}
	byTitle, err := db.RecordsByTitle(ctx, team.ID, "Okta Admin", nil, 10)
	if err != nil || len(byTitle) != 1 || !reflect.DeepEqual(byTitle[0], want) {
		t.Fatalf("RecordsByTitle = %+v, %v", byTitle, err)
	}
	for within, n := range map[string]int{"Shared": 1, "Shared/Okta": 1, "Apps": 0, "Shared/Ok": 0} {
		if got, err := db.RecordsByTitle(ctx, team.ID, "Okta Admin", []string{within}, 10); err != nil || len(got) != n {
			t.Fatalf("RecordsByTitle within %s = %d records, %v; want %d", within, len(got), err, n)
		}
	}
	// Metadata listing carries no sealed data.
	list, err := db.ListRecords(ctx, RecordFilter{TeamID: team.ID, Limit: 10})
	if err != nil || len(list) != 1 {
		t.Fatalf("ListRecords = %+v, %v", list, err)
	}
	if list[0].Data != nil || list[0].DataKey != nil || list[0].Title != want.Title || !list[0].UpdatedAt.Equal(want.UpdatedAt) {
		t.Fatalf("ListRecords row %+v", list[0])
	}
}

func testConflicts(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")

	err := db.Tx(ctx, func(tx *Tx) error {
		_, err := tx.CreateTeam(ctx, "acme", t0)
		return err
	})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "acme") {
		t.Fatalf("CreateTeam twice = %v, want ErrConflict naming the team", err)
	}

	mustInsert(t, db, testRecord(team.ID, "dup", "login", "x", ""))
	err = db.Tx(ctx, func(tx *Tx) error { return tx.InsertRecord(ctx, testRecord(team.ID, "dup", "login", "y", "")) })
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("InsertRecord twice = %v, want ErrConflict", err)
	}
	if rec, _ := db.Record(ctx, team.ID, "dup"); rec.Title != "x" {
		t.Fatalf("the conflicting insert changed the record: %+v", rec)
	}

	user := ServiceUser{ID: "u1", TeamID: team.ID, Name: "admin", Status: "active", CreatedAt: t0}
	mustTx(t, db, func(tx *Tx) error { return tx.CreateServiceUser(ctx, user) })
	user.ID = "u2"
	err = db.Tx(ctx, func(tx *Tx) error { return tx.CreateServiceUser(ctx, user) })
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("same user name twice in a team = %v, want ErrConflict", err)
	}

	mustTx(t, db, func(tx *Tx) error { return tx.SaveKeyring(ctx, 1, []byte(`{"term":1}`), t0) })
	err = db.Tx(ctx, func(tx *Tx) error { return tx.SaveKeyring(ctx, 1, []byte(`{"term":1,"x":1}`), t0) })
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("keyring term twice = %v, want ErrConflict", err)
	}

	// Other constraint failures are not conflicts.
	err = db.Tx(ctx, func(tx *Tx) error {
		return tx.CreateServiceUser(ctx, ServiceUser{ID: "u3", TeamID: 999, Name: "ghost", Status: "active", CreatedAt: t0})
	})
	if err == nil || errors.Is(err, ErrConflict) {
		t.Fatalf("service user of a missing team = %v, want a non-conflict error (foreign key)", err)
	}

	// A conflict inside a fn that carries on only undoes the failed statement.
	err = db.Tx(ctx, func(tx *Tx) error {
		if _, err := tx.CreateTeam(ctx, "acme", t0); !errors.Is(err, ErrConflict) {
			return fmt.Errorf("want ErrConflict, got %v", err)
		}
		_, err := tx.CreateTeam(ctx, "other", t0)
		return err
	})
	if err != nil || !teamExists(t, db, "other") {
		t.Fatalf("Tx carrying on after a conflict = %v", err)
	}
}

func testKeyring(t *testing.T, db *DB) {
	ctx := context.Background()
	if _, err := db.LatestKeyring(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LatestKeyring of an empty db = %v, want ErrNotFound", err)
	}
	mustTx(t, db, func(tx *Tx) error {
		if err := tx.SaveKeyring(ctx, 2, []byte(`{"term":2}`), t0); err != nil {
			return err
		}
		return tx.SaveKeyring(ctx, 1, []byte(`{"term":1}`), t0)
	})
	got, err := db.LatestKeyring(ctx)
	if err != nil || string(got) != `{"term":2}` {
		t.Fatalf("LatestKeyring = %s, %v; want the newest term", got, err)
	}
}

func testUpdateRecord(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	mustInsert(t, db, testRecord(team.ID, "r1", "login", "v1", "A"))

	update := func(rec Record) error { return db.Tx(ctx, func(tx *Tx) error { return tx.UpdateRecord(ctx, rec) }) }

	next := testRecord(team.ID, "r1", "pamUser", "v2", "B")
	next.Revision, next.Data, next.UpdatedAt = 2, []byte("data-2"), t0.Add(time.Minute)
	if err := update(next); err != nil {
		t.Fatalf("UpdateRecord at the right revision: %v", err)
	}
	got, err := db.Record(ctx, team.ID, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != 2 || got.Title != "v2" || got.Type != "pamUser" || got.Folder != "B" ||
		!bytes.Equal(got.Data, []byte("data-2")) || !got.UpdatedAt.Equal(next.UpdatedAt) || !got.CreatedAt.Equal(t0) {
		t.Fatalf("after update: %+v", got)
	}

	stale := next
	stale.Title, stale.Data = "stale", []byte("stale") // Revision 2 again: expects stored revision 1
	if err := update(stale); !errors.Is(err, ErrConflict) {
		t.Fatalf("UpdateRecord with a stale revision = %v, want ErrConflict", err)
	}
	ahead := next
	ahead.Revision, ahead.Title = 5, "ahead"
	if err := update(ahead); !errors.Is(err, ErrConflict) {
		t.Fatalf("UpdateRecord skipping revisions = %v, want ErrConflict", err)
	}
	if after, _ := db.Record(ctx, team.ID, "r1"); !reflect.DeepEqual(after, got) {
		t.Fatalf("a refused update changed the record:\n got %+v\nwant %+v", after, got)
	}

	missing := testRecord(team.ID, "nope", "login", "x", "")
	missing.Revision = 2
	if err := update(missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateRecord of a missing uid = %v, want ErrNotFound", err)
	}
	otherTeam := next
	otherTeam.TeamID, otherTeam.Revision = team.ID+1, 3
	if err := update(otherTeam); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateRecord through another team = %v, want ErrNotFound", err)
	}

	if err := db.Tx(ctx, func(tx *Tx) error { return tx.DeleteRecord(ctx, team.ID+1, "r1") }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteRecord through another team = %v, want ErrNotFound", err)
	}
	if err := db.Tx(ctx, func(tx *Tx) error { return tx.DeleteRecord(ctx, team.ID, "r1") }); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Record(ctx, team.ID, "r1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Record after delete = %v", err)
	}
	if err := db.Tx(ctx, func(tx *Tx) error { return tx.DeleteRecord(ctx, team.ID, "r1") }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteRecord twice = %v, want ErrNotFound", err)
	}
}

func testListRecordsFilters(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	other := mustTeam(t, db, "other")
	mustInsert(t, db,
		testRecord(team.ID, "u01", "login", "Okta Admin", "Shared"),
		testRecord(team.ID, "u02", "pamUser", "okta svc", "Shared/Okta"),
		testRecord(team.ID, "u03", "pamUser", "DB root", "Shared/DB/Prod"),
		testRecord(team.ID, "u04", "login", "SharedX thing", "SharedX"),
		testRecord(team.ID, "u05", "general", "100% done", "Misc"),
		testRecord(team.ID, "u06", "general", "1000 done", "Misc"),
		testRecord(team.ID, "u07", "general", "a_b", "Misc/Sub"),
		testRecord(team.ID, "u08", "general", "axb", "Misc"),
		testRecord(team.ID, "u09", "login", "zeta", ""),
		testRecord(team.ID, "u10", "login", "pct folder", "P%"),
		testRecord(team.ID, "u11", "login", "px folder", "Px/Sub"),
		testRecord(team.ID, "u12", "login", "same", "Misc"),
		testRecord(team.ID, "u00", "login", "same", "Misc"),
		testRecord(team.ID, "u13", "login", "ÜBER Admin", "Uni"),
		testRecord(team.ID, "u14", "login", "über lower", "Uni"),
		testRecord(other.ID, "o01", "login", "Okta Admin", "Shared"),
	)

	all := "u09 u05 u06 u08 u00 u12 u07 u10 u11 u01 u03 u02 u04 u13 u14" // folder, title, uid
	cases := []struct {
		name string
		f    RecordFilter
		want string
	}{
		{"all", RecordFilter{}, all},
		{"type", RecordFilter{Type: "pamUser"}, "u03 u02"},
		{"folder and below", RecordFilter{Folder: "Shared"}, "u01 u03 u02"},
		{"subfolder", RecordFilter{Folder: "Shared/DB"}, "u03"},
		{"prefix is not a folder", RecordFilter{Folder: "Shar"}, ""},
		{"folder with %", RecordFilter{Folder: "P%"}, "u10"},
		{"folder P", RecordFilter{Folder: "P"}, ""},
		{"title case-insensitive", RecordFilter{Title: "OKTA"}, "u01 u02"},
		{"title non-ASCII exact case", RecordFilter{Title: "ÜBER"}, "u13 u14"},
		{"title non-ASCII mixed case", RecordFilter{Title: "Über ADMIN"}, "u13"},
		{"title non-ASCII lower", RecordFilter{Title: "ÜBER LOWER"}, "u14"},
		{"title % literal", RecordFilter{Title: "%"}, "u05"},
		{"title 0% literal", RecordFilter{Title: "0% "}, "u05"},
		{"title _ literal", RecordFilter{Title: "_"}, "u07"},
		{"title backslash", RecordFilter{Title: `\`}, ""},
		{"within one", RecordFilter{Within: []string{"Shared"}}, "u01 u03 u02"},
		{"within many", RecordFilter{Within: []string{"Shared/Okta", "Misc"}}, "u05 u06 u08 u00 u12 u07 u02"},
		{"within %", RecordFilter{Within: []string{"P%"}}, "u10"},
		{"within and folder", RecordFilter{Within: []string{"Shared/Okta", "Misc"}, Folder: "Shared"}, "u02"},
		{"type folder title", RecordFilter{Type: "general", Folder: "Misc", Title: "DONE"}, "u05 u06"},
		{"type within title", RecordFilter{Type: "login", Within: []string{"Shared", "SharedX"}, Title: "t"}, "u01 u04"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := c.f
			f.TeamID, f.Limit = team.ID, 100
			got, err := db.ListRecords(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if uids(got) != c.want {
				t.Fatalf("ListRecords(%+v) = %q, want %q", c.f, uids(got), c.want)
			}
		})
	}

	t.Run("paging", func(t *testing.T) {
		for _, size := range []int{1, 3, 5, 13, 20} {
			var pages []Record
			for offset := 0; ; offset += size {
				page, err := db.ListRecords(ctx, RecordFilter{TeamID: team.ID, Limit: size, Offset: offset})
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > size {
					t.Fatalf("page of %d rows with Limit %d", len(page), size)
				}
				pages = append(pages, page...)
				if len(page) < size {
					break
				}
			}
			if uids(pages) != all {
				t.Fatalf("pages of %d = %q, want %q", size, uids(pages), all)
			}
		}
		page, err := db.ListRecords(ctx, RecordFilter{TeamID: team.ID, Folder: "Misc", Limit: 2, Offset: 1})
		if err != nil || uids(page) != "u06 u08" {
			t.Fatalf("filtered page = %q, %v", uids(page), err)
		}
	})

	t.Run("other team", func(t *testing.T) {
		got, err := db.ListRecords(ctx, RecordFilter{TeamID: other.ID, Limit: 100})
		if err != nil || uids(got) != "o01" {
			t.Fatalf("other team's list = %q, %v", uids(got), err)
		}
	})
}

func testPasswordVersions(t *testing.T, db *DB) {
	ctx := context.Background()
	team := mustTeam(t, db, "acme")
	mustInsert(t, db, testRecord(team.ID, "r1", "pamUser", "a", ""), testRecord(team.ID, "r2", "pamUser", "b", ""))

	current := int64(0) // what VersionNumbers must say is current
	next := func(uid string) int64 {
		t.Helper()
		var latest, cur int64
		mustTx(t, db, func(tx *Tx) error {
			var err error
			latest, cur, err = tx.VersionNumbers(ctx, uid)
			return err
		})
		if uid == "r1" && cur != current {
			t.Fatalf("VersionNumbers: current %d, want %d", cur, current)
		}
		return latest + 1
	}
	insert := func(uid string, v int64, state string) {
		t.Helper()
		mustTx(t, db, func(tx *Tx) error {
			return tx.InsertPasswordVersion(ctx, PasswordVersion{RecordUID: uid, Version: v, State: state,
				Value: []byte(fmt.Sprintf("%s-%d", uid, v)), CreatedAt: t0, UpdatedAt: t0})
		})
	}
	states := func(uid string) string {
		t.Helper()
		vs, err := db.PasswordVersions(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, v := range vs {
			if string(v.Value) != fmt.Sprintf("%s-%d", uid, v.Version) || v.RecordUID != uid || !v.CreatedAt.Equal(t0) {
				t.Fatalf("version read back wrong: %+v", v)
			}
			s = append(s, fmt.Sprintf("%d:%s", v.Version, v.State))
		}
		return strings.Join(s, " ")
	}

	for want := int64(1); want <= 3; want++ {
		if n := next("r1"); n != want {
			t.Fatalf("the next version = %d, want %d", n, want)
		}
		insert("r1", want, "previous")
	}
	if n := next("r2"); n != 1 {
		t.Fatalf("the next version of another record = %d, want 1", n)
	}
	err := db.Tx(ctx, func(tx *Tx) error {
		return tx.InsertPasswordVersion(ctx, PasswordVersion{RecordUID: "r1", Version: 3, State: "current", Value: []byte("x")})
	})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("the same version twice = %v, want ErrConflict", err)
	}
	for v := int64(4); v <= 10; v++ {
		insert("r1", v, "previous")
	}
	insert("r1", 11, "failed")
	insert("r1", 12, "current")
	insert("r1", 13, "failed")
	insert("r1", 14, "pending")
	current = 12
	for v := int64(1); v <= 4; v++ {
		insert("r2", v, "previous")
	}
	if n := next("r1"); n != 15 {
		t.Fatalf("the next version = %d, want 15", n)
	}

	mustTx(t, db, func(tx *Tx) error { return tx.PrunePasswordVersions(ctx, "r1", 3, "previous", "failed") })
	if got, want := states("r1"), "14:pending 13:failed 12:current 11:failed 10:previous"; got != want {
		t.Fatalf("after prune(3, previous, failed): %s, want %s", got, want)
	}
	if got, want := states("r2"), "4:previous 3:previous 2:previous 1:previous"; got != want {
		t.Fatalf("prune of r1 touched r2: %s", got)
	}
	mustTx(t, db, func(tx *Tx) error { return tx.PrunePasswordVersions(ctx, "r1", 0) })
	if got, want := states("r1"), "14:pending 13:failed 12:current 11:failed 10:previous"; got != want {
		t.Fatalf("prune without states changed %s", got)
	}
	mustTx(t, db, func(tx *Tx) error { return tx.PrunePasswordVersions(ctx, "r1", 0, "failed") })
	if got, want := states("r1"), "14:pending 12:current 10:previous"; got != want {
		t.Fatalf("after prune(0, failed): %s, want %s", got, want)
	}
	mustTx(t, db, func(tx *Tx) error { return tx.PrunePasswordVersions(ctx, "r1", 10, "previous") })
	if got, want := states("r1"), "14:pending 12:current 10:previous"; got != want {
		t.Fatalf("prune keeping more than exist: %s, want %s", got, want)
	}
	if n := next("r1"); n != 15 {
		t.Fatalf("the next version after prune = %d, want 15", n)
	}

	mustTx(t, db, func(tx *Tx) error {
		if err := tx.SetPasswordVersionState(ctx, "r1", "current", "previous", t0.Add(time.Hour)); err != nil {
			return err
		}
		return tx.SetPasswordVersionState(ctx, "r1", "pending", "current", t0.Add(time.Hour))
	})
	if got, want := states("r1"), "14:current 12:previous 10:previous"; got != want {
		t.Fatalf("after state changes: %s, want %s", got, want)
	}
	vs, _ := db.PasswordVersions(ctx, "r1")
	if !vs[0].UpdatedAt.Equal(t0.Add(time.Hour)) || !vs[2].UpdatedAt.Equal(t0) {
		t.Fatalf("updated_at after state change: %+v", vs)
	}

	// Deleting a record deletes its versions.
	mustTx(t, db, func(tx *Tx) error { return tx.DeleteRecord(ctx, team.ID, "r1") })
	if got := states("r1"); got != "" {
		t.Fatalf("versions of a deleted record: %s", got)
	}
	if got := states("r2"); got != "4:previous 3:previous 2:previous 1:previous" {
		t.Fatalf("deleting r1 touched r2: %s", got)
	}
}
