package vault

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/fault"
)

// values builds a field's value list from JSON texts.
func values(js ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(js))
	for i, j := range js {
		out[i] = json.RawMessage(j)
	}
	return out
}

const (
	sampleUID   = "Kt1uid0000000000000001"
	sampleTitle = `Prod / DB [eu] \ main` // needs every escape: '/', '[', ']' and '\'
)

// sampleRecord is the record the notation tests select from.
func sampleRecord() Record {
	return Record{
		UID:   sampleUID,
		Type:  "pamMachine",
		Title: sampleTitle,
		Notes: "rotate monthly",
		Fields: []Field{
			{Type: "login", Value: values(`"admin"`)},
			{Type: "password", Value: values(`"s3cret"`)},
			{Type: "host", Value: values(`{"hostName":"h","port":"22"}`)},
			{Type: "name", Value: values(`{"first":"Ada","middle":"M","last":"Lovelace"}`, `{"first":"Bob","last":"Stone"}`)},
			{Type: "phone", Value: values(`{"number":"555-1","type":"Work"}`, `{"number":"555-2","type":"Mobile"}`)},
			{Type: "url"}, // no value (nil)
			{Type: "oneTimeCode", Value: []json.RawMessage{}}, // no value (empty)
			{Type: "text", Label: "a/b", Value: values(`"slash"`)},
			{Type: "text", Label: "x[1]", Value: values(`"bracket"`)},
			{Type: "text", Label: `back\slash`, Value: values(`"backslash"`)},
			{Type: "text", Label: "Sign-in", Value: values(`"by label"`)},
		},
		Custom: []Field{
			{Type: "text", Label: "env", Value: values(`"prod"`)},
			{Type: "name", Label: "Co-owners", Value: values(`{"first":"Cy","middle":"A","last":"One"}`, `{"first":"Di","middle":"B","last":"Two"}`)},
			{Type: "text", Label: "tags", Value: values(`"a"`, `"b"`, `"c"`)},
			{Type: "text", Label: "empty"},
			{Type: "secret", Label: "password", Value: values(`"custom-pw"`)},
			{Type: "multiline", Label: "a/b[0]", Value: values(`"tricky"`)},
		},
	}
}

// escapeName escapes a record or field name for use in a notation reference.
func escapeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\', '/', '[', ']':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

type notationCase struct {
	name string
	ref  string
	want Notation
	// value is the JSON Select returns on sampleRecord (compared after compacting).
	value string
}

