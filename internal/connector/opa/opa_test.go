package opa_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/connector/opa"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv"
)

// keyturn serves the OPA Service Users API itself, so the connector is tested against it.
func TestIssueVerifyFinalize(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	var u struct{ Name string }
	if st := env.Do(t, "POST", "/v1/teams/acme/service_users", map[string]any{"name": "robot", "roles": []string{"pam_admin"}}, &u); st != 201 {
		t.Fatalf("create: %d", st)
	}
	var first struct{ ID, Secret string }
	env.Do(t, "POST", "/v1/teams/acme/service_users/robot/keys", nil, &first)
	robotToken := env.TokenFor(t, "acme", first.ID, first.Secret)

	acct := connector.Account{Login: "robot", Target: connector.Target{
		URL: env.URL("/v1/teams/acme"), AdminLogin: env.Creds.KeyID, AdminSecret: env.Creds.KeySecret,
		Fields: map[string]string{opa.KeyIDField: first.ID},
	}}
	c := opa.New(nil)
	ctx := context.Background()
	if err := c.Verify(ctx, acct, secret.FromString(first.Secret)); err != nil {
		t.Fatalf("verify the first key: %v", err)
	}
	if err := c.Verify(ctx, acct, secret.FromString("wrong")); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("verify a wrong secret: %v", err)
	}
	issued, err := c.Issue(ctx, acct, secret.FromString(first.Secret))
	if err != nil {
		t.Fatal(err)
	}
	newID := issued.Fields[opa.KeyIDField]
	if newID == "" || newID == first.ID || issued.Secret.IsZero() {
		t.Fatalf("issued %+v", issued.Fields)
	}
	next := acct
	next.Target.Fields = map[string]string{opa.KeyIDField: newID}
	if err := c.Verify(ctx, next, issued.Secret); err != nil {
		t.Fatalf("verify the new key: %v", err)
	}
	// Before Finalize both keys work; after it only the new one, and the old key's tokens die.
	if err := c.Verify(ctx, acct, secret.FromString(first.Secret)); err != nil {
		t.Fatalf("the old key stopped before Finalize: %v", err)
	}
	if err := c.Finalize(ctx, next, issued); err != nil {
		t.Fatal(err)
	}
	if err := c.Finalize(ctx, next, issued); err != nil {
		t.Fatalf("Finalize again: %v", err)
	}
	if err := c.Verify(ctx, acct, secret.FromString(first.Secret)); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("the old key still works: %v", err)
	}
	if resp, _ := env.Raw(t, "GET", "/v1/teams/acme/records", robotToken, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a token of the deleted key still works: %d", resp.StatusCode)
	}
	var keys struct{ List []struct{ ID string } }
	env.Do(t, "GET", "/v1/teams/acme/service_users/robot/keys", nil, &keys)
	if len(keys.List) != 1 || keys.List[0].ID != newID {
		t.Fatalf("keys left: %+v", keys.List)
	}
	bad := acct
	bad.Target.AdminSecret = secret.FromString("not the admin secret")
	var ce *connector.Error
	if _, err := c.Issue(ctx, bad, secret.Secret{}); !errors.As(err, &ce) || ce.Transient || ce.Code != "opa_admin_key_refused" {
		t.Fatalf("bad admin key: %v", err)
	}
}

