package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestKeyRotateNeverExpiresIsNull: a key that does not expire shows expires_at null in -o
// json and yaml (as "never" in the table), where the API mirrors OPA's zero time; an older key
// shows when it expires. Key rotate warns that older keys expire only when there are some.
func TestKeyRotateNeverExpiresIsNull(t *testing.T) {
	h := newHarness(t)
	h.ok("", "service-user", "create", "bot", "--role", "pam_admin")

	// the first key: no older keys, so no word of them
	r := h.run("", "service-user", "key", "rotate", "bot")
	if r.code != ExitOK {
		t.Fatalf("key rotate: exit %d: %v", r.code, r.err)
	}
	if !strings.Contains(r.errOut, "shown only once") || strings.Contains(r.errOut, "older") {
		t.Errorf("key rotate of a user without keys warns: %q", r.errOut)
	}

	// the second, as JSON: expires_at null, not 0001-01-01T00:00:00Z
	out := h.ok("", "service-user", "key", "rotate", "bot", "-o", "json")
	var issued map[string]any
	if err := json.Unmarshal([]byte(out), &issued); err != nil {
		t.Fatal(err)
	}
	if v, ok := issued["expires_at"]; !ok || v != nil || strings.Contains(out, "0001-01-01") {
		t.Errorf("key rotate -o json: expires_at %v (present %v), want null:\n%s", v, ok, out)
	}
	for _, k := range []string{"id", "secret", "issued_at", "last_used"} {
		if _, ok := issued[k]; !ok {
			t.Errorf("key rotate -o json lacks %s:\n%s", k, out)
		}
	}
	if out := h.ok("", "service-user", "key", "rotate", "bot", "-o", "yaml"); !strings.Contains(out, "expires_at: null\n") {
		t.Errorf("key rotate -o yaml:\n%s", out)
	}

	// the third, as text: two older keys, which now expire
	r = h.run("", "service-user", "key", "rotate", "bot")
	if r.code != ExitOK || !strings.Contains(r.errOut, "the 3 older keys of bot expire in 48 h") {
		t.Errorf("key rotate with older keys: exit %d, %q", r.code, r.errOut)
	}

	// key list: the newest never expires (null), the older ones do
	var listed struct {
		List []map[string]any `json:"list"`
	}
	out = h.ok("", "service-user", "key", "list", "bot", "-o", "json")
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatal(err)
	}
	never := 0
	for _, k := range listed.List {
		switch v := k["expires_at"].(type) {
		case nil:
			never++
		case string:
			if strings.HasPrefix(v, "0001-") {
				t.Errorf("key list -o json: %v", k)
			}
		}
	}
	if len(listed.List) != 4 || never != 1 {
		t.Errorf("key list -o json: %d keys, %d never expiring, want 4 and 1:\n%s", len(listed.List), never, out)
	}
}
