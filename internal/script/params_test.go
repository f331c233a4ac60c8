package script

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/jsonkeys"
	"github.com/keyturn/keyturn/internal/vault"
)

// fixture returns params exercising every rule of the protocol, and the records array and
// params object the script must receive (records shown decoded; the object with "RECORDS" in
// place of the records' base64).
func fixture() (p Params, records, object string) {
	cfg := vault.Record{UID: "cfgUID", Type: "pamConfiguration", Title: "Config",
		Fields: []vault.Field{
			fld("text", "region", `"eu"`),
			fld("fileRef", "rotationScripts", `"file1"`),
			fld("script", "rotationScripts", `{"fileRef":"f","recordRef":["c1UID"],"command":""}`),
		},
		Custom: []vault.Field{fld("secret", "api secret", `"cfgSecret"`)},
	}
	res := vault.Record{UID: "resUID", Type: "pamDirectory", Title: "Directory",
		Fields: []vault.Field{
			fld("login", "", `"admin"`),
			fld("password", "", `"resPw1"`),
			fld("password", "", `"resPw2"`),
			fld("password", "", `"resPw3"`),
			fld("host", "", `{ "hostName": "dir.example.com", "port": "636" }`),
			fld("url", "", `"https://a.example.com"`, `"https://b.example.com"`),
			fld("text", "empty"),
		},
		Custom: []vault.Field{
			fld("text", "uid", `"not-the-uid"`),
			fld("text", "title", `"not-the-title"`),
			fld("text", "title", `"again"`),
			fld("pinCode", "", `"1234"`),
			fld("script", "rotationScripts", `{"fileRef":"g","recordRef":[],"command":"bash"}`),
		},
	}
	c1 := vault.Record{UID: "c1UID", Type: "login", Title: "Record with Access Token",
		Fields: []vault.Field{fld("url", "", `"https://api.example.com"`), fld("password", "", `"token-123"`)}}
	c3 := vault.Record{UID: "c3UID", Type: "login", Title: "Other",
		Fields: []vault.Field{fld("login", "", `"bob"`), fld("password", "Password", `"bobPw"`), fld("password", "spare")},
		Custom: []vault.Field{
			fld("keyPair", "", `{"publicKey":"PUB","privateKey":"PRIV"}`),
			fld("oneTimeCode", "", `"otpauth://totp/x?secret=JBSWY3DP&issuer=x"`),
			fld("text", "copy of pw", `"resPw2"`),
		}}
	user := vault.Record{UID: "usrUID", Type: "pamUser", Title: "Alice",
		Fields: []vault.Field{fld("login", "", `"alice@example.com"`), fld("password", "", `"vault-current"`), fld("text", "note", `"a\"b<c>&"`)},
		Custom: []vault.Field{fld("text", "NOOP", `"True"`)}}
	p = Params{Configuration: &cfg, Resource: &res, Credentials: []vault.Record{c1, res, c3}, User: user,
		NewPassword: secret.FromString("N3w-Pass!"), OldPassword: secret.FromString("0ld-Pass?")}
	records = `[` +
		`{"uid":"cfgUID","title":"Config","region":"eu","api secret":"cfgSecret"},` +
		`{"uid":"resUID","title":"Directory","login":"admin","password":"resPw1","password2":"resPw2","password3":"resPw3",` +
		`"host":{"hostName":"dir.example.com","port":"636"},"url":["https://a.example.com","https://b.example.com"],"empty":"",` +
		`"uid2":"not-the-uid","title2":"not-the-title","title3":"again","pinCode":"1234"},` +
		`{"uid":"c1UID","title":"Record with Access Token","url":"https://api.example.com","password":"token-123"},` +
		`{"uid":"c3UID","title":"Other","login":"bob","Password":"bobPw","spare":"","keyPair":{"publicKey":"PUB","privateKey":"PRIV"},` +
		`"oneTimeCode":"otpauth://totp/x?secret=JBSWY3DP&issuer=x","copy of pw":"resPw2"},` +
		`{"uid":"usrUID","title":"Alice","login":"alice@example.com","password":"0ld-Pass?","note":"a\"b<c>&","NOOP":"True"}` +
		`]`
	object = `{"providerRecordUid":"cfgUID","resourceRecordUid":"resUID","userRecordUid":"usrUID",` +
		`"newPassword":"N3w-Pass!","oldPassword":"0ld-Pass?","user":"alice@example.com","records":RECORDS}`
	return p, records, object
}

