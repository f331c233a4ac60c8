package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rivo/uniseg"
	"go.yaml.in/yaml/v3"
)

// sameDocument fails the test unless yamlText holds the same document as jsonText: equal
// values, and every mapping's keys in the same order.
func sameDocument(t *testing.T, what, jsonText, yamlText string) {
	t.Helper()
	var fromJSON, fromYAML any
	if err := json.Unmarshal([]byte(jsonText), &fromJSON); err != nil {
		t.Fatalf("%s -o json: %v\n%s", what, err, jsonText)
	}
	var y any
	if err := yaml.Unmarshal([]byte(yamlText), &y); err != nil {
		t.Fatalf("%s -o yaml: %v\n%s", what, err, yamlText)
	}
	// The YAML's values as JSON values: numbers as float64, maps with string keys.
	b, err := json.Marshal(y)
	if err != nil {
		t.Fatalf("%s -o yaml: %v", what, err)
	}
	if err := json.Unmarshal(b, &fromYAML); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Fatalf("%s: -o yaml differs from -o json\njson:\n%s\nyaml:\n%s", what, jsonText, yamlText)
	}
	if strings.HasPrefix(strings.TrimSpace(yamlText), "{") {
		t.Errorf("%s -o yaml is JSON, not block YAML:\n%s", what, yamlText)
	}
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(yamlText), &node); err != nil {
		t.Fatal(err)
	}
	if got, want := yamlKeys(&node), jsonKeys(t, jsonText); !slices.Equal(got, want) {
		t.Errorf("%s: -o yaml keys %v, want the order of -o json %v", what, got, want)
	}
}

// yamlKeys lists a YAML document's mapping keys in document order.
func yamlKeys(n *yaml.Node) []string {
	var keys []string
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			keys = append(keys, n.Content[i].Value)
			keys = append(keys, yamlKeys(n.Content[i+1])...)
		}
		return keys
	}
	for _, c := range n.Content {
		keys = append(keys, yamlKeys(c)...)
	}
	return keys
}

// jsonKeys lists a JSON document's object keys in document order.
func jsonKeys(t *testing.T, text string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(text))
	var keys []string
	var inObject []bool // per open container: whether it is an object
	expectKey := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return keys
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				inObject = append(inObject, true)
				expectKey = true
				continue
			case '[':
				inObject = append(inObject, false)
			default:
				inObject = inObject[:len(inObject)-1]
			}
		case string:
			if expectKey {
				keys = append(keys, v)
				expectKey = false
				continue
			}
		}
		// after a value: the next token of an object is a key
		expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
	}
}

// TestOutputYAML: every kind of -o json output (an API answer, a list, an object the CLI
// builds, script params, a notation value) is available as -o yaml: the same document, keys in
// the same order, in block style.
func TestOutputYAML(t *testing.T) {
	h := newHarness(t)
	uid := strings.TrimSpace(h.ok("Multi\nline: value #1\n", "record", "create", "--type", "pamUser", "--title", "Okta: admin",
		"--folder", "Shared/日本", "--field", "login=true", "--field", "password=-", "--notes", "- not a list"))
	h.ok("", "rotation", "set", "--method", "scripts_only", "--", uid)
	h.ok("", "service-user", "create", "bot", "--role", "pam_admin")
	h.ok("", "service-user", "key", "rotate", "bot")
	// the first audit events are written within moments; wait for them, so that the JSON and
	// the YAML show the same
	waitFor(t, func() bool { return strings.Count(h.ok("", "audit", "--limit", "2", "-o", "json"), `"seq"`) == 2 })
	for _, args := range [][]string{
		{"record", "get", uid},
		{"record", "get", uid, "--reveal"},
		{"record", "list"},
		{"record", "history", uid, "--reveal"},
		{"get", "keeper://" + uid + "/field/password"},
		{"get", "keeper://" + uid + "/field/login"},
		{"rotation", "info", uid},
		{"script", "params", uid},
		{"service-user", "get", "bot"},
		{"service-user", "list"},
		{"service-user", "key", "list", "bot"},
		{"audit", "--limit", "2"},
	} {
		what := strings.Join(args, " ")
		jsonOut := h.ok("", append(args, "-o", "json")...)
		yamlOut := h.ok("", append(args, "-o", "yaml")...)
		sameDocument(t, what, jsonOut, yamlOut)
	}
	// an object the CLI builds rather than the API's answer
	h.ok("", "record", "create", "--type", "login", "--title", "gone")
	goneUID := strings.TrimSpace(h.ok("", "record", "list", "--title", "gone", "-o", "json"))
	var list struct {
		List []Summary `json:"list"`
	}
	if err := json.Unmarshal([]byte(goneUID), &list); err != nil || len(list.List) != 1 {
		t.Fatalf("record list --title gone: %v\n%s", err, goneUID)
	}
	out := h.ok("", "record", "delete", list.List[0].UID, "-o", "yaml")
	if want := "uid: " + list.List[0].UID + "\ndeleted: true\n"; out != want && out != "deleted: true\nuid: "+list.List[0].UID+"\n" {
		t.Errorf("record delete -o yaml: %q", out)
	}
}

