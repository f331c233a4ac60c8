package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/app"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/script"
)

// harness is a real keyturn API over a temporary data directory, and the environment the
// client commands read.
type harness struct {
	t     *testing.T
	srv   *httptest.Server
	creds auth.Credentials
	env   map[string]string
	dir   string // the data directory the API serves

	mu    sync.Mutex
	after func(r *http.Request) // called after the API has served a request
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	creds, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := datadir.Open(ctx, dir, datadir.Unseal{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, creds: creds, dir: dir}
	svc := app.New(v, app.Options{Scripts: script.Options{TempDir: t.TempDir()}})
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	handler := svc.Handler
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.ServeHTTP(w, r)
		h.mu.Lock()
		after := h.after
		h.mu.Unlock()
		if after != nil {
			after(r)
		}
	}))
	t.Cleanup(func() {
		h.srv.Close()
		svc.Stop(10 * time.Second)
		v.Close()
	})
	h.env = map[string]string{
		EnvAddr:      h.srv.URL,
		EnvTeam:      "acme",
		EnvKeyID:     creds.KeyID,
		EnvKeySecret: creds.KeySecret.Reveal(),
	}
	return h
}

func (h *harness) setAfter(f func(r *http.Request)) {
	h.mu.Lock()
	h.after = f
	h.mu.Unlock()
}

// result is the outcome of one command line.
type result struct {
	out, errOut string
	err         error
	code        int
}

// run executes a command line against the harness's environment with stdin as input.
func (h *harness) run(stdin string, args ...string) result {
	return runWith(h.env, stdin, args...)
}

// newTestRoot is a root command holding Commands(), as cmd/keyturn builds it.
func newTestRoot() *cobra.Command {
	root := &cobra.Command{Use: "keyturn", SilenceUsage: true, SilenceErrors: true, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	root.AddCommand(Commands()...)
	MarkUsageErrors(root)
	return root
}

// runWith executes a command line the way cmd/keyturn does, with env as the environment.
func runWith(env map[string]string, stdin string, args ...string) result {
	getenv := func(k string) string { return env[k] }
	root := &cobra.Command{Use: "keyturn", SilenceUsage: true, SilenceErrors: true, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	root.AddCommand(newCommands(getenv)...)
	MarkUsageErrors(root)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return result{out: out.String(), errOut: errOut.String(), err: err, code: ExitCode(err)}
}

// ok fails the test unless the command succeeded, and returns its standard output.
func (h *harness) ok(stdin string, args ...string) string {
	h.t.Helper()
	r := h.run(stdin, args...)
	if r.code != ExitOK {
		h.t.Fatalf("keyturn %s: exit %d: %v", strings.Join(args, " "), r.code, r.err)
	}
	return r.out
}

// token returns a bearer token of the team admin, from the API.
func (h *harness) token() string {
	h.t.Helper()
	var out struct {
		BearerToken string `json:"bearer_token"`
	}
	h.api("POST", "/v1/teams/acme/service_token", "", map[string]string{
		"key_id": h.creds.KeyID, "key_secret": h.creds.KeySecret.Reveal()}, &out, http.StatusOK)
	return out.BearerToken
}

// api calls the API directly and checks the status.
func (h *harness) api(method, path, token string, body, out any, want int) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		h.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			h.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
}

// getRecord reads a record through the API.
func (h *harness) getRecord(uid string) Record {
	h.t.Helper()
	var rec Record
	h.api("GET", "/v1/teams/acme/records/"+uid, h.token(), nil, &rec, http.StatusOK)
	return rec
}

func fieldValue(t *testing.T, f Field) string {
	t.Helper()
	if len(f.Value) != 1 {
		t.Fatalf("field %s has %d values, want 1", f.Type, len(f.Value))
	}
	var s string
	if err := json.Unmarshal(f.Value[0], &s); err != nil {
		t.Fatalf("field %s: %v", f.Type, err)
	}
	return s
}
