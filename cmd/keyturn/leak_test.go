package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/connector/rest"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/passgen"
	"github.com/keyturn/keyturn/internal/script"
)

// quotedPasswords are the vault's starting passwords: full of what shells, JSON and URLs
// escape. Each becomes a run's old password.
var quotedPasswords = []string{
	`Old'Pw"1\$x` + "`y!z w'Zz9" + `"`,
	`'Okta"Q\u0041'\''2$(id)` + "`x`" + ` &|;<>*?`,
	`Rest'"\\'%41+b "'c` + "`d$e!9Zq",
	`Script'ä"ö\€😀$HOME` + "`" + `!'"'"' 7Kk`,
	`Fail'"\$` + "`" + `!Pw0rd 'x"y`,
}

// xtraceLeakScript is a post-rotation script that prints its passwords under set -x in every
// way scripts commonly do (the lead's leak), and writes its own argv and environment, and its
// parent's, into DUMP.
const xtraceLeakScript = `#!/bin/bash
set -x
IFS= read -r line
params=$(printf '%s' "$line" | base64 -d)
new=$(jq -r .newPassword <<<"$params")
old=$(jq -r .oldPassword <<<"$params")
echo "new=$new old=$old"
printf '%q %q\n' "$new" "$old"
echo "${new@Q}" "${old@Q}"
declare -p new old
login() { :; }
login -u "admin:$old" -d "{\"password\":\"$new\"}"
echo $new $old
jq -n --arg p "$new" --arg o "$old" '{p: $p, o: $o, u: ($p|@uri)}'
printf '%s' "$new" | base64 -w0; echo
printf '%s\n' "$params"
n=$$-$RANDOM
for who in $$ $PPID; do
  cat /proc/$who/cmdline > "DUMP/bash-$n-$who-cmdline" 2>/dev/null
  cat /proc/$who/environ > "DUMP/bash-$n-$who-environ" 2>/dev/null
done
exit 0
`

// pythonLeakScript does the same in Python.
const pythonLeakScript = `#!/usr/bin/env python3
import base64, json, os, sys
p = json.loads(base64.b64decode(sys.stdin.readline()))
print(json.dumps(p["newPassword"]), repr(p["oldPassword"]))
print(json.dumps(p, ensure_ascii=False))
n = "%d-%d" % (os.getpid(), os.getppid())
for who in ("self", str(os.getppid())):
    for what in ("cmdline", "environ"):
        try:
            with open("/proc/%s/%s" % (who, what), "rb") as f, open("DUMP/py-%s-%s-%s" % (n, who, what), "wb") as out:
                out.write(f.read())
        except OSError:
            pass
`

// leakRESTConfig rotates through Okta's admin set-password call and verifies with Authn.
const leakRESTConfig = `{
  "rotate": {"method": "POST", "url": "{{.URL}}/api/v1/users/{{.User}}",
             "headers": {"Authorization": "SSWS {{.AdminSecret}}", "Accept": "application/json"},
             "body": "{\"credentials\": {\"password\": {\"value\": \"{{.NewPassword}}\"}}}", "success": [200]},
  "verify": {"method": "POST", "url": "{{.URL}}/api/v1/authn",
             "body": "{\"username\": \"{{.User}}\", \"password\": \"{{.Password}}\"}", "success": [200], "rejected": [401]}
}`

// leakClient calls a running server's API and keeps every answer to a failing request.
type leakClient struct {
	t      *testing.T
	srv    *server
	errors []string // bodies of 4xx and 5xx answers
}

func (c *leakClient) do(method, path, token string, body any, out any) int {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	status, raw := c.srv.call(c.t, method, path, token, r)
	if status >= 400 {
		c.errors = append(c.errors, fmt.Sprintf("%s %s: %d %s", method, path, status, raw))
	}
	if out != nil && status < 400 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, path, status, raw, err)
		}
	}
	return status
}

func leakRecord(typ, title, login, password string, custom ...map[string]any) map[string]any {
	fields := []map[string]any{{"type": "login", "value": []string{login}}, {"type": "password", "value": []string{password}}}
	if typ == "login" {
		fields = []map[string]any{{"type": "url", "value": []string{login}}, {"type": "password", "value": []string{password}}}
	}
	return map[string]any{"type": typ, "title": title, "folder": "Shared/Leak", "fields": fields, "custom": custom}
}

