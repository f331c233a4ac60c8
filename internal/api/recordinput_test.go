package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/testenv"
)

const records = "/v1/teams/acme/records"

// getRaw GETs a record as a generic JSON object, as a client that round-trips it would.
func getRaw(t *testing.T, env *testenv.Env, name string) map[string]any {
	t.Helper()
	var body map[string]any
	if st := env.Do(t, "GET", records+"/"+url.PathEscape(name), nil, &body); st != http.StatusOK {
		t.Fatalf("GET %s: %d", name, st)
	}
	return body
}

// TestFieldTypeOutsideTheModelIsRefused: a field type that is not one of the record model's
// (vault.FieldTypes) is a 400 invalid_request naming it and the allowed types, on create and
// update, in fields and custom fields; labels stay free text (keyturn issue 12).
func TestFieldTypeOutsideTheModelIsRefused(t *testing.T) {
	env := testenv.Start(t)
	for _, body := range []map[string]any{
		{"type": "login", "title": "x", "fields": []map[string]any{{"type": "nosuchtype", "value": []string{"v"}}}},
		{"type": "login", "title": "x", "custom": []map[string]any{{"type": "nosuchtype", "label": "env", "value": []string{"v"}}}},
		{"type": "login", "title": "x", "fields": []map[string]any{{"type": "Password", "value": []string{"v"}}}}, // types are case-sensitive
	} {
		e := wantError(t, env, "POST", records, env.Token, body, 400, "invalid_request")
		for _, want := range []string{"unknown field type", "login", "password", "oneTimeCode", "pamHostname"} {
			if !strings.Contains(e.Message, want) {
				t.Errorf("message %q lacks %q", e.Message, want)
			}
		}
	}
	// Labels are free: any text, including a word that is no type.
	rec := create(t, env, map[string]any{"type": "login", "title": "labels", "fields": []map[string]any{
		{"type": "text", "label": "nosuchtype / any label at all", "value": []string{"v"}},
		{"type": "pamHostname", "value": []map[string]string{{"hostName": "h", "port": "22"}}},
	}, "custom": []map[string]any{{"type": "text", "label": "Ünïcödé label", "value": []string{"v"}}}})

	// Update refuses an unknown type too, and changes nothing.
	body := getRaw(t, env, rec.UID)
	body["fields"] = []map[string]any{{"type": "nosuchtype", "value": []string{"v"}}}
	wantError(t, env, "PUT", records+"/"+rec.UID, env.Token, body, 400, "invalid_request")
	if got := getRaw(t, env, rec.UID); got["revision"].(float64) != 1 {
		t.Fatalf("a refused update changed the record: %v", got)
	}
	var list struct{ List []record }
	env.Do(t, "GET", records, nil, &list)
	if len(list.List) != 1 {
		t.Fatalf("refused records were stored: %+v", list.List)
	}
}

// TestPutTakesWhatGetAnswers: a record read with GET, changed and PUT back as it is is
// accepted; its uid must be the path's, its timestamps are ignored, and a key GET never
// answers is still refused (keyturn issue 12).
func TestPutTakesWhatGetAnswers(t *testing.T) {
	env := testenv.Start(t)
	rec := create(t, env, pamUser("carol", "pw-1"))
	body := getRaw(t, env, rec.UID)
	for _, k := range []string{"uid", "created_at", "updated_at", "revision"} {
		if _, ok := body[k]; !ok {
			t.Fatalf("GET answers no %s: %v", k, body)
		}
	}
	created := body["created_at"]
	body["title"] = "carol (prod)"
	body["fields"].([]any)[1].(map[string]any)["value"] = []string{"pw-2"}
	body["created_at"] = "1999-01-01T00:00:00Z" // ignored, as is updated_at
	var updated map[string]any
	if resp, raw := env.Raw(t, "PUT", records+"/"+rec.UID, env.Token, body); resp.StatusCode != 200 || json.Unmarshal(raw, &updated) != nil {
		t.Fatalf("PUT of the body GET answered: %d %s", resp.StatusCode, raw)
	}
	if updated["title"] != "carol (prod)" || updated["revision"].(float64) != 2 || updated["uid"] != rec.UID || updated["created_at"] != created {
		t.Fatalf("updated %v", updated)
	}
	var val struct{ Value string }
	env.Do(t, "GET", "/v1/teams/acme/notation?ref=keeper://"+rec.UID+"/field/password", nil, &val)
	if val.Value != "pw-2" {
		t.Fatalf("password after the round trip: %q", val.Value)
	}

	// Another record's uid in the body: 400, nothing changes.
	other := create(t, env, pamUser("dave", "pw-d"))
	body = getRaw(t, env, rec.UID)
	body["uid"], body["title"] = other.UID, "hijack"
	e := wantError(t, env, "PUT", records+"/"+rec.UID, env.Token, body, 400, "invalid_request")
	if !strings.Contains(e.Message, "uid") || !strings.Contains(e.Message, other.UID) {
		t.Errorf("uid mismatch message %q", e.Message)
	}
	for uid, title := range map[string]string{rec.UID: "carol (prod)", other.UID: "dave"} {
		if got := getRaw(t, env, uid); got["title"] != title || got["revision"].(float64) > 2 {
			t.Fatalf("a refused PUT changed %s: %v", uid, got)
		}
	}

	// Keys GET never answers are still refused.
	body = getRaw(t, env, rec.UID)
	body["etag"] = "x"
	wantError(t, env, "PUT", records+"/"+rec.UID, env.Token, body, 400, "unknown_field")

	// A new record's uid is the server's to choose.
	body = getRaw(t, env, rec.UID)
	delete(body, "revision")
	wantError(t, env, "POST", records, env.Token, body, 400, "invalid_request")
	delete(body, "uid")
	if st := env.Do(t, "POST", records, body, nil); st != http.StatusCreated {
		t.Fatalf("POST of a GET body without its uid: %d", st)
	}
}

