package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/testenv"
)

// exchangeFrom exchanges a key for a token as a client at addr, and returns the status and
// the Retry-After header.
func exchangeFrom(t *testing.T, env *testenv.Env, addr, keyID, secret string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"key_id": keyID, "key_secret": secret})
	req := httptest.NewRequest("POST", "/v1/teams/acme/service_token", bytes.NewReader(body))
	req.RemoteAddr = addr + ":40000"
	rec := httptest.NewRecorder()
	env.Services.Handler.ServeHTTP(rec, req)
	return rec.Code, rec.Header().Get("Retry-After")
}

// TestMalformedKeyIDsNeverReachTheLimiter: a key id that is not a UUID, or a body too big
// for a token exchange, is refused before it is counted, so it neither takes memory nor
// locks anyone out (keyturn issue 11, defect 7).
func TestMalformedKeyIDsNeverReachTheLimiter(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	huge := strings.Repeat("k", 1<<20-100) // under the general body limit, as in the report
	wantError(t, env, "POST", "/v1/teams/acme/service_token", "", map[string]string{"key_id": huge, "key_secret": "x"}, 413, "body_too_large")
	for _, id := range []string{"nope", strings.Repeat("k", 4096), env.Creds.KeyID + "x", "{" + env.Creds.KeyID + "}",
		"urn:uuid:" + env.Creds.KeyID, strings.ReplaceAll(env.Creds.KeyID, "-", "")} {
		wantError(t, env, "POST", "/v1/teams/acme/service_token", "", map[string]string{"key_id": id, "key_secret": "x"}, 400, "invalid_key_id")
	}
	for i := range 5 * auth.DefaultFailureLimit {
		if st, _ := exchangeFrom(t, env, "203.0.113.9", fmt.Sprintf("bad-%d", i), "x"); st != 400 {
			t.Fatalf("malformed key id %d: %d, want 400", i, st)
		}
	}
	// None of that counted against the address.
	if st, _ := exchangeFrom(t, env, "203.0.113.9", env.Creds.KeyID, env.Creds.KeySecret.Reveal()); st != 200 {
		t.Fatalf("the admin's correct secret after malformed attempts from its address: %d", st)
	}
}

// TestGuessingElsewhereDoesNotLockOutTheOwner: an attacker who knows a key id and guesses its
// secret from many addresses is slowed down, while the owner, from an address that has not
// failed, gets a token every time (keyturn issue 11, defect 7).
func TestGuessingElsewhereDoesNotLockOutTheOwner(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	k, _ := newUser(t, env, "victim", []string{"pam_admin"}, nil)
	const owner = "192.0.2.1"
	attackers := 2 * auth.DefaultKeyFailureLimit / auth.DefaultFailureLimit // enough to put the key under attack
	for a := range attackers {
		addr := fmt.Sprintf("10.0.%d.%d", a/250, a%250+1)
		for g := range auth.DefaultFailureLimit {
			st, _ := exchangeFrom(t, env, addr, k.ID, fmt.Sprintf("guess-%d-%d", a, g))
			if st != 401 && st != 429 {
				t.Fatalf("attacker %s guess %d: %d", addr, g, st)
			}
		}
		// The guesser is blocked, even with the correct secret, and told when to come back...
		if st, retry := exchangeFrom(t, env, addr, k.ID, k.Secret); st != 429 || retry == "" {
			t.Fatalf("attacker %s after %d failures: %d, Retry-After %q", addr, auth.DefaultFailureLimit, st, retry)
		}
		// ...while the owner is not.
		if st, _ := exchangeFrom(t, env, owner, k.ID, k.Secret); st != 200 {
			t.Fatalf("the owner after %d guessing addresses: %d, want 200", a+1, st)
		}
	}
	// The key id is under attack now: a new address gets one guess per window, not ten.
	if st, _ := exchangeFrom(t, env, "10.9.9.9", k.ID, "one more guess"); st != 401 {
		t.Fatalf("a new guesser's first try: %d", st)
	}
	if st, retry := exchangeFrom(t, env, "10.9.9.9", k.ID, "and another"); st != 429 || retry == "" {
		t.Fatalf("a new guesser's second try while the key is under attack: %d %q", st, retry)
	}
	// An address that has never failed gets its token, and so does a known-good one that
	// mistyped once.
	if st, _ := exchangeFrom(t, env, "192.0.2.2", k.ID, k.Secret); st != 200 {
		t.Fatalf("the owner from a new address during the attack: %d", st)
	}
	if st, _ := exchangeFrom(t, env, owner, k.ID, "a typo"); st != 401 {
		t.Fatalf("the owner's typo: %d", st)
	}
	if st, _ := exchangeFrom(t, env, owner, k.ID, k.Secret); st != 200 {
		t.Fatalf("the owner after a typo during the attack: %d", st)
	}
}

// TestFailuresBehindAProxyBlockOnlyTheirKeys: many keys failing from one address (a proxy)
// block those keys from it, not a correct secret for another key (keyturn issue 11, defect 7).
func TestFailuresBehindAProxyBlockOnlyTheirKeys(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t)
	k, _ := newUser(t, env, "behind-proxy", []string{"pam_admin"}, nil)
	const proxy = "198.51.100.7"
	for i := range 20 {
		id := uuid.NewString()
		for range auth.DefaultFailureLimit + 1 {
			if st, _ := exchangeFrom(t, env, proxy, id, "wrong"); st != 401 && st != 429 {
				t.Fatalf("unknown key %d: %d", i, st)
			}
		}
	}
	for range auth.DefaultFailureLimit {
		exchangeFrom(t, env, proxy, k.ID, "wrong")
	}
	if st, _ := exchangeFrom(t, env, proxy, env.Creds.KeyID, env.Creds.KeySecret.Reveal()); st != 200 {
		t.Fatalf("another key's correct secret through the proxy: %d, want 200", st)
	}
	if st, retry := exchangeFrom(t, env, proxy, k.ID, k.Secret); st != 429 || retry == "" {
		t.Fatalf("the failing key through the proxy: %d %q, want 429 with Retry-After", st, retry)
	}
}
