package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/testenv/mariadbtest"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
	"github.com/keyturn/keyturn/internal/testenv/procs"
	"github.com/keyturn/keyturn/internal/testenv/tlscert"
)

// TestMain lets the tests run the real binary: the test executable re-runs itself as keyturn
// when KEYTURN_TEST_MAIN is set.
func TestMain(m *testing.M) {
	if os.Getenv("KEYTURN_TEST_MAIN") == "1" {
		main()
		return
	}
	code := pgtest.Main(m)
	mariadbtest.Stop()
	os.Exit(code)
}

// keyturn runs a command in-process and returns its exit code, stdout and stderr.
func keyturn(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

type initOutput struct {
	TeamName    string `json:"team_name"`
	ServiceUser string `json:"service_user"`
	KeyID       string `json:"key_id"`
	KeySecret   string `json:"key_secret"`
}

func initVault(t *testing.T, dir string, extra ...string) initOutput {
	t.Helper()
	code, out, errOut := keyturn(t, append([]string{"init", "--data", dir, "--team", "acme"}, extra...)...)
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, errOut)
	}
	var creds initOutput
	if err := json.Unmarshal([]byte(out), &creds); err != nil {
		t.Fatalf("init output %q: %v", out, err)
	}
	return creds
}

// server is a keyturn server running as a child process.
type server struct {
	cmd    *exec.Cmd
	addr   string
	stdout *bytes.Buffer // read it only once the server exited
	stderr *bytes.Buffer // read it only once the server exited
	exited chan error
}

func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"server", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(procs.QuickExit(os.Environ()), "KEYTURN_TEST_MAIN=1")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := &bytes.Buffer{}
	cmd.Stdout = stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stdout: stdout, stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			s.stderr.WriteString(line + "\n")
			var entry struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "serving" {
				addr <- entry.Addr
			}
		}
		s.exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	select {
	case s.addr = <-addr:
	case err := <-s.exited:
		t.Fatalf("server exited early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	return s
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("server exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop")
	}
}

