package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/vault"
)

const validRecordBody = `{
	"type": "pamMachine",
	"title": "db-1",
	"folder": "Shared/Prod",
	"fields": [
		{"type": "login", "value": ["admin"]},
		{"type": "password", "label": "root", "value": ["s3cret"]},
		{"type": "host", "value": [{"hostName": "h", "port": "22"}]}
	],
	"custom": [{"type": "text", "label": "env", "value": ["prod", null, 3, true]}],
	"notes": "rotate monthly",
	"revision": 7
}`

func TestDecodeRecord(t *testing.T) {
	t.Parallel()
	in, err := decodeRecord([]byte(validRecordBody))
	if err != nil {
		t.Fatalf("decodeRecord: %v", err)
	}
	if in.Type != "pamMachine" || in.Title != "db-1" || in.Folder != "Shared/Prod" || in.Notes != "rotate monthly" {
		t.Fatalf("decodeRecord = %+v", in)
	}
	if in.Revision == nil || *in.Revision != 7 {
		t.Fatalf("revision = %v, want 7", in.Revision)
	}
	if len(in.Fields) != 3 || in.Fields[1].Label != "root" || string(in.Fields[1].Value[0]) != `"s3cret"` {
		t.Fatalf("fields = %+v", in.Fields)
	}
	var host map[string]string
	if err := json.Unmarshal(in.Fields[2].Value[0], &host); err != nil || host["hostName"] != "h" || host["port"] != "22" {
		t.Fatalf("host value = %s (%v)", in.Fields[2].Value[0], err)
	}
	if len(in.Custom) != 1 || len(in.Custom[0].Value) != 4 || string(in.Custom[0].Value[1]) != "null" {
		t.Fatalf("custom = %+v", in.Custom)
	}
	rec := in.record("uid-1")
	if rec.UID != "uid-1" || rec.Revision != 7 || rec.Title != "db-1" {
		t.Fatalf("record = %+v", rec)
	}
	if err := rec.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestDecodeRecordAccepts(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{}`,
		" \t\r\n{} \t\r\n",
		`{"type":"login","title":"x"}`,
		`{"revision":null,"fields":null,"custom":[]}`,
		`{"fields":[{"type":"login","value":null}]}`,
		`{"revision":-1}`,
		`{"revision":9223372036854775807}`,
		`{"uid":"abc","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-02T00:00:00.5Z","title":"x"}`, // what a GET answers
	} {
		if _, err := decodeRecord([]byte(body)); err != nil {
			t.Errorf("decodeRecord(%q): %v", body, err)
		}
	}
}

var decodeErrorCases = []struct {
	name, body string
	code       string
	msg        string // a distinctive substring of the message
}{
	{"unknown key", `{"title":"x","passwrd":"y"}`, "unknown_field", `unknown field "passwrd"`},
	{"unknown key in a field", `{"fields":[{"type":"login","lable":"x"}]}`, "unknown_field", `unknown field "lable"`},
	{"unknown key beside the read-only ones", `{"uid":"abc","created_at":"2026-01-01T00:00:00Z","etag":"x"}`, "unknown_field", `unknown field "etag"`},

	{"title number", `{"title":5}`, "malformed_json", "title must be a JSON string, not number"},
	{"type array", `{"type":["login"]}`, "malformed_json", "type must be a JSON string, not array"},
	{"folder object", `{"folder":{}}`, "malformed_json", "folder must be a JSON string, not object"},
	{"notes bool", `{"notes":true}`, "malformed_json", "notes must be a JSON string, not bool"},
	{"fields string", `{"fields":"login"}`, "malformed_json", "fields must be a JSON array, not string"},
	{"fields element number", `{"fields":[5]}`, "malformed_json", "fields.0 must be a JSON object, not number"},
	{"field type number", `{"fields":[{"type":5}]}`, "malformed_json", "fields.0.type must be a JSON string, not number"},
	{"field value string", `{"fields":[{"type":"login","value":"admin"}]}`, "malformed_json", "fields.0.value must be a JSON array, not string"},
	{"custom label bool", `{"custom":[{"type":"text","label":false}]}`, "malformed_json", "custom.0.label must be a JSON string, not bool"},
	{"revision string", `{"revision":"7"}`, "malformed_json", "revision must be a JSON integer, not string"},
	{"revision fraction", `{"revision":1.5}`, "malformed_json", "revision must be a JSON integer, not number 1.5"},
	{"revision in exponent form", `{"revision":1e3}`, "malformed_json", "revision must be a JSON integer, not number 1e3"},
	{"revision overflow", `{"revision":1e30}`, "malformed_json", "revision must be a JSON integer, not number 1e30"},
	{"body array", `[]`, "malformed_json", "the body must be a JSON object, not array"},
	{"body string", `"record"`, "malformed_json", "the body must be a JSON object, not string"},
	{"body number", `42`, "malformed_json", "the body must be a JSON object, not number"},

	{"second object", `{"title":"a"} {"title":"b"}`, "malformed_json", "more than one JSON value"},
	{"second value", `{} 1`, "malformed_json", "more than one JSON value"},
	{"trailing garbage", `{}x`, "malformed_json", "more than one JSON value"},
	{"stray closing brace", `{"title":"a"}}`, "malformed_json", "more than one JSON value"},
	{"stray closing bracket", `{"title":"a"}]`, "malformed_json", "more than one JSON value"},
	{"stray comma", `{},`, "malformed_json", "more than one JSON value"},

	{"empty body", ``, "malformed_json", "the request body is empty"},
	{"blank body", " \n\t", "malformed_json", "the request body is empty"},
	{"truncated object", `{"title":"a"`, "malformed_json", "the body ends too early"},
	{"truncated after colon", `{"title":`, "malformed_json", "the body ends too early"},
	{"truncated string", `{"title":"a`, "malformed_json", "the body ends too early"},
	{"truncated value list", `{"fields":[{"type":"login","value":["a",`, "malformed_json", "the body ends too early"},

	{"single quotes", `{'title':'a'}`, "malformed_json", "malformed JSON at byte 2"},
	{"bad literal in a value", `{"fields":[{"type":"x","value":[tru]}]}`, "malformed_json", "malformed JSON at byte"},
	{"trailing comma", `{"title":"a",}`, "malformed_json", "malformed JSON at byte"},
	{"control character in a string", "{\"title\":\"a\x01\"}", "malformed_json", "malformed JSON at byte"},
}

func TestDecodeRecordErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range decodeErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := decodeRecord([]byte(tc.body))
			if err == nil {
				t.Fatalf("decodeRecord(%q) = %+v, want an error", tc.body, in)
			}
			fe, ok := err.(*fault.Error)
			if !ok {
				t.Fatalf("decodeRecord(%q) error %T %v, want *fault.Error", tc.body, err, err)
			}
			if fe.Kind != fault.Invalid || fe.Code != tc.code {
				t.Fatalf("decodeRecord(%q) error kind %v code %q, want Invalid %s", tc.body, fe.Kind, fe.Code, tc.code)
			}
			if !strings.Contains(fe.Message, tc.msg) {
				t.Fatalf("decodeRecord(%q) message %q, want it to contain %q", tc.body, fe.Message, tc.msg)
			}
		})
	}
}

