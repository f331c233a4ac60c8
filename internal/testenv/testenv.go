// Package testenv starts a complete keyturn API over a temporary data directory, for tests and
// benchmarks in other packages.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/app"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
)

// Clock is a settable clock: real time plus an offset that tests advance.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// Env is a running API with the first team's admin credentials.
type Env struct {
	Clock    *Clock // the clock of the auth service
	Auth     *auth.Service
	Services *app.App
	Dir      string
	Server   *httptest.Server
	Vault    *datadir.Vault
	Creds    auth.Credentials
	Token    string // a bearer token of the admin
	Client   *http.Client
}

// Start initialises a data directory in a temporary directory, opens it and serves the API.
// Everything is closed when the test ends.
func Start(tb testing.TB) *Env {
	tb.Helper()
	v, creds, dir := testdb.DataDir(tb, "acme") // closed after the cleanup below
	return serve(tb, v, creds, dir, &Clock{}, "")
}

// serve wires the services over an open vault, starts them and serves the API.
// node names the rotation engine among the nodes on one database ("" for the default).
func serve(tb testing.TB, v *datadir.Vault, creds auth.Credentials, dir string, clock *Clock, node string) *Env {
	tb.Helper()
	svc := app.New(v, app.Options{Auth: auth.Options{Now: clock.Now},
		Rotation: rotation.Options{BackoffBase: time.Millisecond, Node: node}, Scripts: script.Options{TempDir: tb.TempDir()}})
	if err := svc.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler)
	tb.Cleanup(func() {
		srv.Close()
		svc.Stop(10 * time.Second)
	})
	e := &Env{Clock: clock, Auth: svc.Auth, Services: svc, Dir: dir, Server: srv, Vault: v, Creds: creds, Client: srv.Client()}
	e.Token = e.TokenFor(tb, "acme", creds.KeyID, creds.KeySecret.Reveal())
	return e
}

// StartNodes starts n keyturn nodes on one fresh PostgreSQL database, as a cluster runs them:
// each opens the database and unseals the keys on its own and serves the whole API from
// services of its own. They share the first team's admin credentials and a clock; each Env
// holds a token it got from its own node. The tests' binary must call pgtest.Main from its
// TestMain. Each node's engine has its own name, node-1 to node-n. Everything is closed when
// the test ends.
func StartNodes(tb testing.TB, n int) []*Env {
	tb.Helper()
	ctx := context.Background()
	dir, dsn := tb.TempDir(), pgtest.DSN(tb)
	creds, err := datadir.InitStorage(ctx, dir, dsn, "acme", datadir.Unseal{})
	if err != nil {
		tb.Fatal(err)
	}
	clock := &Clock{}
	nodes := make([]*Env, n)
	for i := range nodes {
		v, err := datadir.OpenStorage(ctx, dir, dsn, datadir.Unseal{})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { v.Close() }) // after the services that run on it stop
		nodes[i] = serve(tb, v, creds, dir, clock, fmt.Sprintf("node-%d", i+1))
	}
	return nodes
}

// TokenFor exchanges an API key of a team for a bearer token, failing the test otherwise.
func (e *Env) TokenFor(tb testing.TB, team, keyID, keySecret string) string {
	tb.Helper()
	resp, raw := e.Raw(tb, "POST", "/v1/teams/"+team+"/service_token", "", map[string]string{
		"key_id": keyID, "key_secret": keySecret,
	})
	var tok struct {
		BearerToken string `json:"bearer_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &tok) != nil {
		tb.Fatalf("service_token for %s: %d %s", team, resp.StatusCode, raw)
	}
	return tok.BearerToken
}

// Do sends a request with the admin's token (when it has one), JSON-encoding body unless it
// is a []byte, and decodes a JSON response into out when out is not nil. It returns the status.
func (e *Env) Do(tb testing.TB, method, path string, body, out any) int {
	tb.Helper()
	resp, raw := e.Raw(tb, method, path, e.Token, body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			tb.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

// Raw sends a request with the given bearer token ("" for none) and returns the response and
// its body.
func (e *Env) Raw(tb testing.TB, method, path, token string, body any) (*http.Response, []byte) {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, e.Server.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, raw
}

// URL returns the server URL of a path.
func (e *Env) URL(path string) string { return fmt.Sprintf("%s%s", e.Server.URL, path) }