func (s *server) call(t *testing.T, method, path, token string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func (s *server) token(t *testing.T, creds initOutput) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"key_id": creds.KeyID, "key_secret": creds.KeySecret})
	status, raw := s.call(t, "POST", "/v1/teams/acme/service_token", "", bytes.NewReader(body))
	if status != http.StatusOK {
		t.Fatalf("service_token: %d %s", status, raw)
	}
	var tok struct {
		BearerToken string `json:"bearer_token"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil {
		t.Fatal(err)
	}
	return tok.BearerToken
}

// rawFiles returns the bytes of the database and its -wal and -shm files (those that exist).
func rawFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, name := range []string{"keyturn.db", "keyturn.db-wal", "keyturn.db-shm"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			out[name] = b
		}
	}
	if len(out) == 0 {
		t.Fatal("no database files")
	}
	return out
}

func assertNoPlaintext(t *testing.T, files map[string][]byte, values ...string) {
	t.Helper()
	for name, b := range files {
		for _, v := range values {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s contains the plaintext %q", name, v)
			}
		}
	}
}

func TestPasswordSurvivesRestartAndNeverHitsDiskInClear(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	creds := initVault(t, dir)
	srv := startServer(t, "--data", dir)
	token := srv.token(t, creds)

	password := "Pässwörd \"quoted\" \\ back\tslash 🔑 <&> '" + strings.Repeat("x", 40)
	record := map[string]any{
		"type": "pamUser", "title": "Okta admin", "folder": "Shared/Okta",
		"fields": []map[string]any{
			{"type": "login", "value": []string{"okta-admin-login@example.com"}},
			{"type": "password", "value": []string{password}},
			{"type": "url", "value": []string{"https://secret-org-url.okta.example"}},
			{"type": "host", "value": []map[string]string{{"hostName": "hidden-host.internal", "port": "2222"}}},
		},
		"custom": []map[string]any{{"type": "secret", "label": "api token", "value": []string{"SSWS-custom-token-value"}}},
		"notes":  "notes that must stay sealed",
	}
	plaintexts := []string{password, "okta-admin-login@example.com", "secret-org-url.okta.example",
		"hidden-host.internal", "SSWS-custom-token-value", "notes that must stay sealed", "api token",
		creds.KeySecret, token}
	body, _ := json.Marshal(record)
	status, raw := srv.call(t, "POST", "/v1/teams/acme/records", token, bytes.NewReader(body))
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, raw)
	}
	var created struct {
		UID    string          `json:"uid"`
		Fields json.RawMessage `json:"fields"`
		Custom json.RawMessage `json:"custom"`
	}
	if err := json.Unmarshal(raw, &created); err != nil {
		t.Fatal(err)
	}
	// While the server runs, the WAL holds the fresh writes.
	running := rawFiles(t, dir)
	if _, ok := running["keyturn.db-wal"]; !ok {
		t.Fatal("expected a -wal file while the server runs")
	}
	assertNoPlaintext(t, running, plaintexts...)

	srv.stop(t)
	assertNoPlaintext(t, rawFiles(t, dir), plaintexts...)

	srv = startServer(t, "--data", dir)
	token = srv.token(t, creds)
	status, raw = srv.call(t, "GET", "/v1/teams/acme/notation?ref=keeper://"+created.UID+"/field/password", token, nil)
	if status != http.StatusOK {
		t.Fatalf("notation: %d %s", status, raw)
	}
	var got struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Value != password {
		t.Fatalf("password after restart = %q, want %q", got.Value, password)
	}
	status, raw = srv.call(t, "GET", "/v1/teams/acme/records/"+created.UID, token, nil)
	var again struct {
		Fields json.RawMessage `json:"fields"`
		Custom json.RawMessage `json:"custom"`
	}
	if status != http.StatusOK || json.Unmarshal(raw, &again) != nil {
		t.Fatalf("get: %d %s", status, raw)
	}
	if !bytes.Equal(again.Fields, created.Fields) || !bytes.Equal(again.Custom, created.Custom) {
		t.Fatalf("fields changed across restart:\n%s\n%s", created.Fields, again.Fields)
	}
	assertNoPlaintext(t, rawFiles(t, dir), plaintexts...)
	srv.stop(t)
}

func TestWrongPassphraseRefusesToStart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	pass := filepath.Join(t.TempDir(), "pass")
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrong, []byte("incorrect horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	creds := initVault(t, dir, "--passphrase-file", pass)
	if _, err := os.Stat(filepath.Join(dir, "master.key")); err == nil {
		t.Fatal("a passphrase vault must not have a key file")
	}
	before := rawFiles(t, dir)

	code, _, errOut := keyturn(t, "server", "--data", dir, "--passphrase-file", wrong, "--listen", "127.0.0.1:0")
	if code != 1 {
		t.Fatalf("exit code %d, want 1 (stderr %q)", code, errOut)
	}
	if !strings.Contains(errOut, "wrong passphrase") {
		t.Fatalf("message does not say the passphrase is wrong: %q", errOut)
	}
	if strings.Contains(errOut, "incorrect horse") {
		t.Fatal("the passphrase leaked into the message")
	}
	code, _, errOut = keyturn(t, "server", "--data", dir, "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "--passphrase-file") {
		t.Fatalf("no passphrase: exit %d, %q", code, errOut)
	}
	after := rawFiles(t, dir)
	for name, b := range before {
		if !bytes.Equal(b, after[name]) {
			t.Errorf("%s changed after a refused start", name)
		}
	}

	srv := startServer(t, "--data", dir, "--passphrase-file", pass)
	srv.token(t, creds)
	srv.stop(t)
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	creds := initVault(t, dir)
	srv := startServer(t, "--data", dir)
	token := srv.token(t, creds)

	body := `{"type":"login","title":"in flight","fields":[{"type":"password","value":["slow-body-pw"]}]}`
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+srv.addr+"/v1/teams/acme/records", pr)
	req.Header.Set("Authorization", "Bearer "+token)
	req.ContentLength = int64(len(body))
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	if _, err := io.WriteString(pw, body[:20]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the server start reading the body
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-srv.exited:
		t.Fatalf("server exited with a request in flight: %v", err)
	default:
	}
	if _, err := io.WriteString(pw, body[20:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	res := <-done
	if res.err != nil || res.status != http.StatusCreated {
		t.Fatalf("in-flight request: status %d, err %v", res.status, res.err)
	}
	select {
	case err := <-srv.exited:
		if err != nil {
			t.Fatalf("server exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop")
	}
	if !strings.Contains(srv.stderr.String(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop in the log:\n%s", srv.stderr)
	}
	// A cleanly closed SQLite database has checkpointed and removed its WAL.
	if _, err := os.Stat(filepath.Join(dir, "keyturn.db-wal")); err == nil {
		t.Fatal("the -wal file remains: the database was not closed")
	}
	srv = startServer(t, "--data", dir)
	token = srv.token(t, creds)
	status, raw := srv.call(t, "GET", "/v1/teams/acme/records?title=in%20flight", token, nil)
	if status != http.StatusOK || !strings.Contains(string(raw), `"title":"in flight"`) {
		t.Fatalf("the in-flight record was not kept: %d %s", status, raw)
	}
	srv.stop(t)
}

func TestInitTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	initVault(t, dir)
	before := rawFiles(t, dir)
	key, _ := os.ReadFile(filepath.Join(dir, "master.key"))
	code, out, errOut := keyturn(t, "init", "--data", dir, "--team", "other")
	if code != 1 || out != "" || !strings.Contains(errOut, "already holds a keyturn vault") {
		t.Fatalf("second init: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	key2, _ := os.ReadFile(filepath.Join(dir, "master.key"))
	if !bytes.Equal(key, key2) {
		t.Fatal("master.key changed")
	}
	for name, b := range before {
		if !bytes.Equal(b, rawFiles(t, dir)[name]) {
			t.Errorf("%s changed", name)
		}
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v, %v", st.Mode(), err)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"init"},
		{"init", "--data", t.TempDir()},
		{"nonsense"},
		{"server", "--no-such-flag"},
		{"server"}, // no --data
		{"server", "--data", t.TempDir(), "--listen", "nonsense"},
		{"server", "--data", t.TempDir(), "--token-ttl", "1s"},
	} {
		code, _, errOut := keyturn(t, args...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	code, _, errOut := keyturn(t, "server", "--data", filepath.Join(t.TempDir(), "none"), "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "keyturn init") {
		t.Errorf("missing vault: exit %d, %q", code, errOut)
	}
}

func TestTeamAddWhileServing(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	acme := initVault(t, dir)
	srv := startServer(t, "--data", dir)
	code, out, errOut := keyturn(t, "team", "add", "--data", dir, "--team", "beta")
	if code != 0 {
		t.Fatalf("team add: exit %d %s", code, errOut)
	}
	var beta initOutput
	if err := json.Unmarshal([]byte(out), &beta); err != nil || beta.TeamName != "beta" || beta.ServiceUser != "admin" || beta.KeySecret == "" {
		t.Fatalf("team add output %q: %v", out, err)
	}
	body, _ := json.Marshal(map[string]string{"key_id": beta.KeyID, "key_secret": beta.KeySecret})
	if status, raw := srv.call(t, "POST", "/v1/teams/beta/service_token", "", bytes.NewReader(body)); status != http.StatusOK {
		t.Fatalf("beta's key: %d %s", status, raw)
	}
	if status, _ := srv.call(t, "POST", "/v1/teams/acme/service_token", "", bytes.NewReader(body)); status != http.StatusUnauthorized {
		t.Fatalf("beta's key minted a token for acme: %d", status)
	}
	srv.token(t, acme)
	if code, _, errOut := keyturn(t, "team", "add", "--data", dir, "--team", "beta"); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("duplicate team: exit %d %q", code, errOut)
	}
	if code, _, _ := keyturn(t, "team", "add", "--data", dir, "--team", "bad name!"); code != 2 {
		t.Fatalf("bad team name: exit %d", code)
	}
	srv.stop(t)
}

func TestSandboxOnceJSON(t *testing.T) {
	t.Parallel()
	code, out, errOut := keyturn(t, "sandbox", "--once", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	var report struct {
		Scenarios []struct {
			Name, Method, Status string
			ExpectedStatus       string `json:"expected_status"`
			Verified             bool
			Detail               string
		}
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("report %q: %v", out, err)
	}
	if len(report.Scenarios) < 5 {
		t.Fatalf("report %+v", report)
	}
	for _, s := range report.Scenarios {
		if !s.Verified || s.Status != s.ExpectedStatus {
			t.Errorf("scenario %+v", s)
		}
		if s.Status != "succeeded" && !(s.Name == "okta-naive-script-refused" && strings.Contains(s.Detail, "E0000003")) {
			t.Errorf("only the naive script may fail, and its refusal by Okta must show: %+v", s)
		}
	}
}

// lockedBuffer is a bytes.Buffer that a command writes to while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A serving sandbox says where its web UI is and how to sign in to it: /ui/ on the API's
// address, with the team and the key id of the admin key it prints, a key the server accepts.
func TestSandboxPrintsWhereToSignIn(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"sandbox", "--listen", "127.0.0.1:0"}, &out, &errOut) }()
	deadline := time.After(2 * time.Minute)
	for !strings.Contains(errOut.String(), "Ctrl-C stops the sandbox") {
		select {
		case code := <-done:
			t.Fatalf("the sandbox exited %d before serving\n%s\n%s", code, out.String(), errOut.String())
		case <-deadline:
			t.Fatalf("the sandbox did not say it serves\n%s", errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	banner := errOut.String()
	api := regexp.MustCompile(`(?m)^keyturn API:  (http://\S+) \(team (\S+)\)$`).FindStringSubmatch(banner)
	key := regexp.MustCompile(`(?m)^admin key:    KEYTURN_KEY_ID=(\S+) KEYTURN_KEY_SECRET=(\S+)$`).FindStringSubmatch(banner)
	ui := regexp.MustCompile(`(?m)^UI:           (http://\S+) \(sign in with team (\S+), key id (\S+) and the admin key's secret above\)$`).FindStringSubmatch(banner)
	if api == nil || key == nil || ui == nil {
		t.Fatalf("the banner lacks the API, the admin key or the UI:\n%s", banner)
	}
	if ui[1] != api[1]+"/ui/" || ui[2] != api[2] || ui[3] != key[1] {
		t.Fatalf("UI %q, team %q, key id %q; want %q, %q, %q", ui[1], ui[2], ui[3], api[1]+"/ui/", api[2], key[1])
	}
	if strings.Contains(ui[0], key[2]) {
		t.Fatal("the UI line repeats the key's secret")
	}
	// The one-time sign-in link opens a session once, and holds neither the key id nor its secret.
	link := regexp.MustCompile(`(?m)^sign-in link: (http://\S+) \(signs in once as the admin key, until \d\d:\d\d:\d\d UTC\)$`).FindStringSubmatch(banner)
	if link == nil || !strings.HasPrefix(link[1], api[1]+"/ui/signin/once?token=") ||
		strings.Contains(link[1], key[2]) || strings.Contains(link[1], key[1]) {
		t.Fatalf("the banner lacks a one-time sign-in link, or it holds the key:\n%s", banner)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, want := range []int{http.StatusSeeOther, http.StatusUnauthorized} {
		resp, err := noFollow.Get(link[1])
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || (want == http.StatusSeeOther) != (len(resp.Cookies()) == 1) {
			t.Fatalf("use %d of the sign-in link: %d, cookies %v", i+1, resp.StatusCode, resp.Cookies())
		}
	}
	body, _ := json.Marshal(map[string]string{"key_id": key[1], "key_secret": key[2]})
	resp, err := http.Post(api[1]+"/v1/teams/"+ui[2]+"/service_token", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the printed team and key get no token: %d", resp.StatusCode)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("Ctrl-C: exit %d\n%s", code, errOut.String())
	}
}

func TestServesTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	creds := initVault(t, dir)
	certFile, keyFile := tlscert.WriteFiles(t, t.TempDir())
	srv := startServer(t, "--data", dir, "--tls-cert-file", certFile, "--tls-key-file", keyFile)

	// Plain http to the TLS port gets no API answer.
	if resp, err := http.Get("http://" + srv.addr + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
		t.Fatal("the TLS port answered plain http")
	}
	// The CLI trusts the certificate through KEYTURN_CA_FILE.
	t.Setenv("KEYTURN_ADDR", "https://"+srv.addr)
	t.Setenv("KEYTURN_TEAM", "acme")
	t.Setenv("KEYTURN_KEY_ID", creds.KeyID)
	t.Setenv("KEYTURN_KEY_SECRET", creds.KeySecret)
	if code, _, errOut := keyturn(t, "record", "list"); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Fatalf("without the CA: exit %d %q", code, errOut)
	}
	t.Setenv("KEYTURN_CA_FILE", certFile)
	if code, out, errOut := keyturn(t, "record", "list"); code != 0 || !strings.Contains(out, "UID") {
		t.Fatalf("with the CA: exit %d %q %q", code, out, errOut)
	}
	srv.stop(t)

	// Without TLS, only a loopback address is accepted.
	code, _, errOut := keyturn(t, "server", "--data", dir, "--listen", "0.0.0.0:0")
	if code != 2 || !strings.Contains(errOut, "loopback") {
		t.Fatalf("plain http on every address: exit %d %q", code, errOut)
	}
}
