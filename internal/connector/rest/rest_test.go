package rest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/connector/rest"
	"github.com/keyturn/keyturn/internal/secret"
)

// service is a REST API that keeps one password per user behind a bearer token.
type service struct {
	mu        sync.Mutex
	passwords map[string]string
	lastBody  string
	status    int // forced answer to /users/... when not 0
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer admin-token" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastBody = string(body)
	var in struct{ Password, Old string }
	if err := json.Unmarshal(body, &in); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	user := strings.TrimPrefix(strings.TrimSuffix(r.URL.EscapedPath(), "/check"), "/users/")
	switch {
	case strings.HasSuffix(r.URL.Path, "/check"):
		if s.passwords[user] != in.Password {
			w.WriteHeader(http.StatusForbidden)
		}
	case s.status != 0:
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(s.status)
	case s.passwords[user] != in.Old:
		w.WriteHeader(http.StatusConflict)
	default:
		s.passwords[user] = in.Password
		w.WriteHeader(http.StatusNoContent)
	}
}

const cfg = `{
  "rotate": {"method": "PUT", "url": "{{.URL}}/users/{{.User}}",
             "headers": {"Authorization": "Bearer {{.AdminSecret}}"},
             "body": "{\"password\": \"{{.NewPassword}}\", \"old\": \"{{.OldPassword}}\"}"},
  "verify": {"url": "{{.URL}}/users/{{.User}}/check",
             "headers": {"Authorization": "Bearer {{.AdminSecret}}"},
             "body": "{\"password\": \"{{.Password}}\"}", "success": [200]}
}`

func account(url string) connector.Account {
	return connector.Account{Login: "a b/c@example.com", Target: connector.Target{URL: url,
		AdminSecret: secret.FromString("admin-token"), Fields: map[string]string{rest.ConfigField: cfg}}}
}

func TestRotateAndVerify(t *testing.T) {
	svc := &service{passwords: map[string]string{"a%20b%2Fc@example.com": `old"pw\`}}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	c := rest.New(nil)
	a := account(srv.URL)
	ctx := context.Background()
	newPW := secret.FromString(`new "quoted" \ pw`)
	if err := c.Rotate(ctx, a, secret.FromString(`old"pw\`), newPW); err != nil {
		t.Fatal(err)
	}
	if got := svc.passwords["a%20b%2Fc@example.com"]; got != newPW.Reveal() {
		t.Fatalf("the service holds %q; body was %s", got, svc.lastBody)
	}
	if !c.CanVerify(a) {
		t.Fatal("a config with a verify request cannot verify")
	}
	if err := c.Verify(ctx, a, newPW); err != nil {
		t.Fatalf("verify new: %v", err)
	}
	if err := c.Verify(ctx, a, secret.FromString("wrong")); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("verify wrong: %v", err)
	}
	// A refused change is permanent; 503 and 429 are transient, with Retry-After.
	if err := c.Rotate(ctx, a, secret.FromString("not the old one"), newPW); connector.IsTransient(err) || err == nil {
		t.Fatalf("refused change: %v", err)
	}
	svc.status = http.StatusServiceUnavailable
	err := c.Rotate(ctx, a, newPW, secret.FromString("x"))
	var ce *connector.Error
	if !connector.IsTransient(err) || !errors.As(err, &ce) || ce.RetryAt.IsZero() {
		t.Fatalf("503: %v", err)
	}
	for _, e := range []error{err} {
		if strings.Contains(e.Error(), "admin-token") || strings.Contains(e.Error(), "new \"quoted\"") {
			t.Fatalf("an error leaks a secret: %v", e)
		}
	}
}

func TestBadConfig(t *testing.T) {
	c := rest.New(nil)
	ctx := context.Background()
	for name, fields := range map[string]map[string]string{
		"missing":        {},
		"not json":       {rest.ConfigField: "{"},
		"unknown key":    {rest.ConfigField: `{"rotate": {"verb": "POST"}}`},
		"bad template":   {rest.ConfigField: `{"rotate": {"body": "{{.NewPassword"}}`},
		"unknown value":  {rest.ConfigField: `{"rotate": {"body": "{{.Nope}}"}}`},
		"header newline": {rest.ConfigField: `{"rotate": {"headers": {"X": "a{{.User}}"}}}`},
	} {
		a := connector.Account{Login: "u\r\nInjected: 1", Target: connector.Target{URL: "http://127.0.0.1:1", Fields: fields}}
		err := c.Rotate(ctx, a, secret.FromString("o"), secret.FromString("n"))
		var ce *connector.Error
		if !errors.As(err, &ce) || ce.Transient || !connector.IsNotChanged(err) {
			t.Errorf("%s: %v (not changed: %v)", name, err, connector.IsNotChanged(err))
		}
	}
	if _, err := rest.ParseConfig(cfg); err != nil {
		t.Fatal(err)
	}
}

// TestAnswersMayHaveChangedTheTarget: only a request that was never sent proves the target
// unchanged (TestBadConfig); any answer to the change request, or none, may have changed it.
func TestAnswersMayHaveChangedTheTarget(t *testing.T) {
	svc := &service{passwords: map[string]string{"a%20b%2Fc@example.com": "old"}}
	srv := httptest.NewServer(svc)
	c := rest.New(nil)
	ctx := context.Background()
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusInternalServerError, http.StatusTooManyRequests} {
		svc.status = status
		if err := c.Rotate(ctx, account(srv.URL), secret.FromString("old"), secret.FromString("new")); err == nil || connector.IsNotChanged(err) {
			t.Errorf("HTTP %d: %v (not changed: %v)", status, err, connector.IsNotChanged(err))
		}
	}
	srv.Close() // no answer at all
	if err := c.Rotate(ctx, account(srv.URL), secret.FromString("old"), secret.FromString("new")); err == nil || connector.IsNotChanged(err) {
		t.Errorf("no answer: %v", err)
	}
}