var notationCases = []notationCase{
	// prefix
	{"prefix", "keeper://" + sampleUID + "/field/password",
		Notation{sampleUID, "field", "password", -1, false, ""}, `"s3cret"`},
	{"prefix upper case", "KEEPER://" + sampleUID + "/field/password",
		Notation{sampleUID, "field", "password", -1, false, ""}, `"s3cret"`},
	{"prefix mixed case", "Keeper://" + sampleUID + "/field/password",
		Notation{sampleUID, "field", "password", -1, false, ""}, `"s3cret"`},
	{"no prefix", sampleUID + "/field/password",
		Notation{sampleUID, "field", "password", -1, false, ""}, `"s3cret"`},

	// record by title (escaped '/', '[', ']' and '\')
	{"title record", `keeper://Prod \/ DB \[eu\] \\ main/field/login`,
		Notation{sampleTitle, "field", "login", -1, false, ""}, `"admin"`},
	{"title record no prefix", `Prod \/ DB \[eu\] \\ main/field/login`,
		Notation{sampleTitle, "field", "login", -1, false, ""}, `"admin"`},
	{"unescaped brackets in a record name", "keeper://db [eu]/type",
		Notation{"db [eu]", "type", "", -1, false, ""}, `"pamMachine"`},

	// title, notes, type
	{"title", "keeper://" + sampleUID + "/title",
		Notation{sampleUID, "title", "", -1, false, ""}, `"Prod / DB [eu] \\ main"`},
	{"notes", "keeper://" + sampleUID + "/notes",
		Notation{sampleUID, "notes", "", -1, false, ""}, `"rotate monthly"`},
	{"type", "keeper://" + sampleUID + "/type",
		Notation{sampleUID, "type", "", -1, false, ""}, `"pamMachine"`},

	// field by type and by label
	{"field by type", "keeper://" + sampleUID + "/field/login",
		Notation{sampleUID, "field", "login", -1, false, ""}, `"admin"`},
	{"field by label", "keeper://" + sampleUID + "/field/Sign-in",
		Notation{sampleUID, "field", "Sign-in", -1, false, ""}, `"by label"`},
	{"field label with escaped slash", `keeper://` + sampleUID + `/field/a\/b`,
		Notation{sampleUID, "field", "a/b", -1, false, ""}, `"slash"`},
	{"field label with escaped brackets", `keeper://` + sampleUID + `/field/x\[1\]`,
		Notation{sampleUID, "field", "x[1]", -1, false, ""}, `"bracket"`},
	{"field label with escaped brackets and index", `keeper://` + sampleUID + `/field/x\[1\][0]`,
		Notation{sampleUID, "field", "x[1]", 0, false, ""}, `"bracket"`},
	{"field label with escaped backslash", `keeper://` + sampleUID + `/field/back\\slash`,
		Notation{sampleUID, "field", `back\slash`, -1, false, ""}, `"backslash"`},
	{"standard field wins over a custom label", "keeper://" + sampleUID + "/field/password",
		Notation{sampleUID, "field", "password", -1, false, ""}, `"s3cret"`},

	// custom_field by label and by type
	{"custom_field by label", "keeper://" + sampleUID + "/custom_field/env",
		Notation{sampleUID, "custom_field", "env", -1, false, ""}, `"prod"`},
	{"custom_field by type", "keeper://" + sampleUID + "/custom_field/secret",
		Notation{sampleUID, "custom_field", "secret", -1, false, ""}, `"custom-pw"`},
	{"custom_field label equal to a standard type", "keeper://" + sampleUID + "/custom_field/password",
		Notation{sampleUID, "custom_field", "password", -1, false, ""}, `"custom-pw"`},
	{"custom_field label with every escape", `keeper://` + sampleUID + `/custom_field/a\/b\[0\][0]`,
		Notation{sampleUID, "custom_field", "a/b[0]", 0, false, ""}, `"tricky"`},

	// predicates
	{"no predicate is the first value", "keeper://" + sampleUID + "/custom_field/tags",
		Notation{sampleUID, "custom_field", "tags", -1, false, ""}, `"a"`},
	{"index", "keeper://" + sampleUID + "/custom_field/tags[1]",
		Notation{sampleUID, "custom_field", "tags", 1, false, ""}, `"b"`},
	{"index last", "keeper://" + sampleUID + "/custom_field/tags[2]",
		Notation{sampleUID, "custom_field", "tags", 2, false, ""}, `"c"`},
	{"index with leading zero", "keeper://" + sampleUID + "/custom_field/tags[01]",
		Notation{sampleUID, "custom_field", "tags", 1, false, ""}, `"b"`},
	{"all values", "keeper://" + sampleUID + "/custom_field/tags[]",
		Notation{sampleUID, "custom_field", "tags", -1, true, ""}, `["a","b","c"]`},
	{"all values of a field with none", "keeper://" + sampleUID + "/field/url[]",
		Notation{sampleUID, "field", "url", -1, true, ""}, `[]`},
	{"all values of a custom field with none", "keeper://" + sampleUID + "/custom_field/empty[]",
		Notation{sampleUID, "custom_field", "empty", -1, true, ""}, `[]`},

	// object values
	{"object value", "keeper://" + sampleUID + "/field/host",
		Notation{sampleUID, "field", "host", -1, false, ""}, `{"hostName":"h","port":"22"}`},
	{"object property hostName", "keeper://" + sampleUID + "/field/host[0][hostName]",
		Notation{sampleUID, "field", "host", 0, false, "hostName"}, `"h"`},
	{"object property port", "keeper://" + sampleUID + "/field/host[0][port]",
		Notation{sampleUID, "field", "host", 0, false, "port"}, `"22"`},
	{"all values property", "keeper://" + sampleUID + "/field/host[][port]",
		Notation{sampleUID, "field", "host", -1, true, "port"}, `["22"]`},
	{"name middle", "keeper://" + sampleUID + "/field/name[0][middle]",
		Notation{sampleUID, "field", "name", 0, false, "middle"}, `"M"`},
	{"name second last", "keeper://" + sampleUID + "/field/name[1][last]",
		Notation{sampleUID, "field", "name", 1, false, "last"}, `"Stone"`},
	{"name whole array", "keeper://" + sampleUID + "/field/name[]",
		Notation{sampleUID, "field", "name", -1, true, ""},
		`[{"first":"Ada","middle":"M","last":"Lovelace"},{"first":"Bob","last":"Stone"}]`},
	{"name all firsts", "keeper://" + sampleUID + "/field/name[][first]",
		Notation{sampleUID, "field", "name", -1, true, "first"}, `["Ada","Bob"]`},
	{"custom name by type, index and property", "keeper://" + sampleUID + "/custom_field/name[1][middle]",
		Notation{sampleUID, "custom_field", "name", 1, false, "middle"}, `"B"`},
	{"custom name by label", "keeper://" + sampleUID + "/custom_field/Co-owners[0][last]",
		Notation{sampleUID, "custom_field", "Co-owners", 0, false, "last"}, `"One"`},
	{"phone number", "keeper://" + sampleUID + "/field/phone[0][number]",
		Notation{sampleUID, "field", "phone", 0, false, "number"}, `"555-1"`},
	{"all phone numbers", "keeper://" + sampleUID + "/field/phone[][number]",
		Notation{sampleUID, "field", "phone", -1, true, "number"}, `["555-1","555-2"]`},
}

