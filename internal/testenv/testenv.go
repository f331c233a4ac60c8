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
	"testing"

	"github.com/keyturn/keyturn/internal/api"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/vault"
)

// Env is a running API with the first team's admin credentials.
type Env struct {
	Dir    string
	Server *httptest.Server
	Vault  *datadir.Vault
	Creds  auth.Credentials
	Token  string // a bearer token of the admin
	Client *http.Client
}

// Start initialises a data directory in a temporary directory, opens it and serves the API.
// Everything is closed when the test ends.
func Start(tb testing.TB) *Env {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	creds, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{})
	if err != nil {
		tb.Fatal(err)
	}
	v, err := datadir.Open(ctx, dir, datadir.Unseal{})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Deps{
		Vault: vault.New(v.DB, v.Keys), Auth: auth.New(v.DB, v.Keys, auth.Options{}), Ready: v.DB.Ping,
	}))
	tb.Cleanup(func() {
		srv.Close()
		v.Close()
	})
	e := &Env{Dir: dir, Server: srv, Vault: v, Creds: creds, Client: srv.Client()}
	var tok struct {
		BearerToken string `json:"bearer_token"`
	}
	status := e.Do(tb, "POST", "/v1/teams/acme/service_token", map[string]string{
		"key_id": creds.KeyID, "key_secret": creds.KeySecret.Reveal(),
	}, &tok)
	if status != http.StatusOK {
		tb.Fatalf("service_token: status %d", status)
	}
	e.Token = tok.BearerToken
	return e
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
