package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/testenv/jsonkeys"
)

// The README's "Connect a target" section shows the scripts in examples/connect; these tests
// run those very files, unchanged, with bash against a real `keyturn server` and `keyturn
// emulator okta` (and an in-process emulator for the OAuth apps, which the emulator command
// cannot register yet), then check each rotation on the target itself.

// connectEnv is a keyturn server and an emulator, and the environment the scripts run in.
type connectEnv struct {
	t     *testing.T
	root  string // the repository: the scripts run from here, as the README's commands do
	srv   *server
	token string   // a bearer token of the team's admin
	env   []string // KEYTURN_* for the CLI, the emulator's OKTA_*, OPA_* and REST_*, and PATH with keyturn
	bin   string   // the directory of the keyturn on PATH
	dir   string   // where secret files go
}

// newConnectEnv starts a server on a fresh vault and `keyturn emulator okta`, and runs
// examples/connect/emulator-env.sh on the emulator's line, as the README says.
func newConnectEnv(t *testing.T) *connectEnv {
	t.Helper()
	c := newCLIEnv(t)
	line := startEmulatorCommand(t, "--users", "10")
	emuJSON := filepath.Join(c.dir, "emulator.json")
	if err := os.WriteFile(emuJSON, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "examples/connect/emulator-env.sh", filepath.Join(c.dir, "secrets"))
	cmd.Dir, cmd.Env = c.root, c.env
	in, err := os.Open(emuJSON)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stderr = in, &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("emulator-env.sh: %v\n%s", err, stderr.String())
	}
	c.env = append(c.env, exports(t, string(out))...)
	return c
}

// newCLIEnv starts a server on a fresh vault, with the environment the CLI needs to reach it
// as the team's admin.
func newCLIEnv(t *testing.T) *connectEnv {
	t.Helper()
	for _, tool := range []string{"bash", "jq", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the connect scripts need %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	c := &connectEnv{t: t, root: root, dir: t.TempDir()}
	data := filepath.Join(t.TempDir(), "data")
	creds := initVault(t, data)
	c.srv = startServer(t, "--data", data)
	c.token = c.srv.token(t, creds)

	// keyturn on PATH is this test binary, which runs main() when KEYTURN_TEST_MAIN is set.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	c.bin = bin
	if err := os.Symlink(self, filepath.Join(bin, "keyturn")); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYTURN_") && !strings.HasPrefix(kv, "PATH=") {
			c.env = append(c.env, kv)
		}
	}
	c.env = append(c.env, "KEYTURN_TEST_MAIN=1", "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"KEYTURN_ADDR=http://"+c.srv.addr, "KEYTURN_TEAM=acme", "KEYTURN_KEY_ID="+creds.KeyID, "KEYTURN_KEY_SECRET="+creds.KeySecret)
	return c
}

// exports reads the "export NAME=VALUE" lines emulator-env.sh prints (values need no quoting).
func exports(t *testing.T, out string) []string {
	t.Helper()
	var env []string
	for line := range strings.Lines(out) {
		kv, ok := strings.CutPrefix(strings.TrimSpace(line), "export ")
		if !ok || !strings.Contains(kv, "=") || strings.ContainsAny(kv, `'"\ `) {
			t.Fatalf("emulator-env.sh printed %q, not export NAME=VALUE", line)
		}
		env = append(env, kv)
	}
	return env
}

// startEmulatorCommand runs `keyturn emulator okta` and returns the line of JSON it prints; it
// is stopped when the test ends.
func startEmulatorCommand(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"emulator", "okta", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "KEYTURN_TEST_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		defer close(done)
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, r)
		_ = cmd.Wait()
	}()
	select {
	case line := <-lines:
		if line == "" {
			t.Fatalf("keyturn emulator okta printed nothing:\n%s", stderr.String())
		}
		return line
	case <-time.After(30 * time.Second):
		t.Fatal("keyturn emulator okta did not start")
		return ""
	}
}

