package cli

import (
	"strings"
	"testing"
)

// TestRecordCreateRefusesUnknownFieldType: --field with a type outside the record model's
// list is a usage error (exit 2) naming the allowed types, and nothing is created; the label
// after '.' stays free text (keyturn issue 12).
func TestRecordCreateRefusesUnknownFieldType(t *testing.T) {
	h := newHarness(t)
	for _, spec := range []string{"nosuchtype=v", "nosuchtype.label=v", "Password=v"} {
		r := h.run("", "record", "create", "--type", "login", "--title", "T", "--field", spec)
		if r.code != ExitBadUsage {
			t.Fatalf("--field %s: exit %d (%v), want 2", spec, r.code, r.err)
		}
		for _, want := range []string{"not a field type", "login, password", "oneTimeCode"} {
			if !strings.Contains(r.err.Error(), want) {
				t.Errorf("--field %s: error %q lacks %q", spec, r.err, want)
			}
		}
	}
	// update refuses it before reading the record
	r := h.run("", "record", "update", "x", "--field", "nosuchtype=v")
	if r.code != ExitBadUsage || !strings.Contains(r.err.Error(), "not a field type") {
		t.Fatalf("update --field nosuchtype=v: exit %d (%v), want 2", r.code, r.err)
	}
	if out := h.ok("", "record", "list"); strings.Count(out, "\n") != 1 {
		t.Fatalf("refused commands created records:\n%s", out)
	}
	uid := strings.TrimSpace(h.ok("", "record", "create", "--type", "login", "--title", "T",
		"--field", "text.nosuchtype=v", "--field", "pamHostname=h", "--custom", "nosuchtype=v"))
	if rec := h.getRecord(uid); len(rec.Fields) != 2 || rec.Fields[0].Label != "nosuchtype" || rec.Custom[0].Label != "nosuchtype" {
		t.Fatalf("free labels: %+v", rec)
	}
}