// TestProtocol runs a script that dumps its stdin and checks, byte for byte, what it received.
func TestProtocol(t *testing.T) {
	t.Parallel()
	p, wantRecords, wantObject := fixture()
	dump := filepath.Join(sharedDir(t), "stdin")
	r := newTestRunner(t, Options{})
	res, err := run(t, r, Script{Name: "dump.sh", Content: []byte("#!/bin/sh\ncat > '" + dump + "'\n")}, p)
	if err != nil || res.ReturnCode != 0 {
		t.Fatalf("run: %+v, %v", res, err)
	}
	got, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := p.Line()
	if string(got) != line.Reveal()+"\n" {
		t.Fatalf("stdin is not the line and one newline: %q", got)
	}
	if strings.Count(string(got), "\n") != 1 {
		t.Fatalf("stdin has %d newlines", strings.Count(string(got), "\n"))
	}
	params, records := decodeLine(t, strings.TrimSuffix(string(got), "\n"))
	if string(records) != wantRecords {
		t.Errorf("records:\n got %s\nwant %s", records, wantRecords)
	}
	if keys := jsonkeys.Of(t, params); !slices.Equal(keys, []string{"providerRecordUid", "resourceRecordUid", "userRecordUid", "newPassword", "oldPassword", "user", "records"}) {
		t.Errorf("params keys: %v", keys)
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(wantRecords))
	if want := strings.Replace(wantObject, "RECORDS", q(b64), 1); string(params) != want {
		t.Errorf("params:\n got %s\nwant %s", params, want)
	}
}

// TestProtocolReaders checks the line with the reading patterns of Keeper's examples: bash
// `IFS= read -r` (one line, then EOF) with base64 -d and jq, and Python iterating sys.stdin.
func TestProtocolReaders(t *testing.T) {
	t.Parallel()
	need(t, "bash", "jq", "base64")
	p, _, _ := fixture()
	r := newTestRunner(t, Options{})
	sh := `#!/bin/bash
set -o pipefail -e
IFS= read -r params
if IFS= read -r more || [ -n "$more" ]; then echo "more input: $more"; exit 3; fi
json=$(echo "$params" | base64 -d)
$(echo "$json" | jq -r 'keys[] as $k | "export \($k)=\(.[$k])"')
echo "user=$user provider=$providerRecordUid resource=$resourceRecordUid userUid=$userRecordUid"
echo "$records" | base64 -d | jq -r '.[] | .uid + " " + (.password // "-")'
`
	res, err := run(t, r, Script{Name: "read.sh", Content: []byte(sh)}, p)
	if err != nil || res.ReturnCode != 0 {
		t.Fatalf("run: %+v, %v", res, err)
	}
	// The passwords are secrets: redacted in the output.
	want := "user=alice@example.com provider=cfgUID resource=resUID userUid=usrUID\n" +
		"cfgUID -\nresUID [REDACTED]\nc1UID [REDACTED]\nc3UID -\nusrUID [REDACTED]\n"
	if res.Stdout != want {
		t.Errorf("bash reader:\n got %q\nwant %q\nstderr %s", res.Stdout, want, res.Stderr)
	}

	need(t, "python3")
	py := `#!/usr/bin/env python3
import sys, base64, json
lines = list(sys.stdin)
assert len(lines) == 1 and lines[0].endswith("\n"), lines
params = json.loads(base64.b64decode(lines[0]).decode())
records = json.loads(base64.b64decode(params["records"]).decode())
print(len(records), [r["title"] for r in records], records[-1]["login"], records[-1]["NOOP"])
`
	res, err = run(t, r, Script{Name: "read.py", Content: []byte(py)}, p)
	if err != nil || res.ReturnCode != 0 {
		t.Fatalf("run: %+v, %v", res, err)
	}
	if want := "5 ['Config', 'Directory', 'Record with Access Token', 'Other', 'Alice'] alice@example.com True\n"; res.Stdout != want {
		t.Errorf("python reader:\n got %q\nwant %q\nstderr %s", res.Stdout, want, res.Stderr)
	}
}