// with returns the environment with some variables set (later ones win in exec).
func (c *connectEnv) with(kv ...string) []string { return append(append([]string{}, c.env...), kv...) }

// getenv returns a variable of an environment.
func getenv(env []string, name string) string {
	v := ""
	for _, kv := range env {
		if n, val, ok := strings.Cut(kv, "="); ok && n == name {
			v = val
		}
	}
	return v
}

// secretFile writes a secret to a file of mode 0600 and returns its path.
func (c *connectEnv) secretFile(name, value string) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(value), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// run runs a script of examples/connect with bash, from the repository, as the README does.
func (c *connectEnv) run(t *testing.T, env []string, script string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command("bash", "examples/connect/"+script)
	cmd.Dir, cmd.Env = c.root, env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%s: %v", script, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// mustRun runs a script that must succeed.
func (c *connectEnv) mustRun(t *testing.T, env []string, script string) string {
	t.Helper()
	code, stdout, stderr := c.run(t, env, script)
	if code != 0 {
		t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", script, code, stdout, stderr)
	}
	return stdout
}

// api calls the server as the team's admin and decodes the answer into out.
func (c *connectEnv) api(t *testing.T, method, path string, out any) {
	t.Helper()
	status, raw := c.srv.call(t, method, "/v1/teams/acme"+path, c.token, nil)
	if status != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, status, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// vaultUser is a pamUser as the vault holds it after a script ran.
type vaultUser struct {
	UID      string
	Password string
	KeyID    string   // custom field key_id
	Custom   []string // the labels of its custom fields
	Runs     []string
}

// pamUser finds the one record with this title and returns its current password, its key_id
// and the statuses of its rotation runs.
func (c *connectEnv) pamUser(t *testing.T, title string) vaultUser {
	t.Helper()
	var list struct {
		List []struct {
			UID string `json:"uid"`
		} `json:"list"`
	}
	c.api(t, "GET", "/records?title="+url.QueryEscape(title), &list)
	if len(list.List) != 1 {
		t.Fatalf("%d records titled %q, want 1", len(list.List), title)
	}
	u := vaultUser{UID: list.List[0].UID}
	type field struct {
		Type  string            `json:"type"`
		Label string            `json:"label"`
		Value []json.RawMessage `json:"value"`
	}
	var rec struct {
		Fields []field `json:"fields"`
		Custom []field `json:"custom"`
	}
	c.api(t, "GET", "/records/"+u.UID, &rec)
	for _, f := range rec.Custom {
		u.Custom = append(u.Custom, f.Label)
	}
	for _, f := range append(rec.Fields, rec.Custom...) {
		if len(f.Value) == 0 {
			continue
		}
		switch {
		case f.Type == "password" && u.Password == "":
			_ = json.Unmarshal(f.Value[0], &u.Password)
		case f.Label == "key_id":
			_ = json.Unmarshal(f.Value[0], &u.KeyID)
		}
	}
	var runs struct {
		List []struct {
			Status string `json:"status"`
		} `json:"list"`
	}
	c.api(t, "GET", "/rotations?record_uid="+u.UID, &runs)
	for _, r := range runs.List {
		u.Runs = append(u.Runs, r.Status)
	}
	return u
}

// rotated checks that the record rotated once, successfully, away from old.
func (u vaultUser) rotated(t *testing.T, old string) {
	t.Helper()
	if !reflect.DeepEqual(u.Runs, []string{"succeeded"}) {
		t.Errorf("rotation runs %v, want one succeeded", u.Runs)
	}
	if u.Password == "" || u.Password == old {
		t.Errorf("the vault's password did not change")
	}
}

// post sends a JSON body and returns the status and the answer.
func post(t *testing.T, u string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(u, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// oktaAccepts reports whether the org's Authn API accepts a password for a login.
func oktaAccepts(t *testing.T, org, login, password string) bool {
	t.Helper()
	status, raw := post(t, org+"/api/v1/authn", map[string]string{"username": login, "password": password})
	switch {
	case status == http.StatusOK && strings.Contains(string(raw), `"SUCCESS"`):
		return true
	case status == http.StatusUnauthorized:
		return false
	}
	t.Fatalf("authn %s: %d %s", login, status, raw)
	return false
}

// checkOkta checks that Okta takes the vault's new password and refuses the old one.
func checkOkta(t *testing.T, org, login, old string, u vaultUser) {
	t.Helper()
	u.rotated(t, old)
	if !oktaAccepts(t, org, login, u.Password) {
		t.Errorf("Okta refuses the vault's new password of %s", login)
	}
	if oktaAccepts(t, org, login, old) {
		t.Errorf("Okta still accepts the old password of %s", login)
	}
}

// TestConnectExamples runs each script of the README's "Connect a target" section (see above)
// and checks the credential it connected: the rotation succeeded, and the target accepts the
// vault's new credential and no longer the old one.
func TestConnectExamples(t *testing.T) {
	t.Parallel()
	c := newConnectEnv(t)
	org := getenv(c.env, "OKTA_URL")
	seed := func(i int) []string { // OKTA_LOGIN and OKTA_PASSWORD_FILE of seeded user i
		return []string{"OKTA_LOGIN=" + emulator.SeedLogin(i),
			"OKTA_PASSWORD_FILE=" + c.secretFile(fmt.Sprintf("user%d-password", i), emulator.SeedPassword(i))}
	}

	t.Run("okta-ssws", func(t *testing.T) {
		t.Parallel()
		env := c.with(seed(1)...)
		c.mustRun(t, env, "okta-ssws.sh")
		checkOkta(t, org, emulator.SeedLogin(1), emulator.SeedPassword(1), c.pamUser(t, "Okta user "+emulator.SeedLogin(1)))
	})

	t.Run("okta-admin-reset", func(t *testing.T) {
		t.Parallel()
		// The vault's password is out of date: Okta refuses change_password, and only the
		// admin reset that "Okta Admin Reset" = True allows can rotate.
		stale := "Changed-Behind-Our-Back-1"
		env := c.with("OKTA_LOGIN="+emulator.SeedLogin(3), "OKTA_PASSWORD_FILE="+c.secretFile("stale-password", stale))
		c.mustRun(t, env, "okta-admin-reset.sh")
		checkOkta(t, org, emulator.SeedLogin(3), emulator.SeedPassword(3), c.pamUser(t, "Okta user "+emulator.SeedLogin(3)))
	})

	t.Run("rest", func(t *testing.T) {
		t.Parallel()
		login := getenv(c.env, "REST_LOGIN")
		c.mustRun(t, c.env, "rest.sh")
		checkOkta(t, getenv(c.env, "REST_URL"), login, emulator.SeedPassword(2), c.pamUser(t, "REST account "+login))
	})

	t.Run("scripts-only", func(t *testing.T) {
		t.Parallel()
		out := c.mustRun(t, c.with(seed(4)...), "scripts-only.sh")
		if !strings.Contains(out, `"stdin"`) || !strings.Contains(out, `"records"`) {
			t.Errorf("script params did not show what the script reads:\n%s", out)
		}
		checkOkta(t, org, emulator.SeedLogin(4), emulator.SeedPassword(4), c.pamUser(t, "Okta user "+emulator.SeedLogin(4)))
	})

	t.Run("opa", func(t *testing.T) {
		t.Parallel()
		team, name, oldID := getenv(c.env, "OPA_TEAM_URL"), getenv(c.env, "OPA_SERVICE_USER"), getenv(c.env, "OPA_KEY_ID")
		old, err := os.ReadFile(getenv(c.env, "OPA_KEY_SECRET_FILE"))
		if err != nil {
			t.Fatal(err)
		}
		c.mustRun(t, c.env, "opa.sh")
		u := c.pamUser(t, "OPA service user "+name)
		u.rotated(t, string(old))
		if u.KeyID == "" || u.KeyID == oldID {
			t.Errorf("key_id %q: the vault did not take the new key's id", u.KeyID)
		}
		// The rotation replaced the key_id the script stored; a field under another name
		// would be left beside it, and heartbeats, which check the current key, would fail.
		if !reflect.DeepEqual(u.Custom, []string{"key_id"}) {
			t.Errorf("the pamUser's custom fields are %q, want [key_id]", u.Custom)
		}
		exchange := func(id, secret string) int {
			status, _ := post(t, team+"/service_token", map[string]string{"key_id": id, "key_secret": secret})
			return status
		}
		if s := exchange(u.KeyID, u.Password); s != http.StatusOK {
			t.Errorf("OPA answers %d to the vault's new key, want 200", s)
		}
		if s := exchange(oldID, string(old)); s != http.StatusUnauthorized {
			t.Errorf("OPA answers %d to the old key, want 401: it was not deleted", s)
		}
	})

	t.Run("okta-oauth", func(t *testing.T) { testConnectOAuth(t, c) })
}

// testConnectOAuth runs okta-oauth.sh for apps registered in an in-process emulator: an RSA
// key without DPoP, an EC key with DPoP required and a kid, and an app without
// okta.users.manage, which cannot rotate. Its users are seeded users the other scripts do not
// rotate, so that the pamUsers' titles stay unique.
func testConnectOAuth(t *testing.T, c *connectEnv) {
	em := emulator.New(emulator.Options{Users: 10})
	srv := httptest.NewServer(em)
	t.Cleanup(func() {
		em.Close()
		srv.Close()
	})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})
	em.AddOAuthClient(emulator.OAuthClient{ClientID: "0oa-bearer", Keys: []emulator.OAuthKey{{KID: "rsa-1", PublicKey: &rsaKey.PublicKey}}})
	em.AddOAuthClient(emulator.OAuthClient{ClientID: "0oa-dpop", RequireDPoP: true,
		Keys: []emulator.OAuthKey{{KID: "other", PublicKey: &rsaKey.PublicKey}, {KID: "ec-1", PublicKey: &ecKey.PublicKey}}})
	em.AddOAuthClient(emulator.OAuthClient{ClientID: "0oa-read-only", Scopes: []string{emulator.ScopeUsersRead},
		Keys: []emulator.OAuthKey{{KID: "rsa-1", PublicKey: &rsaKey.PublicKey}}})

	cases := []struct {
		name, client, kid string
		key               []byte
		user              int
		ok                bool
	}{
		{"private_key_jwt", "0oa-bearer", "", rsaPEM, 6, true},
		{"dpop", "0oa-dpop", "ec-1", ecPEM, 7, true},
		{"without okta.users.manage", "0oa-read-only", "", rsaPEM, 8, false},
	}
	var mu sync.Mutex // secretFile names
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mu.Lock()
			keyFile := c.secretFile(tc.client+".pem", string(tc.key))
			pwFile := c.secretFile(tc.client+"-password", emulator.SeedPassword(tc.user))
			mu.Unlock()
			env := c.with("OKTA_URL="+srv.URL, "OKTA_CLIENT_ID="+tc.client, "OKTA_KEY_FILE="+keyFile, "OKTA_KEY_ID="+tc.kid,
				"OKTA_LOGIN="+emulator.SeedLogin(tc.user), "OKTA_PASSWORD_FILE="+pwFile)
			login := emulator.SeedLogin(tc.user)
			if !tc.ok {
				code, _, _ := c.run(t, env, "okta-oauth.sh")
				if code == 0 {
					t.Errorf("an app without okta.users.manage rotated")
				}
				if !oktaAccepts(t, srv.URL, login, emulator.SeedPassword(tc.user)) {
					t.Errorf("the password changed")
				}
				return
			}
			c.mustRun(t, env, "okta-oauth.sh")
			u := c.pamUser(t, "Okta user "+login)
			checkOkta(t, srv.URL, login, emulator.SeedPassword(tc.user), u)
			if pw, _ := em.Password(login); pw != u.Password {
				t.Errorf("the emulator holds another password than the vault")
			}
		})
	}
}