// TestNoSecretLeaks rotates credentials of every kind with a real server process: native
// Okta, declarative REST and OPA service-user keys against the emulator, and scripts_only,
// each with a bash `set -x` post-rotation script (and a Python one for scripts_only), from
// starting passwords full of quotes, backslashes, $, backticks and spaces, to new ones from a
// complexity whose special characters include them; one rotation fails against the emulator.
// Then it collects every secret the runs knew (each record's password versions, revealed; the
// emulator's tokens and keys; the API key secrets and bearer tokens of two teams) and looks
// for each, raw and in every form of script.Encodings (shell-quoted, JSON-escaped,
// percent-encoded, base64), in every file of the data directory, the server's stdout and
// stderr, both teams' audit trails, /metrics, the bodies of failing requests, every run's exec
// log, and the argv and environment of the scripts and of their parent.
func TestNoSecretLeaks(t *testing.T) {
	t.Parallel()
	// The emulator, in this process.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	orgURL := "http://" + ln.Addr().String()
	emu := emulator.New(emulator.Options{Users: 5, OPATeam: "leak-opa", BaseURL: orgURL})
	emuSrv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = emuSrv.Serve(ln) }()
	t.Cleanup(func() { emu.Close(); _ = emuSrv.Close() })

	// Scripts write their argv and environment here: they run as nobody, with a private /tmp,
	// so the directory is outside /tmp and open to them.
	base, err := os.MkdirTemp("/var/tmp", "keyturn-leak-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dump := filepath.Join(base, "dump")
	if err := os.Mkdir(dump, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dump, base} {
		mode := os.FileMode(0o755)
		if d == dump {
			mode = 0o777
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
	xtrace := strings.ReplaceAll(xtraceLeakScript, "DUMP", dump)
	pyScript := strings.ReplaceAll(pythonLeakScript, "DUMP", dump)

	dir := filepath.Join(t.TempDir(), "data")
	acme := initVault(t, dir)
	srv := startServer(t, "--data", dir)
	c := &leakClient{t: t, srv: srv}
	acmeToken := srv.token(t, acme)
	code, out, errOut := keyturn(t, "team", "add", "--data", dir, "--team", "beta")
	if code != 0 {
		t.Fatalf("team add: %d %s", code, errOut)
	}
	var beta initOutput
	if err := json.Unmarshal([]byte(out), &beta); err != nil {
		t.Fatal(err)
	}
	betaBody, _ := json.Marshal(map[string]string{"key_id": beta.KeyID, "key_secret": beta.KeySecret})
	var betaTok struct {
		BearerToken string `json:"bearer_token"`
	}
	if status, raw := srv.call(t, "POST", "/v1/teams/beta/service_token", "", bytes.NewReader(betaBody)); status != 200 || json.Unmarshal(raw, &betaTok) != nil {
		t.Fatalf("beta token: %d %s", status, raw)
	}
	var newKey struct {
		Secret string `json:"secret"`
	}
	if st := c.do("POST", "/v1/teams/acme/service_users/admin/keys", acmeToken, nil, &newKey); st != 200 || newKey.Secret == "" {
		t.Fatalf("new key: %d", st)
	}

	type created struct {
		UID string `json:"uid"`
	}
	mk := func(team, token string, rec map[string]any) string {
		var cr created
		if st := c.do("POST", "/v1/teams/"+team+"/records", token, rec, &cr); st != http.StatusCreated {
			t.Fatalf("create %v: %d", rec["title"], st)
		}
		return cr.UID
	}
	opaAdminID, opaAdminSecret := emu.AdminKey()
	if _, err := emu.CreateServiceUser("leak-robot"); err != nil {
		t.Fatal(err)
	}
	opaKeyID, opaKeySecret, err := emu.AddServiceUserKey("leak-robot")
	if err != nil {
		t.Fatal(err)
	}
	apiRec := mk("acme", acmeToken, leakRecord("login", "Okta API Access Details", orgURL, emu.Token()))
	restRec := mk("acme", acmeToken, leakRecord("login", "REST endpoint", orgURL, emu.Token(),
		map[string]any{"type": "text", "label": rest.ConfigField, "value": []string{leakRESTConfig}}))
	opaRec := mk("acme", acmeToken, map[string]any{"type": "login", "title": "OPA team admin key", "folder": "Shared/Leak",
		"fields": []map[string]any{{"type": "url", "value": []string{orgURL + "/v1/teams/" + emu.OPATeam()}},
			{"type": "login", "value": []string{opaAdminID}}, {"type": "password", "value": []string{opaAdminSecret}}}})
	mk("beta", betaTok.BearerToken, leakRecord("login", "beta's own", "https://beta.example.com", quotedPasswords[0]+"-beta"))

	quotes := &passgen.Complexity{Length: 28, Caps: 2, Lowercase: 2, Digits: 2, Special: 12, SpecialChars: passgen.DefaultSpecialChars}
	for i, login := range []int{1, 2} {
		if err := emu.SetPassword(emulator.SeedLogin(login), quotedPasswords[i]); err != nil {
			t.Fatal(err)
		}
	}
	type rotated struct {
		name, uid, want string
	}
	var users []rotated
	addUser := func(name, want string, rec map[string]any, settings map[string]any, scripts ...[2]string) {
		uid := mk("acme", acmeToken, rec)
		if st := c.do("PUT", "/v1/teams/acme/records/"+uid+"/rotation", acmeToken, settings, nil); st != 200 {
			t.Fatalf("%s: rotation settings: %d %s", name, st, c.errors[len(c.errors)-1])
		}
		for _, s := range scripts {
			if st := c.do("POST", "/v1/teams/acme/records/"+uid+"/scripts", acmeToken, map[string]any{
				"name": s[0], "content_base64": base64.StdEncoding.EncodeToString([]byte(s[1])), "credential_uids": []string{apiRec},
			}, nil); st != http.StatusCreated {
				t.Fatalf("%s: add script: %d", name, st)
			}
		}
		users = append(users, rotated{name, uid, want})
	}
	bash := [2]string{"xtrace.sh", xtrace}
	addUser("okta-native", "succeeded", leakRecord("pamUser", "okta user", emulator.SeedLogin(1), quotedPasswords[0]),
		map[string]any{"method": "general", "connector": "okta", "resource_uid": apiRec, "complexity": quotes}, bash)
	addUser("rest-declarative", "succeeded", leakRecord("pamUser", "rest user", emulator.SeedLogin(2), quotedPasswords[1]),
		map[string]any{"method": "general", "connector": "rest", "resource_uid": restRec, "complexity": quotes}, bash)
	addUser("opa-key", "succeeded", leakRecord("pamUser", "opa robot", "leak-robot", opaKeySecret,
		map[string]any{"type": "text", "label": "key_id", "value": []string{opaKeyID}}),
		map[string]any{"method": "general", "connector": "opa", "resource_uid": opaRec}, bash)
	addUser("scripts-only", "succeeded", leakRecord("pamUser", "scripted", "scripted@example.com", quotedPasswords[3]),
		map[string]any{"method": "scripts_only", "complexity": quotes}, bash, [2]string{"leak.py", pyScript})
	// The vault's password of user 4 is not Okta's: the change is refused, and neither
	// password works, so the run needs attention.
	addUser("okta-refused", "needs_attention", leakRecord("pamUser", "okta refused", emulator.SeedLogin(4), quotedPasswords[4]),
		map[string]any{"method": "general", "connector": "okta", "resource_uid": apiRec, "complexity": quotes}, bash)

	var runBodies []string
	for _, u := range users {
		times := 2 // twice, so that old passwords are generated ones too
		if u.want != "succeeded" {
			times = 1
		}
		for range times {
			var run struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			}
			st := c.do("POST", "/v1/teams/acme/records/"+u.uid+"/rotate?wait=2m", acmeToken, nil, &run)
			if st != 200 || run.Status != u.want {
				t.Fatalf("%s: rotate: %d %+v, want %s; errors %v", u.name, st, run, u.want, c.errors)
			}
			status, raw := srv.call(t, "GET", "/v1/teams/acme/rotations/"+run.ID, acmeToken, nil)
			if status != 200 {
				t.Fatalf("%s: get run: %d", u.name, status)
			}
			runBodies = append(runBodies, string(raw))
		}
	}
	if !strings.Contains(strings.Join(runBodies, ""), "[REDACTED]") {
		t.Fatal("no exec log shows a redaction: the scripts printed no secret")
	}

	// A few failing requests that carry secrets.
	c.do("POST", "/v1/teams/acme/records", acmeToken, map[string]any{"type": "pamUser", "title": "",
		"fields": []map[string]any{{"type": "password", "value": []string{quotedPasswords[2]}}}}, nil)
	stale := leakRecord("pamUser", "scripted", "scripted@example.com", quotedPasswords[2])
	stale["revision"] = 1
	c.do("PUT", "/v1/teams/acme/records/"+users[3].uid, acmeToken, stale, nil)
	wrong, _ := json.Marshal(map[string]string{"key_id": acme.KeyID, "key_secret": newKey.Secret + "x"})
	c.srv.call(t, "POST", "/v1/teams/beta/service_token", "", bytes.NewReader(wrong))
	c.do("POST", "/v1/teams/acme/service_token", "", map[string]string{"key_id": beta.KeyID, "key_secret": beta.KeySecret}, nil)
	c.do("GET", "/v1/teams/beta/records", acmeToken, nil, nil)
	c.do("GET", "/v1/teams/acme/notation?ref="+strings.ReplaceAll(quotedPasswords[1], " ", "%20"), acmeToken, nil, nil)
	if len(c.errors) < 5 {
		t.Fatalf("only %d failing requests: %v", len(c.errors), c.errors)
	}

	// Every secret the runs knew.
	secrets := map[string]string{
		"acme key": acme.KeySecret, "acme new key": newKey.Secret, "beta key": beta.KeySecret,
		"acme token": acmeToken, "beta token": betaTok.BearerToken,
		"okta token": emu.Token(), "opa admin secret": opaAdminSecret, "opa key": opaKeySecret,
		"beta password": quotedPasswords[0] + "-beta",
	}
	for i, p := range quotedPasswords {
		secrets[fmt.Sprintf("quoted %d", i)] = p
	}
	for _, u := range users {
		var versions struct {
			List []struct {
				Version int64   `json:"version"`
				Value   *string `json:"value"`
			} `json:"list"`
		}
		if st := c.do("GET", "/v1/teams/acme/records/"+u.uid+"/versions?reveal=true", acmeToken, nil, &versions); st != 200 {
			t.Fatalf("%s: versions: %d", u.name, st)
		}
		for _, v := range versions.List {
			if v.Value == nil || *v.Value == "" {
				t.Fatalf("%s: version %d has no value", u.name, v.Version)
			}
			secrets[fmt.Sprintf("%s v%d", u.name, v.Version)] = *v.Value
		}
		if n := len(versions.List); (u.want == "succeeded" && n != 3) || (u.want != "succeeded" && n < 1) {
			t.Fatalf("%s: %d password versions", u.name, n)
		}
	}
	quoted := 0
	for _, s := range secrets {
		if strings.ContainsAny(s, `'"`) {
			quoted++
		}
	}
	if quoted < 10 {
		t.Fatalf("only %d secrets have quotes in them", quoted)
	}

	// Where they must not be.
	places := map[string][]byte{}
	for i, b := range runBodies {
		places[fmt.Sprintf("run %d", i)] = []byte(b)
	}
	for i, e := range c.errors {
		places[fmt.Sprintf("error %d", i)] = []byte(e)
	}
	for _, team := range []struct{ name, token string }{{"acme", acmeToken}, {"beta", betaTok.BearerToken}} {
		status, raw := srv.call(t, "GET", "/v1/teams/"+team.name+"/audit_events?limit=1000", team.token, nil)
		if status != 200 || !bytes.Contains(raw, []byte(`"seq"`)) {
			t.Fatalf("%s audit: %d %s", team.name, status, raw)
		}
		places[team.name+" audit"] = raw
	}
	status, metrics := srv.call(t, "GET", "/metrics", "", nil)
	if status != 200 {
		t.Fatalf("metrics: %d", status)
	}
	places["metrics"] = metrics
	addFiles := func(root, prefix string) int {
		n := 0
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			places[prefix+strings.TrimPrefix(path, root)] = b
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	addFiles(dir, "data (running) ")
	srv.stop(t)
	addFiles(dir, "data (stopped) ")
	places["server stdout"] = srv.stdout.Bytes()
	places["server stderr"] = srv.stderr.Bytes()
	if n := addFiles(dump, "script "); n < 8 {
		t.Fatalf("the scripts wrote only %d argv/environment files into %s", n, dump)
	}
	python := 0
	for place := range places {
		if strings.HasPrefix(place, "script /py-") {
			python++
		}
	}
	if python == 0 {
		t.Fatal("the Python script wrote no argv/environment file")
	}

	// The scan reads what it should: the database holds the titles in clear, the log its lines.
	inData := false
	for place, b := range places {
		inData = inData || strings.HasPrefix(place, "data (stopped) ") && bytes.Contains(b, []byte("okta refused"))
	}
	if !inData || !bytes.Contains(places["server stderr"], []byte(`"serving"`)) {
		t.Fatalf("the scan does not see the database (%v) or the log:\n%s", inData, places["server stderr"])
	}

	// JSON answers hold the text that leaked JSON-escaped: look in their decoded strings too
	// (and for the JSON-escaped forms everywhere, such as in the database).
	for place, b := range places {
		var v any
		if json.Unmarshal(b, &v) == nil {
			places[place+" (decoded)"] = []byte(strings.Join(jsonStrings(v, nil), "\n"))
		}
	}
	for name, s := range secrets {
		var forms []string
		for _, f := range script.Encodings(s) {
			html, _ := json.Marshal(f)
			var plain bytes.Buffer
			enc := json.NewEncoder(&plain)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(f)
			forms = append(forms, f, string(html[1:len(html)-1]), strings.TrimSuffix(plain.String(), "\n")[1:len(plain.String())-2])
		}
		for _, form := range forms {
			for place, b := range places {
				if bytes.Contains(b, []byte(form)) {
					t.Errorf("the %s secret leaks into %s as %q", name, place, form)
				}
			}
		}
	}
}

// jsonStrings appends every string in v, keys included.
func jsonStrings(v any, out []string) []string {
	switch v := v.(type) {
	case string:
		out = append(out, v)
	case []any:
		for _, e := range v {
			out = jsonStrings(e, out)
		}
	case map[string]any:
		for k, e := range v {
			out = jsonStrings(e, append(out, k))
		}
	}
	return out
}
