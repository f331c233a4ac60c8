package vault_test

import (
	"context"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/vault"
)

// TestLookupSeesOnlyTheScope: a title resolves among the records of the caller's folders
// only, however many records outside them share it; they are neither counted nor listed in an
// ambiguity, and a uid outside them is not found (keyturn issue 12).
func TestLookupSeesOnlyTheScope(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// More records outside the scope than the old lookup read before it applied the folders,
	// with uids that sort before any other (they are never opened, so their sealed data need
	// not match): a lookup that filters after a LIMIT misses the record in the scope.
	var outside []string
	for range 105 {
		rec := vault.Record{Type: "login", Title: "dup", Folder: "Other"}
		uid := f.create(t, rec).UID
		f.exec(t, `UPDATE records SET uid = '-' || uid WHERE uid = ?`, uid)
		outside = append(outside, "-"+uid)
	}
	rec := login("dup", "pw")
	rec.Folder = "Apps"
	mine := f.create(t, rec)
	apps := vault.Scope{TeamID: f.scope.TeamID, Folders: []string{"Apps"}}

	if uid, err := f.v.Lookup(ctx, apps, "dup"); err != nil || uid != mine.UID {
		t.Fatalf("Lookup(dup) within Apps = %q, %v; want %s", uid, err, mine.UID)
	}
	if val, _, err := f.v.Resolve(ctx, apps, "keeper://dup/title"); err != nil || string(val) != `"dup"` {
		t.Fatalf("notation by title within Apps: %s %v", val, err)
	}
	if uid, err := f.v.Lookup(ctx, apps, mine.UID); err != nil || uid != mine.UID {
		t.Fatalf("Lookup(uid) = %q, %v", uid, err)
	}
	if _, err := f.v.Lookup(ctx, apps, outside[0]); fault.KindOf(err) != fault.NotFound {
		t.Fatalf("Lookup of a uid outside the scope: %v, want NotFound", err)
	}

	rec.Folder = "Apps/Sub"
	second := f.create(t, rec)
	_, err := f.v.Lookup(ctx, apps, "dup")
	fe, ok := fault.As(err)
	if !ok || fe.Kind != fault.Invalid || fe.Code != "ambiguous_title" {
		t.Fatalf("two records within Apps: %v, want ambiguous_title", err)
	}
	if !strings.HasPrefix(fe.Message, "2 records") || !strings.Contains(fe.Message, mine.UID) || !strings.Contains(fe.Message, second.UID) {
		t.Fatalf("ambiguity message %q", fe.Message)
	}
	for _, uid := range outside {
		if strings.Contains(fe.Message, uid) {
			t.Fatalf("ambiguity message names a record outside the scope: %q", fe.Message)
		}
	}
	// Without a folder limit, many matches are counted up to a bound and listed in part.
	_, err = f.v.Lookup(ctx, f.scope, "dup")
	if fe, ok := fault.As(err); !ok || fe.Code != "ambiguous_title" || !strings.HasPrefix(fe.Message, "more than 20 records") || strings.Count(fe.Message, ", ") != 20 {
		t.Fatalf("many matches: %v", err)
	}
}

// BenchmarkLookupByUID measures what resolving a route's {uid} adds to a request that names a
// record by its uid: one primary-key read.
func BenchmarkLookupByUID(b *testing.B) {
	f := newFixture(b)
	uid, err := f.v.Create(context.Background(), f.scope, login("bench", "pw"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.v.Lookup(context.Background(), f.scope, uid.UID); err != nil {
			b.Fatal(err)
		}
	}
}
