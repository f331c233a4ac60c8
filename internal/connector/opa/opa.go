// Package opa rotates the API keys of Okta Privileged Access service users: OPA issues the new
// key (rotate-all), keyturn saves its secret as pending, verifies it by exchanging it for a
// service token, then deletes the older keys. The same API is keyturn's own, so it also
// rotates keyturn service users' keys.
package opa

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
)

// KeyIDField is the pamUser's custom field holding the id of its current API key.
const KeyIDField = "key_id"

// Connector talks to OPA teams. The resource record holds the team URL
// (https://{org}.pam.okta.com/v1/teams/{team}) in url, an admin key id in login and its secret
// in password; the pamUser's login is the service user's name.
type Connector struct {
	client *http.Client
	now    func() time.Time

	mu     sync.Mutex
	tokens map[string]adminToken // by team URL, admin key id and a hash of its secret
}

type adminToken struct {
	bearer  secret.Secret
	expires time.Time
}

// New returns a Connector; a nil client means connector.NewHTTPClient().
func New(client *http.Client) *Connector {
	if client == nil {
		client = connector.NewHTTPClient()
	}
	return &Connector{client: client, now: time.Now, tokens: map[string]adminToken{}}
}

// Rotate is not how OPA keys change: OPA issues them (see Issue).
func (c *Connector) Rotate(context.Context, connector.Account, secret.Secret, secret.Secret) error {
	return connector.Permanent("not_supported", "OPA issues API keys itself; the engine uses Issue", nil)
}

// Issue rotates all of the service user's keys: OPA makes a new key and gives the older ones
// 48 hours. The result holds the only copy of the secret, and the key id as key_id.
func (c *Connector) Issue(ctx context.Context, a connector.Account, _ secret.Secret) (connector.Issued, error) {
	var key struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if err := c.admin(ctx, a, http.MethodPost, "/service_users/"+url.PathEscape(a.Login)+"/keys", http.StatusOK, &key); err != nil {
		return connector.Issued{}, err
	}
	if key.ID == "" || key.Secret == "" {
		return connector.Issued{}, connector.Permanent("bad_response", "OPA returned a key without an id or a secret", nil)
	}
	return connector.Issued{Secret: secret.FromString(key.Secret), Fields: map[string]string{KeyIDField: key.ID}}, nil
}

// Verify exchanges the key for a service token: OPA accepts it or answers 401.
func (c *Connector) Verify(ctx context.Context, a connector.Account, pw secret.Secret) error {
	keyID := a.Target.Fields[KeyIDField]
	if keyID == "" {
		return connector.Permanent("no_key_id", "the pamUser record has no key_id custom field", nil)
	}
	_, err := c.exchange(ctx, a.Target.URL, keyID, pw)
	return err
}

// Finalize deletes every key of the service user but the issued one; tokens minted from the
// deleted keys stop working at once. Repeating it is harmless.
func (c *Connector) Finalize(ctx context.Context, a connector.Account, issued connector.Issued) error {
	keep := issued.Fields[KeyIDField]
	if keep == "" {
		return connector.Permanent("no_key_id", "the issued key has no id", nil)
	}
	var keys struct {
		List []struct {
			ID string `json:"id"`
		} `json:"list"`
	}
	base := "/service_users/" + url.PathEscape(a.Login) + "/keys"
	if err := c.admin(ctx, a, http.MethodGet, base, http.StatusOK, &keys); err != nil {
		return err
	}
	found := false
	for _, k := range keys.List {
		if k.ID == keep {
			found = true
			continue
		}
		err := c.admin(ctx, a, http.MethodDelete, base+"/"+url.PathEscape(k.ID), http.StatusNoContent, nil)
		if err != nil && !errors.Is(err, errNotFound) { // a key gone already is retired
			return err
		}
	}
	if !found {
		return connector.Permanent("key_missing", "the new key is not among the service user's keys", nil)
	}
	return nil
}

// exchange trades a key for a bearer token.
func (c *Connector) exchange(ctx context.Context, teamURL, keyID string, keySecret secret.Secret) (adminToken, error) {
	team, err := teamOf(teamURL)
	if err != nil {
		return adminToken{}, err
	}
	body := map[string]string{"key_id": keyID, "key_secret": keySecret.Reveal()}
	var out struct {
		BearerToken string    `json:"bearer_token"`
		ExpiresAt   time.Time `json:"expires_at"`
		TeamName    string    `json:"team_name"`
	}
	status, err := c.do(ctx, http.MethodPost, teamURL+"/service_token", secret.Secret{}, body, &out)
	switch {
	case err != nil:
		return adminToken{}, err
	case status == http.StatusOK && out.BearerToken != "" && !strings.EqualFold(out.TeamName, team):
		// As Okta's SDK does: a token for another team (a proxy or a wrong URL in between) is
		// not used, and says nothing about the key.
		return adminToken{}, connector.Permanent("opa_team_mismatch", fmt.Sprintf(
			"OPA answered the service token request for team %q with a token for team %q: check the team URL (url) of the resource record",
			team, printable(out.TeamName)), nil)
	case status == http.StatusOK && out.BearerToken != "":
		return adminToken{bearer: secret.FromString(out.BearerToken), expires: out.ExpiresAt}, nil
	case status == http.StatusUnauthorized:
		return adminToken{}, connector.ErrRejected
	default:
		return adminToken{}, statusError(status, "service_token")
	}
}