// TestRecordRefusesInvisibleCharacters: titles, folders and labels refuse bidirectional
// controls and other invisible format characters, naming the field, on create and update;
// the zero-width joiner of emoji sequences stays allowed (keyturn issue 12).
func TestRecordRefusesInvisibleCharacters(t *testing.T) {
	env := testenv.Start(t)
	base := func() map[string]any {
		return map[string]any{"type": "login", "title": "plain", "folder": "Shared",
			"fields": []map[string]any{{"type": "text", "label": "env", "value": []string{"v"}}}}
	}
	cases := []struct {
		name, key, value, field, char string
	}{
		{"RLO in title", "title", "invoice\u202Efdp.exe", "title", "U+202E"},
		{"LRI in title", "title", "a\u2066b", "title", "U+2066"},
		{"zero-width space in title", "title", "ad\u200Bmin", "title", "U+200B"},
		{"BOM in title", "title", "\uFEFFadmin", "title", "U+FEFF"},
		{"line separator in title", "title", "a\u2028b", "title", "U+2028"},
		{"RLO in folder", "folder", "Shared/\u202Ekoo", "folder", "U+202E"},
		{"LRM in folder", "folder", "Shared\u200E/Okta", "folder", "U+200E"},
		{"RLO in a label", "label", "e\u202Env", "fields[0].label", "U+202E"},
	}
	set := func(body map[string]any, key, value string) {
		if key == "label" {
			body["fields"].([]map[string]any)[0]["label"] = value
			return
		}
		body[key] = value
	}
	for _, c := range cases {
		body := base()
		set(body, c.key, c.value)
		e := wantError(t, env, "POST", records, env.Token, body, 400, "invalid_request")
		if !strings.HasPrefix(e.Message, c.field+" ") || !strings.Contains(e.Message, c.char) {
			t.Errorf("create, %s: message %q does not name %s and %s", c.name, e.Message, c.field, c.char)
		}
	}
	rec := create(t, env, base())
	for _, c := range cases {
		body := getRaw(t, env, rec.UID)
		body["fields"] = []map[string]any{{"type": "text", "label": "env", "value": []string{"v"}}}
		set(body, c.key, c.value)
		e := wantError(t, env, "PUT", records+"/"+rec.UID, env.Token, body, 400, "invalid_request")
		if !strings.HasPrefix(e.Message, c.field+" ") || !strings.Contains(e.Message, c.char) {
			t.Errorf("update, %s: message %q does not name %s and %s", c.name, e.Message, c.field, c.char)
		}
	}
	if got := getRaw(t, env, rec.UID); got["revision"].(float64) != 1 || got["title"] != "plain" {
		t.Fatalf("refused updates changed the record: %v", got)
	}
	// Visible text stays allowed: CJK, accents, and emoji joined by U+200D.
	ok := base()
	ok["title"], ok["folder"] = "管理者 👩\u200D💻 Jürgen", "Équipe/運用"
	create(t, env, ok)
	var list struct{ List []record }
	env.Do(t, "GET", records, nil, &list)
	titles := []string{}
	for _, r := range list.List {
		titles = append(titles, r.Title)
	}
	slices.Sort(titles)
	if want := []string{"plain", "管理者 👩\u200D💻 Jürgen"}; !slices.Equal(titles, want) {
		t.Fatalf("stored titles %q, want %q", titles, want)
	}
}
