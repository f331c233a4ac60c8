package cli

import (
	"encoding/json"
	"testing"
)

// TestUnescapeHTML: script params shows <, > and & as the script decodes them, and leaves
// every other escape (an escaped backslash before "u003c" included) as it was.
func TestUnescapeHTML(t *testing.T) {
	in := `{"a":"\u003cthe new password\u003e","b":"x\u0026y \\u003c \"\u003E\"","c":"\u00e9\n"}`
	want := `{"a":"<the new password>","b":"x&y \\u003c \">\"","c":"\u00e9\n"}`
	got := unescapeHTML([]byte(in))
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	var a, b map[string]string
	if err := json.Unmarshal([]byte(in), &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &b); err != nil {
		t.Fatal(err)
	}
	for k := range a {
		if a[k] != b[k] {
			t.Errorf("%s: %q became %q", k, a[k], b[k])
		}
	}
}