func TestParseNotation(t *testing.T) {
	t.Parallel()
	rec := sampleRecord()
	for _, tc := range notationCases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ParseNotation(tc.ref)
			if err != nil {
				t.Fatalf("ParseNotation(%q): %v", tc.ref, err)
			}
			if n != tc.want {
				t.Fatalf("ParseNotation(%q) = %+v, want %+v", tc.ref, n, tc.want)
			}
			got, err := n.Select(rec)
			if err != nil {
				t.Fatalf("Select(%q): %v", tc.ref, err)
			}
			if c := compactJSON(t, got); c != compactJSON(t, json.RawMessage(tc.value)) {
				t.Fatalf("Select(%q) = %s, want %s", tc.ref, c, tc.value)
			}
		})
	}
}

func compactJSON(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("not JSON: %q: %v", raw, err)
	}
	return b.String()
}

var notationErrorCases = []struct {
	name, ref string
	msg       string // a distinctive substring of the error message
}{
	{"empty", "", "no record"},
	{"prefix only", "keeper://", "no record"},
	{"empty record", "keeper:///field/password", "no record"},
	{"other scheme", "https://" + sampleUID + "/field/password", "the scheme must be keeper://"},
	{"other scheme ftp", "ftp://host/x", "the scheme must be keeper://"},
	{"missing selector", "keeper://" + sampleUID, "no selector after the record"},
	{"missing selector no prefix", sampleUID, "no selector after the record"},
	{"empty selector", "keeper://" + sampleUID + "/", "no selector after the record"},
	{"unknown selector", "keeper://" + sampleUID + "/password", `unknown selector "password"`},
	{"selectors are case-sensitive", "keeper://" + sampleUID + "/FIELD/password", `unknown selector "FIELD"`},
	{"file selector", "keeper://" + sampleUID + "/file/cert.pem", "file attachments are not supported"},
	{"field without name", "keeper://" + sampleUID + "/field", "needs a field type or label"},
	{"field with empty name", "keeper://" + sampleUID + "/field/", "needs a field type or label"},
	{"custom_field without name", "keeper://" + sampleUID + "/custom_field", "selector custom_field needs a field type or label"},
	{"field with only a predicate", "keeper://" + sampleUID + "/field/[0]", "the field type or label is empty"},
	{"negative index", "keeper://" + sampleUID + "/field/name[-1]", `index "-1" is not a non-negative number`},
	{"negative zero index", "keeper://" + sampleUID + "/field/name[-0]", `index "-0" is not a non-negative number`},
	{"plus sign index", "keeper://" + sampleUID + "/field/name[+1]", `index "+1" is not a non-negative number`},
	{"non-numeric index", "keeper://" + sampleUID + "/field/name[1x][first]", `index "1x" is not a non-negative number`},
	{"index with a space", "keeper://" + sampleUID + "/field/name[ 1]", `index " 1" is not`},
	{"huge index", "keeper://" + sampleUID + "/field/name[99999999999999999999999]", "is not a non-negative number"},
	{"property without index", "keeper://" + sampleUID + "/field/name[middle]", "a property needs an index first, as in [0][middle] or [][middle]"},
	{"property in index place", "keeper://" + sampleUID + "/field/name[middle][0]", `index "middle" is not a non-negative number`},
	{"unclosed bracket", "keeper://" + sampleUID + "/field/name[0", "'[' without a closing ']'"},
	{"unclosed second bracket", "keeper://" + sampleUID + "/field/name[0][first", "'[' without a closing ']'"},
	{"stray ] in name", "keeper://" + sampleUID + "/field/na]me", "']' without '['"},
	{"stray ] after predicate", "keeper://" + sampleUID + "/field/name[0]]", `unexpected "]" after a predicate`},
	{"three predicates", "keeper://" + sampleUID + "/field/name[0][first][x]", "at most two predicates"},
	{"trailing text after predicate", "keeper://" + sampleUID + "/field/name[0]x", `unexpected "x" after a predicate`},
	{"text between predicates", "keeper://" + sampleUID + "/field/name[0] [first]", `unexpected " [first]" after a predicate`},
	{"empty property", "keeper://" + sampleUID + "/field/name[0][]", "empty property predicate"},
	{"empty property after all", "keeper://" + sampleUID + "/field/name[][]", "empty property predicate"},
	{"too many segments", "keeper://" + sampleUID + "/field/a/b", "too many path segments"},
	{"unescaped slash in a property", "keeper://" + sampleUID + "/field/host[0][a/b]", "too many path segments"},
	{"title with extra segment", "keeper://" + sampleUID + "/title/x", `selector "title" takes nothing after it`},
	{"notes with extra segment", "keeper://" + sampleUID + "/notes/x", `selector "notes" takes nothing after it`},
	{"type with empty extra segment", "keeper://" + sampleUID + "/type/", `selector "type" takes nothing after it`},
	{"trailing backslash", "keeper://" + sampleUID + `/field/password\`, "a trailing backslash escapes nothing"},
}

func TestParseNotationErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range notationErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ParseNotation(tc.ref)
			if err == nil {
				t.Fatalf("ParseNotation(%q) = %+v, want an error", tc.ref, n)
			}
			fe, ok := err.(*fault.Error)
			if !ok {
				t.Fatalf("ParseNotation(%q) error %T %v, want *fault.Error", tc.ref, err, err)
			}
			if fe.Kind != fault.Invalid || fe.Code != "bad_notation" {
				t.Fatalf("ParseNotation(%q) error kind %v code %q, want Invalid bad_notation", tc.ref, fe.Kind, fe.Code)
			}
			if !strings.Contains(fe.Message, tc.msg) {
				t.Fatalf("ParseNotation(%q) message %q, want it to contain %q", tc.ref, fe.Message, tc.msg)
			}
			if !strings.Contains(fe.Message, "bad reference") {
				t.Fatalf("message %q does not name the reference", fe.Message)
			}
		})
	}
}

var selectErrorCases = []struct {
	name, ref string
	msg       string
}{
	{"missing field", "keeper://" + sampleUID + "/field/missing", `record ` + sampleUID + ` has no field with type or label "missing"`},
	{"custom label is not a standard field", "keeper://" + sampleUID + "/field/env", `has no field with type or label "env"`},
	{"standard type is not a custom field", "keeper://" + sampleUID + "/custom_field/login", `has no custom field with type or label "login"`},
	{"names are case-sensitive", "keeper://" + sampleUID + "/field/Password", `has no field with type or label "Password"`},
	{"index out of range", "keeper://" + sampleUID + "/field/password[1]", "has 1 value(s): index 1 is out of range"},
	{"index out of range with property", "keeper://" + sampleUID + "/field/name[2][first]", "has 2 value(s): index 2 is out of range"},
	{"no value", "keeper://" + sampleUID + "/field/url", `field "url" of record ` + sampleUID + ` has no value`},
	{"no value (empty list)", "keeper://" + sampleUID + "/field/oneTimeCode", "has no value"},
	{"no value with index", "keeper://" + sampleUID + "/field/url[0]", "has 0 value(s): index 0 is out of range"},
	{"property on a string value", "keeper://" + sampleUID + "/field/password[0][x]", `value 0 of field "password" is not an object, so it has no property "x"`},
	{"property on string values", "keeper://" + sampleUID + "/custom_field/tags[][x]", `value 0 of field "tags" is not an object`},
	{"missing property", "keeper://" + sampleUID + "/field/host[0][user]", `value 0 of field "host" has no property "user"`},
	{"missing property in a later value", "keeper://" + sampleUID + "/field/name[][middle]", `value 1 of field "name" has no property "middle"`},
	{"property names are case-sensitive", "keeper://" + sampleUID + "/field/host[0][hostname]", `has no property "hostname"`},
}

func TestNotationSelectErrors(t *testing.T) {
	t.Parallel()
	rec := sampleRecord()
	for _, tc := range selectErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ParseNotation(tc.ref)
			if err != nil {
				t.Fatalf("ParseNotation(%q): %v", tc.ref, err)
			}
			got, err := n.Select(rec)
			if err == nil {
				t.Fatalf("Select(%q) = %s, want an error", tc.ref, got)
			}
			fe, ok := err.(*fault.Error)
			if !ok {
				t.Fatalf("Select(%q) error %T %v, want *fault.Error", tc.ref, err, err)
			}
			if fe.Kind != fault.NotFound || fe.Code != "not_found" {
				t.Fatalf("Select(%q) error kind %v code %q, want NotFound not_found", tc.ref, fe.Kind, fe.Code)
			}
			if !strings.Contains(fe.Message, tc.msg) {
				t.Fatalf("Select(%q) message %q, want it to contain %q", tc.ref, fe.Message, tc.msg)
			}
			if strings.Contains(fe.Message, "s3cret") {
				t.Fatalf("Select(%q) message %q leaks a value", tc.ref, fe.Message)
			}
		})
	}
}

// TestNotationSelectFirstMatch: the first field whose type or label matches is used.
func TestNotationSelectFirstMatch(t *testing.T) {
	t.Parallel()
	rec := Record{UID: "u", Fields: []Field{
		{Type: "text", Label: "password", Value: values(`"labelled"`)},
		{Type: "password", Value: values(`"typed"`)},
	}}
	n, err := ParseNotation("keeper://u/field/password")
	if err != nil {
		t.Fatal(err)
	}
	got, err := n.Select(rec)
	if err != nil || string(got) != `"labelled"` {
		t.Fatalf("Select = %s, %v; want the first match", got, err)
	}
}

// TestNotationEscapeRoundTrip: escaping any record name and label gives a reference that
// parses back to exactly those names.
func TestNotationEscapeRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"a", `\`, "/", "[", "]", "[]", `a\/b`, "x[0][y]", "://", "keeper://x", " ", "é/ü"} {
		checkEscapeRoundTrip(t, s, s)
	}
}

func checkEscapeRoundTrip(t *testing.T, record, label string) {
	t.Helper()
	ref := "keeper://" + escapeName(record) + "/custom_field/" + escapeName(label) + "[0]"
	n, err := ParseNotation(ref)
	if err != nil {
		t.Fatalf("ParseNotation(%q): %v", ref, err)
	}
	want := Notation{Record: record, Selector: "custom_field", Name: label, Index: 0}
	if n != want {
		t.Fatalf("ParseNotation(%q) = %+v, want %+v", ref, n, want)
	}
}

func FuzzParseNotation(f *testing.F) {
	for _, tc := range notationCases {
		f.Add(tc.ref)
	}
	for _, tc := range notationErrorCases {
		f.Add(tc.ref)
	}
	for _, tc := range selectErrorCases {
		f.Add(tc.ref)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		n, err := ParseNotation(ref)
		if err != nil {
			fe, ok := err.(*fault.Error)
			if !ok || fe.Kind != fault.Invalid || fe.Code != "bad_notation" {
				t.Fatalf("ParseNotation(%q) error %#v, want an Invalid bad_notation *fault.Error", ref, err)
			}
			return
		}
		if n.Record == "" {
			t.Fatalf("ParseNotation(%q) = %+v: empty record", ref, n)
		}
		switch n.Selector {
		case "title", "notes", "type":
			if n.Name != "" || n.Index != -1 || n.All || n.Property != "" {
				t.Fatalf("ParseNotation(%q) = %+v: %s takes no name or predicate", ref, n, n.Selector)
			}
		case "field", "custom_field":
			if n.Name == "" {
				t.Fatalf("ParseNotation(%q) = %+v: empty field name", ref, n)
			}
		default:
			t.Fatalf("ParseNotation(%q) = %+v: unexpected selector", ref, n)
		}
		if n.Index < -1 || n.All && n.Index != -1 {
			t.Fatalf("ParseNotation(%q) = %+v: bad index", ref, n)
		}
		if n.Property != "" && n.Index < 0 && !n.All {
			t.Fatalf("ParseNotation(%q) = %+v: a property without an index", ref, n)
		}
		val, err := n.Select(sampleRecord())
		if err != nil {
			if fault.KindOf(err) != fault.NotFound {
				t.Fatalf("Select(%q): %v, want a NotFound error", ref, err)
			}
			return
		}
		if !json.Valid(val) {
			t.Fatalf("Select(%q) = %q: not JSON", ref, val)
		}
	})
}

func FuzzNotationEscapeRoundTrip(f *testing.F) {
	f.Add("db", "password")
	f.Add(sampleTitle, "a/b[0]")
	f.Add(`\\`, "]]")
	f.Fuzz(func(t *testing.T, record, label string) {
		if record == "" || label == "" {
			return
		}
		checkEscapeRoundTrip(t, record, label)
	})
}