// TestDecodeRecordNull: a JSON null decodes as an empty input, which then fails validation.
func TestDecodeRecordNull(t *testing.T) {
	t.Parallel()
	in, err := decodeRecord([]byte("null"))
	if err != nil {
		t.Fatalf("decodeRecord(null): %v", err)
	}
	rec := in.record("")
	if err := rec.Validate(); fault.KindOf(err) != fault.Invalid {
		t.Fatalf("Validate of an empty input = %v, want an Invalid error", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(validRecordBody))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"type":"pamUser","title":"u","fields":[{"type":"login","value":["a<b>&"]}],"revision":1}`))
	f.Add([]byte(`{"type":"login","title":"t","fields":[{"type":"password","value":[{"x":1}]}]}`))
	f.Add([]byte(`{"type":"login","title":"t","folder":"a//b","custom":[{"type":"9x"}]}`))
	f.Add([]byte("{\"title\":\"\xff\u2028\"}"))
	for _, tc := range decodeErrorCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := decodeRecord(body)
		if err != nil {
			fe, ok := err.(*fault.Error)
			if !ok || fe.Kind != fault.Invalid || (fe.Code != "malformed_json" && fe.Code != "unknown_field") || fe.Message == "" {
				t.Fatalf("decodeRecord(%q) error %#v, want an Invalid malformed_json or unknown_field *fault.Error", body, err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("decodeRecord accepted invalid JSON %q", body)
		}
		out, err := json.Marshal(in)
		if err != nil {
			t.Fatalf("re-marshal %+v: %v", in, err)
		}
		// The marshalled form decodes again, to the same thing.
		again, err := decodeRecord(out)
		if err != nil {
			t.Fatalf("decodeRecord(%s) of a re-marshalled body: %v", out, err)
		}
		out2, err := json.Marshal(again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the record:\n%s\n%s (%v)", out, out2, err)
		}

		rec := in.record("")
		if err := rec.Validate(); err != nil {
			if fault.KindOf(err) != fault.Invalid {
				t.Fatalf("Validate: %v, want an Invalid error", err)
			}
			return
		}
		if rec.Fields == nil || rec.Custom == nil {
			t.Fatalf("Validate left nil field lists: %+v", rec)
		}
		if _, err := json.Marshal(rec); err != nil {
			t.Fatalf("marshal a valid record: %v", err)
		}
		for _, fs := range [][]vault.Field{rec.Fields, rec.Custom} {
			for _, fld := range fs {
				if fld.Value == nil {
					t.Fatalf("Validate left a nil value list in %+v", fld)
				}
			}
		}
	})
}