// TestRecordsOrder checks the order without a configuration or a resource, and that a pamUser
// that is also a credential appears once, at its first place, with the old password.
func TestRecordsOrder(t *testing.T) {
	t.Parallel()
	user := vault.Record{UID: "u", Title: "User", Type: "pamUser", Fields: []vault.Field{fld("login", "", `"jo"`), fld("password", "", `"cur"`)}}
	other := vault.Record{UID: "o", Title: "Other", Fields: []vault.Field{fld("password", "", `"x"`)}}
	p := Params{Credentials: []vault.Record{user, other, other}, User: user, NewPassword: secret.FromString("new"), OldPassword: secret.FromString("old")}
	line, err := p.Line()
	if err != nil {
		t.Fatal(err)
	}
	params, records := decodeLine(t, line.Reveal())
	if want := `[{"uid":"u","title":"User","login":"jo","password":"old"},{"uid":"o","title":"Other","password":"x"}]`; string(records) != want {
		t.Errorf("records:\n got %s\nwant %s", records, want)
	}
	var obj map[string]string
	if err := json.Unmarshal(params, &obj); err != nil {
		t.Fatal(err)
	}
	if obj["providerRecordUid"] != "" || obj["resourceRecordUid"] != "" || obj["userRecordUid"] != "u" || obj["user"] != "jo" {
		t.Errorf("params: %v", obj)
	}

	// A pamUser without a password field still gets one, with the old password; with no old
	// password, it is empty.
	bare := vault.Record{UID: "b", Title: "Bare", Fields: []vault.Field{fld("login", "", `"jo"`)}, Custom: []vault.Field{fld("text", "password", `"custom"`)}}
	line, err = Params{User: bare}.Line()
	if err != nil {
		t.Fatal(err)
	}
	if _, records := decodeLine(t, line.Reveal()); string(records) != `[{"uid":"b","title":"Bare","login":"jo","password":"","password2":"custom"}]` {
		t.Errorf("records: %s", records)
	}

	// A pamUser without a UID is still the pamUser.
	line, err = Params{User: vault.Record{Title: "No UID", Fields: []vault.Field{fld("password", "", `"cur"`)}}, OldPassword: secret.FromString("old")}.Line()
	if err != nil {
		t.Fatal(err)
	}
	if _, records := decodeLine(t, line.Reveal()); string(records) != `[{"uid":"","title":"No UID","password":"old"}]` {
		t.Errorf("records: %s", records)
	}

	// A value that is not JSON is refused, naming no value.
	badRec := vault.Record{UID: "bad", Fields: []vault.Field{fld("text", "", `{"secret`)}}
	if _, err := (Params{User: badRec}).Line(); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad JSON: %v", err)
	}
}