// TestWriteRawYAML: the JSON to YAML conversion keeps strings that look like other YAML types
// strings, numbers as written, long and multi-line strings whole.
func TestWriteRawYAML(t *testing.T) {
	long := strings.Repeat("word ", 60)
	in := fmt.Sprintf(`{"b":"true","a":"1.0","n":12345678901234567890,"f":1.5e3,"nul":null,"e":{},"l":[],`+
		`"multi":"one\ntwo\n","long":%q,"colon":"a: b","hash":"# c","uni":"日本 🔑","pua":"\ue000🔑\ue001","ctl":"x\u0007y"}`, long)
	var buf bytes.Buffer
	if err := writeRawYAML(&buf, []byte(in)); err != nil {
		t.Fatal(err)
	}
	sameDocument(t, "document", in, buf.String())
	for _, want := range []string{"n: 12345678901234567890\n", "f: 1.5e3\n", "uni: 日本 🔑\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("YAML lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestTableAlignsByDisplayWidth: columns line up on a terminal when cells hold wide characters
// (CJK, emoji) or zero-width ones (a combining accent, a zero-width joiner).
func TestTableAlignsByDisplayWidth(t *testing.T) {
	h := newHarness(t)
	titles := map[string]string{ // title: its folder
		"plain":        "F0",
		"日本語のタイトル":     "F1",
		"Okta 🔑 admin": "F2",
		"Cafe\u0301":   "F3",             // e and a combining acute accent: 1 column
		"dev 👩\u200d💻": "F4",             // woman technologist: one 2-column cluster
		"한국어":          "F5",             // Hangul
		"ｆｕｌｌ":         "F6",             // fullwidth Latin
		"x":            "Shared/中文/フォルダ", // a wide cell in the aligned column itself
	}
	for title, folder := range titles {
		h.ok("", "record", "create", "--type", "login", "--title", title, "--folder", folder)
	}
	out := h.ok("", "record", "list")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(titles)+1 {
		t.Fatalf("record list:\n%s", out)
	}
	// Where a column starts on screen: the display width of the text before its cell.
	col := func(line, cell string) int {
		i := strings.Index(line, cell)
		if i < 0 {
			t.Fatalf("%q not in %q", cell, line)
		}
		return uniseg.StringWidth(line[:i])
	}
	folderCol, revCol := col(lines[0], "FOLDER"), col(lines[0], "REVISION")
	for _, l := range lines[1:] {
		var folder string
		for title, f := range titles {
			if strings.Contains(l, "  "+title+"  ") {
				folder = f
			}
		}
		if folder == "" {
			t.Fatalf("no title in %q", l)
		}
		// after the padding: a uid (base64url) may hold the folder's text, as "…aF4E…" does "F4"
		if got := col(l, "  "+folder) + 2; got != folderCol {
			t.Errorf("FOLDER starts at column %d, not %d, in:\n%s", got, folderCol, out)
		}
		if got := uniseg.StringWidth(strings.TrimRight(l, "0123456789")); got != revCol {
			t.Errorf("REVISION starts at column %d, not %d, in:\n%s", got, revCol, out)
		}
	}

	// The same in the layout tabwriter would give ASCII text, block by block.
	var b bytes.Buffer
	tw := newTable(&b)
	fmt.Fprint(tw, "a\tbb\tc\n日本\tx\tyy\n\nlonger line\n名\t\t\nq\tr\n")
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "a     bb  c\n日本  x   yy\n\nlonger line\n名\nq   r\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestAuditFollowYAML: audit --follow -o yaml writes each event as a YAML document of its own,
// the same as the line -o json writes for it.
func TestAuditFollowYAML(t *testing.T) {
	events := []AuditEvent{
		{Seq: 1, Type: "record_created", Actor: "admin", RecordUID: "u1", Details: map[string]any{"title": "日本 🔑"}},
		{Seq: 2, Type: "record_deleted", Actor: "admin", Details: map[string]any{}},
	}
	var js, ys bytes.Buffer
	for _, ev := range events {
		if err := writeEvent(&js, FormatJSON, ev); err != nil {
			t.Fatal(err)
		}
		if err := writeEvent(&ys, FormatYAML, ev); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimRight(js.String(), "\n"), "\n")
	docs := strings.Split(strings.TrimPrefix(ys.String(), "---\n"), "---\n")
	if len(lines) != 2 || len(docs) != 2 {
		t.Fatalf("json:\n%s\nyaml:\n%s", js.String(), ys.String())
	}
	for i := range lines {
		sameDocument(t, "event", lines[i], docs[i])
	}
}