// teamOf returns the team name of a team URL, https://{org}.pam.okta.com/v1/teams/{team}.
func teamOf(teamURL string) (string, error) {
	bad := connector.Permanent("bad_team_url", "the OPA team URL (url) must end in /v1/teams/{team_name}", nil)
	u, err := url.Parse(teamURL)
	if err != nil {
		return "", bad
	}
	segs := strings.Split(strings.TrimSuffix(u.EscapedPath(), "/"), "/")
	n := len(segs)
	if n < 3 || segs[n-3] != "v1" || segs[n-2] != "teams" || segs[n-1] == "" {
		return "", bad
	}
	team, err := url.PathUnescape(segs[n-1])
	if err != nil {
		return "", bad
	}
	return team, nil
}

// printable keeps s's printable ASCII, at most 64 bytes, for a message.
func printable(s string) string {
	b := make([]byte, 0, min(len(s), 64))
	for i := 0; i < len(s) && len(b) < 64; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}

// admin calls the team API with the admin key's token, minting (or re-minting after a 401)
// the token as needed.
func (c *Connector) admin(ctx context.Context, a connector.Account, method, path string, want int, out any) error {
	if a.Target.URL == "" || a.Target.AdminLogin == "" || a.Target.AdminSecret.IsZero() {
		return connector.Permanent("opa_not_configured",
			"the resource record needs the team URL (url), an admin key id (login) and its secret (password)", nil)
	}
	for try := 0; ; try++ {
		tok, err := c.token(ctx, a, try > 0)
		if err != nil {
			return err
		}
		status, err := c.do(ctx, method, a.Target.URL+path, tok.bearer, nil, out)
		if err != nil {
			return err
		}
		if status == http.StatusUnauthorized && try == 0 {
			continue // tokens may expire at any time: mint a new one once
		}
		if status != want {
			return statusError(status, method+" "+path)
		}
		return nil
	}
}

func (c *Connector) token(ctx context.Context, a connector.Account, fresh bool) (adminToken, error) {
	sum := sha256.Sum256(a.Target.AdminSecret.Bytes())
	key := a.Target.URL + " " + a.Target.AdminLogin + " " + hex.EncodeToString(sum[:])
	c.mu.Lock()
	tok, ok := c.tokens[key]
	c.mu.Unlock()
	if ok && !fresh && c.now().Before(tok.expires.Add(-time.Minute)) {
		return tok, nil
	}
	tok, err := c.exchange(ctx, a.Target.URL, a.Target.AdminLogin, a.Target.AdminSecret)
	if errors.Is(err, connector.ErrRejected) {
		return adminToken{}, connector.Permanent("opa_admin_key_refused", "OPA refused the admin key of the resource record", nil)
	}
	if err != nil {
		return adminToken{}, err
	}
	c.mu.Lock()
	c.tokens[key] = tok
	c.mu.Unlock()
	return tok, nil
}

// do sends one request and decodes a 2xx JSON answer into out.
func (c *Connector) do(ctx context.Context, method, u string, bearer secret.Secret, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, connector.Permanent("bad_team_url", "the OPA team URL is not a valid URL", nil)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if !bearer.IsZero() {
		req.Header.Set("Authorization", "Bearer "+bearer.Reveal())
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, connector.Transient("network", "OPA did not answer", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, connector.Transient("network", "reading OPA's answer failed", err)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		ce := connector.Transient("rate_limited", "OPA's rate limit was reached", nil)
		if at, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Retry-At"), 10, 64); err == nil {
			ce.RetryAt = time.Unix(at, 0)
		} else if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			ce.RetryAt = time.Now().Add(time.Duration(s) * time.Second)
		}
		return 0, ce
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 && out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return 0, connector.Permanent("bad_response", "OPA's answer is not the JSON expected", nil)
		}
	}
	return resp.StatusCode, nil
}

// errNotFound is wrapped by the error of a call OPA answered 404.
var errNotFound = errors.New("OPA: not found")

func statusError(status int, op string) error {
	msg := fmt.Sprintf("OPA answered %s with HTTP %d", strings.TrimSpace(op), status)
	code := "opa_http_" + strconv.Itoa(status)
	if status >= 500 {
		return connector.Transient(code, msg, nil)
	}
	var cause error
	if status == http.StatusNotFound {
		cause = errNotFound
	}
	return connector.Permanent(code, msg, cause)
}