// TestScriptParamsShowWhatTheScriptReads compares `keyturn script params --reveal -o json`
// with what a real script received on stdin in the rotation that followed: stdin is that line
// (but for the new password), params the object it decodes to, with records the base64 string
// the script gets, and records that string decoded.
func TestScriptParamsShowWhatTheScriptReads(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	capture := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	}))
	defer capture.Close()

	c := newCLIEnv(t)
	kt := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(c.bin, "keyturn"), args...)
		cmd.Env, cmd.Stdin = c.env, strings.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("keyturn %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return strings.TrimSpace(string(out))
	}
	cred := kt("tok-<&>-1", "record", "create", "--type", "login", "--title", "Record with Access Token",
		"--field", "url=https://api.example.com", "--field", "password=-")
	user := kt("Old-Pass-1!", "record", "create", "--type", "pamUser", "--title", "Alice",
		"--field", "login=alice@example.com", "--field", "password=-", "--custom", "env=prod")
	kt("", "rotation", "set", user, "--method", "scripts_only")
	script := filepath.Join(c.dir, "capture.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec curl --silent --show-error --fail --data-binary @- "+capture.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kt("", "script", "add", user, "--file", script, "--credential", cred)
	raw := kt("", "script", "params", user, "--reveal", "-o", "json")
	kt("", "rotate", user, "--wait")

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("the script ran %d times, want 1", len(got))
	}
	line := strings.TrimSuffix(got[0], "\n")
	received, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		t.Fatalf("stdin is not base64: %v", err)
	}

	var shown struct {
		Stdin   string          `json:"stdin"`
		Params  json.RawMessage `json:"params"`
		Records json.RawMessage `json:"records"`
	}
	if err := json.Unmarshal([]byte(raw), &shown); err != nil {
		t.Fatalf("script params: %v\n%s", err, raw)
	}
	if shown.Stdin == "" || len(shown.Params) == 0 || len(shown.Records) == 0 {
		t.Fatalf("script params does not show the stdin line, its params and the records decoded:\n%s", raw)
	}
	// Equal but for newPassword, which params shows as a placeholder.
	object := func(what string, b []byte) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s is not a JSON object: %v\n%s", what, err, b)
		}
		if _, ok := m["newPassword"].(string); !ok {
			t.Fatalf("%s has no newPassword: %s", what, b)
		}
		m["newPassword"] = ""
		return m
	}
	want := object("what the script read", received)
	if params := object("params", shown.Params); !reflect.DeepEqual(params, want) {
		t.Errorf("params is not what the script decoded from stdin:\nparams %s\nscript %s", shown.Params, received)
	}
	if keys, wantKeys := jsonkeys.Of(t, shown.Params), jsonkeys.Of(t, received); !reflect.DeepEqual(keys, wantKeys) {
		t.Errorf("params keys %v, the script's %v", keys, wantKeys)
	}
	stdin, err := base64.StdEncoding.DecodeString(shown.Stdin)
	if err != nil {
		t.Fatalf("stdin is not base64: %v", err)
	}
	if m := object("stdin", stdin); !reflect.DeepEqual(m, want) {
		t.Errorf("stdin is not the line the script read:\nstdin  %s\nscript %s", stdin, received)
	}
	records, _ := want["records"].(string)
	var shownRecords any
	if err := json.Unmarshal(shown.Records, &shownRecords); err != nil {
		t.Fatal(err)
	}
	if decoded := decodeB64JSON(t, records); !reflect.DeepEqual(shownRecords, decoded) {
		t.Errorf("records is not params.records decoded:\nshown  %s\nscript %v", shown.Records, decoded)
	}
	for _, v := range []string{"tok-<&>-1", "Old-Pass-1!", "prod"} {
		if !strings.Contains(raw, v) { // unescaped: as the script decodes it
			t.Errorf("records does not show %q: %s", v, shown.Records)
		}
	}
}

// decodeB64JSON decodes base64 of JSON into a value.
func decodeB64JSON(t *testing.T, s string) any {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("not base64: %v", err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}