// TestDecoded checks `keyturn script params`: it shows what the script reads, layer by layer:
// the stdin line, the params object it decodes to (records still a base64 string, as the
// script receives it) and the records decoded; masked and revealed.
func TestDecoded(t *testing.T) {
	t.Parallel()
	p, records, object := fixture()
	got, err := p.Decoded(true)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := p.Line()
	params := strings.Replace(object, "RECORDS", q(base64.StdEncoding.EncodeToString([]byte(records))), 1)
	if want := `{"stdin":` + q(line.Reveal()) + `,"params":` + params + `,"records":` + records + `}`; string(got) != want {
		t.Errorf("revealed:\n got %s\nwant %s", got, want)
	}
	got, err = p.Decoded(false)
	if err != nil {
		t.Fatal(err)
	}
	maskedRecords := `[` +
		`{"uid":"cfgUID","title":"Config","region":"eu","api secret":"********"},` +
		`{"uid":"resUID","title":"Directory","login":"admin","password":"********","password2":"********","password3":"********",` +
		`"host":{"hostName":"dir.example.com","port":"636"},"url":["https://a.example.com","https://b.example.com"],"empty":"",` +
		`"uid2":"not-the-uid","title2":"not-the-title","title3":"again","pinCode":"********"},` +
		`{"uid":"c1UID","title":"Record with Access Token","url":"https://api.example.com","password":"********"},` +
		`{"uid":"c3UID","title":"Other","login":"bob","Password":"********","spare":"","keyPair":"********",` +
		`"oneTimeCode":"********","copy of pw":"********"},` +
		`{"uid":"usrUID","title":"Alice","login":"alice@example.com","password":"********","note":"a\"b<c>&","NOOP":"True"}]`
	maskedParams := `{"providerRecordUid":"cfgUID","resourceRecordUid":"resUID","userRecordUid":"usrUID",` +
		`"newPassword":"********","oldPassword":"********","user":"alice@example.com","records":` +
		q(base64.StdEncoding.EncodeToString([]byte(maskedRecords))) + `}`
	want := `{"stdin":` + q(base64.StdEncoding.EncodeToString([]byte(maskedParams))) + `,"params":` + maskedParams +
		`,"records":` + maskedRecords + `}`
	if string(got) != want {
		t.Errorf("masked:\n got %s\nwant %s", got, want)
	}
	var shown struct{ Stdin, Params, Records json.RawMessage }
	if err := json.Unmarshal(got, &shown); err != nil {
		t.Fatal(err)
	}
	for _, s := range SecretsOf(p) {
		if strings.Contains(string(got), s.Reveal()) {
			t.Errorf("masked output holds %q", s.Reveal())
		}
	}
	// The masked layers hold no secret once decoded either.
	params2, records2 := decodeLine(t, string(jsonUnquote(t, shown.Stdin)))
	for _, s := range SecretsOf(p) {
		if strings.Contains(string(params2), s.Reveal()) || strings.Contains(string(records2), s.Reveal()) {
			t.Errorf("masked stdin decodes to %q", s.Reveal())
		}
	}
}

func jsonUnquote(t *testing.T, raw json.RawMessage) []byte {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

// TestSecretsOf checks the secrets given to the Redactor.
func TestSecretsOf(t *testing.T) {
	t.Parallel()
	p, _, _ := fixture()
	var got []string
	for _, s := range SecretsOf(p) {
		got = append(got, s.Reveal())
	}
	want := []string{"N3w-Pass!", "0ld-Pass?", "cfgSecret", "resPw1", "resPw2", "resPw3", "1234", "token-123", "bobPw",
		"PRIV", "otpauth://totp/x?secret=JBSWY3DP&issuer=x", "JBSWY3DP", "vault-current"}
	if !slices.Equal(got, want) {
		t.Errorf("SecretsOf:\n got %q\nwant %q", got, want)
	}
	if n := len(SecretsOf(Params{User: vault.Record{UID: "u"}})); n != 0 {
		t.Errorf("no secrets: got %d", n)
	}
}

// TestRunStdinEmpty checks that an empty stdin gives EOF at once.
func TestRunStdinEmpty(t *testing.T) {
	t.Parallel()
	r := newTestRunner(t, Options{})
	res, err := r.Run(context.Background(), Script{Name: "wc", Content: []byte("#!/bin/sh\nwc -c\n")}, secret.Secret{}, nil)
	if err != nil || strings.TrimSpace(res.Stdout) != "0" {
		t.Fatalf("%+v %v", res, err)
	}
}
