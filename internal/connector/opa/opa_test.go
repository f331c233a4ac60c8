package opa_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/connector/opa"
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
