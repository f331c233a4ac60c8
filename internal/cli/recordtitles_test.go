package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRecordCommandsTakeTitles: the commands that take a record take its exact title as well
// as its UID; a title several records share is a usage error (exit 2) listing their UIDs
// (keyturn issue 12).
func TestRecordCommandsTakeTitles(t *testing.T) {
	h := newHarness(t)
	uid := strings.TrimSpace(h.ok("pw-1", "record", "create", "--type", "pamUser", "--title", "Okta admin",
		"--folder", "Shared/Okta", "--field", "login=admin@example.com", "--field", "password=-"))

	var rec Record
	if err := json.Unmarshal([]byte(h.ok("", "record", "get", "Okta admin", "-o", "json")), &rec); err != nil || rec.UID != uid {
		t.Fatalf("record get by title: %+v %v", rec, err)
	}
	// update by title, renaming it: the write goes to the record read
	if out := h.ok("pw-2", "record", "update", "Okta admin", "--title", "Okta admin (prod)", "--field", "password=-"); out != "updated "+uid+" (revision 2)\n" {
		t.Fatalf("record update by title: %q", out)
	}
	if out := h.ok("", "record", "history", "Okta admin (prod)"); strings.Count(out, "\n") != 3 {
		t.Fatalf("record history by title:\n%s", out)
	}
	h.ok("", "script", "list", "Okta admin (prod)")
	if r := h.run("", "record", "get", "Okta admin"); r.code != ExitFailed || !strings.Contains(r.err.Error(), "HTTP 404") {
		t.Fatalf("the old title: exit %d (%v)", r.code, r.err)
	}

	// a shared title: exit 2, both UIDs named
	twin := strings.TrimSpace(h.ok("", "record", "create", "--type", "login", "--title", "Okta admin (prod)", "--folder", "Apps"))
	for _, args := range [][]string{
		{"record", "get", "Okta admin (prod)"},
		{"record", "update", "Okta admin (prod)", "--notes", "x"},
		{"record", "delete", "Okta admin (prod)"},
		{"record", "history", "Okta admin (prod)"},
		{"rotation", "info", "Okta admin (prod)"},
		{"script", "params", "Okta admin (prod)"},
	} {
		r := h.run("", args...)
		if r.code != ExitBadUsage || !strings.Contains(r.err.Error(), uid) || !strings.Contains(r.err.Error(), twin) {
			t.Errorf("%v: exit %d (%v), want 2 naming %s and %s", args, r.code, r.err, uid, twin)
		}
	}
	// delete by UID, then by the title now unique
	h.ok("", "record", "delete", twin)
	h.ok("", "record", "delete", "Okta admin (prod)")
	if out := h.ok("", "record", "list"); strings.Count(out, "\n") != 1 {
		t.Fatalf("records left:\n%s", out)
	}
}