// TestServiceTokenMustBeForTheTeam: the service token answer names its team; like Okta's SDK,
// the connector refuses a token for another team than the URL's (here a proxy routes team
// acme's URL to team emulator), with a clear permanent error, and makes no key. Verify does not
// take it for a refused key. A URL that names no team is a configuration error.
func TestServiceTokenMustBeForTheTeam(t *testing.T) {
	emu := emulator.New(emulator.Options{OPATeam: "emulator"})
	if _, err := emu.CreateServiceUser("robot"); err != nil {
		t.Fatal(err)
	}
	keyID, keySecret, err := emu.AddServiceUserKey("robot")
	if err != nil {
		t.Fatal(err)
	}
	direct := httptest.NewServer(emu)
	misrouted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = strings.Replace(r.URL.Path, "/v1/teams/acme/", "/v1/teams/emulator/", 1)
		r.URL.RawPath = ""
		emu.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { emu.Close(); direct.Close(); misrouted.Close() })
	adminID, adminSecret := emu.AdminKey()
	acct := func(teamURL string) connector.Account {
		return connector.Account{Login: "robot", Target: connector.Target{URL: teamURL, AdminLogin: adminID,
			AdminSecret: secret.FromString(adminSecret), Fields: map[string]string{opa.KeyIDField: keyID}}}
	}
	c := opa.New(nil)
	ctx := context.Background()
	if err := c.Verify(ctx, acct(direct.URL+"/v1/teams/emulator"), secret.FromString(keySecret)); err != nil {
		t.Fatalf("the right team: %v", err)
	}
	if err := c.Verify(ctx, acct(direct.URL+"/v1/teams/EMULATOR"), secret.FromString(keySecret)); err != nil {
		t.Fatalf("the team name in another case: %v", err)
	}

	wrong := acct(misrouted.URL + "/v1/teams/acme")
	var ce *connector.Error
	err = c.Verify(ctx, wrong, secret.FromString(keySecret))
	if errors.Is(err, connector.ErrRejected) || !errors.As(err, &ce) || ce.Transient || ce.Code != "opa_team_mismatch" {
		t.Fatalf("verify with another team's token: %v", err)
	}
	if !strings.Contains(err.Error(), `"acme"`) || !strings.Contains(err.Error(), `"emulator"`) || strings.Contains(err.Error(), keySecret) {
		t.Fatalf("message: %q", err)
	}
	before, _ := emu.ServiceUserKeyIDs("robot")
	if _, err := c.Issue(ctx, wrong, secret.FromString(keySecret)); !errors.As(err, &ce) || ce.Code != "opa_team_mismatch" {
		t.Fatalf("issue with another team's token: %v", err)
	}
	if after, _ := emu.ServiceUserKeyIDs("robot"); len(after) != len(before) {
		t.Fatalf("a key was made with another team's token: %v -> %v", before, after)
	}

	if err := c.Verify(ctx, acct(direct.URL), secret.FromString(keySecret)); !errors.As(err, &ce) || ce.Code != "bad_team_url" {
		t.Fatalf("a URL without a team: %v", err)
	}
}

// TestFinalizeToleratesAKeyAlreadyGone: a key that disappears between the listing and its
// deletion (another retirement got there first: OPA answers 404) is retired, not an error.
func TestFinalizeToleratesAKeyAlreadyGone(t *testing.T) {
	env := testenv.Start(t)
	if st := env.Do(t, "POST", "/v1/teams/acme/service_users", map[string]any{"name": "robot", "roles": []string{"pam_admin"}}, nil); st != 201 {
		t.Fatalf("create: %d", st)
	}
	var first struct{ ID, Secret string }
	env.Do(t, "POST", "/v1/teams/acme/service_users/robot/keys", nil, &first)
	// In front of keyturn: each DELETE of a key is carried out, then answered 404, as if
	// someone else had deleted it just before.
	backend := env.Server.URL
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, backend+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if r.Method == http.MethodDelete {
			http.Error(w, `{"code":"not_found","message":"gone"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(front.Close)

	acct := connector.Account{Login: "robot", Target: connector.Target{
		URL: front.URL + "/v1/teams/acme", AdminLogin: env.Creds.KeyID, AdminSecret: env.Creds.KeySecret,
		Fields: map[string]string{opa.KeyIDField: first.ID},
	}}
	c := opa.New(nil)
	ctx := context.Background()
	issued, err := c.Issue(ctx, acct, secret.FromString(first.Secret))
	if err != nil {
		t.Fatal(err)
	}
	next := acct
	next.Target.Fields = map[string]string{opa.KeyIDField: issued.Fields[opa.KeyIDField]}
	if err := c.Finalize(ctx, next, issued); err != nil {
		t.Fatalf("Finalize with the old key already gone (404): %v", err)
	}
	if err := c.Verify(ctx, acct, secret.FromString(first.Secret)); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("the old key still works: %v", err)
	}
}
