// Package okta rotates Okta users' passwords through the Okta Management API: it finds the user
// by login, changes the password with change_password (old and new), falls back to the admin
// set-password call when the record allows it, and verifies with the Authn API.
package okta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
)

// Custom fields of the resource or user record that tune the connector.
const (
	FieldAdminReset = "Okta Admin Reset" // True: when Okta refuses the old password (not the new one), set the new one as admin
	FieldVerify     = "Okta Verify"      // False: do not check passwords with /api/v1/authn
)

// Connector talks to Okta orgs. It is safe for concurrent use and shares rate-limit state per
// org and endpoint class across calls.
type Connector struct {
	client *http.Client
	now    func() time.Time

	mu     sync.Mutex
	limits map[string]*bucket    // by org URL + endpoint class
	ids    map[string]string     // user ids by org URL + login; an id never changes
	tokens map[string]oauthToken // OAuth access tokens by org, client and key
	// dpopNonces marks the OAuth apps (same key as tokens) that require DPoP, with the token
	// endpoint's last nonce.
	dpopNonces map[string]string
}

// Options configure a Connector.
type Options struct {
	Client *http.Client     // default: connector.NewHTTPClient()
	Now    func() time.Time // default: time.Now
}

// New returns a Connector.
func New(o Options) *Connector {
	if o.Client == nil {
		o.Client = connector.NewHTTPClient()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Connector{client: o.Client, now: o.Now, limits: map[string]*bucket{}, ids: map[string]string{},
		tokens: map[string]oauthToken{}, dpopNonces: map[string]string{}}
}

// apiError is Okta's error object.
type apiError struct {
	ErrorCode    string `json:"errorCode"`
	ErrorSummary string `json:"errorSummary"`
	ErrorCauses  []struct {
		ErrorSummary string `json:"errorSummary"`
	} `json:"errorCauses"`
}

func (e apiError) causes() string {
	var parts []string
	for _, c := range e.ErrorCauses {
		parts = append(parts, c.ErrorSummary)
	}
	return strings.Join(parts, "; ")
}

// Rotate changes the account's password from old to new. Its errors wrap
// connector.ErrNotChanged when the change request was never sent (the user lookup or the token
// failed) or Okta refused it at authentication (401), which Okta checks before anything else.
func (c *Connector) Rotate(ctx context.Context, a connector.Account, old, new secret.Secret) error {
	body := map[string]any{"oldPassword": map[string]string{"value": old.Reveal()},
		"newPassword": map[string]string{"value": new.Reveal()}}
	var id string
	var status int
	var oktaErr apiError
	for try := 0; ; try++ {
		var err error
		if id, err = c.userID(ctx, a, try > 0); err != nil {
			if try == 0 { // nothing was sent yet; after a 404 from change_password, be careful
				return connector.NotChanged(err)
			}
			return err
		}
		status, oktaErr, err = c.call(ctx, a, "credentials", http.MethodPost, "/api/v1/users/"+url.PathEscape(id)+"/credentials/change_password", body, nil)
		if err != nil {
			return err
		}
		if status != http.StatusNotFound || try > 0 {
			break // a 404 may mean the cached id is stale (the user was recreated): look it up again once
		}
	}
	switch {
	case status == http.StatusOK:
		return nil
	case status == http.StatusUnauthorized:
		return connector.NotChanged(classify(status, oktaErr, "change_password"))
	case status == http.StatusForbidden && oktaErr.ErrorCode == "E0000014" && isTrue(a.Target.Fields[FieldAdminReset]):
		return c.afterCredentialRefusal(ctx, a, id, old, new, status, oktaErr)
	default:
		return classify(status, oktaErr, "change_password")
	}
}

// afterCredentialRefusal handles change_password's 403 E0000014 ("Update of credentials
// failed") when the record allows an admin reset. Okta answers the same status and code whether
// the old password is wrong or the new one breaks the password policy (complexity, history),
// and only its cause text, which is not a contract, tells them apart. So the connector asks
// Okta instead: the Authn API checks the old password. Refused: the old password is what was
// wrong, and the new one is set as admin. Accepted: the new password is what Okta refused, which
// an admin set must not get around (it skips the history rule). When the record turns Authn
// checks off, the admin set is sent with strict=true, so that Okta applies history and
// minimum age to it as well.
func (c *Connector) afterCredentialRefusal(ctx context.Context, a connector.Account, id string, old, new secret.Secret, status int, refusal apiError) error {
	if !c.CanVerify(a) {
		return c.adminSet(ctx, a, id, new, true)
	}
	err := c.Verify(ctx, a, old)
	switch {
	case errors.Is(err, connector.ErrRejected):
		return c.adminSet(ctx, a, id, new, false)
	case err == nil:
		ce := classify(status, refusal, "change_password")
		ce.Code = "password_policy"
		ce.Message = "Okta refused the new password: the old one is right, so the new one breaks the password policy (complexity, history or minimum age); no admin reset. " + ce.Message
		return ce
	default:
		return fmt.Errorf("okta: change_password was refused (HTTP %d E0000014) and checking the old password to choose an admin reset failed: %w", status, err)
	}
}

// adminSet sets the password without the old one (the record allows it with Okta Admin Reset);
// strict makes Okta enforce the history and minimum-age rules too.
func (c *Connector) adminSet(ctx context.Context, a connector.Account, id string, new secret.Secret, strict bool) error {
	body := map[string]any{"credentials": map[string]any{"password": map[string]string{"value": new.Reveal()}}}
	path := "/api/v1/users/" + url.PathEscape(id)
	if strict {
		path += "?strict=true"
	}
	status, oktaErr, err := c.call(ctx, a, "users", http.MethodPost, path, body, nil)
	if err != nil {
		return err
	}
	if status == http.StatusOK {
		return nil
	}
	if status == http.StatusUnauthorized {
		return connector.NotChanged(classify(status, oktaErr, "admin set password"))
	}
	return classify(status, oktaErr, "admin set password")
}

// Verify checks a password with the Authn API. Primary authentication passing (SUCCESS,
// PASSWORD_EXPIRED, PASSWORD_WARN, MFA_*) means the password is right; 401 E0000004 means it
// is not. A locked-out account says nothing about the password.
func (c *Connector) Verify(ctx context.Context, a connector.Account, pw secret.Secret) error {
	var out struct {
		Status string `json:"status"`
	}
	body := map[string]string{"username": a.Login, "password": pw.Reveal()}
	status, oktaErr, err := c.call(ctx, a, "authn", http.MethodPost, "/api/v1/authn", body, &out)
	if err != nil {
		return err
	}
	switch {
	case status == http.StatusOK && out.Status == "LOCKED_OUT":
		return connector.Permanent("locked_out", "the Okta account is locked out: the password cannot be checked", nil)
	case status == http.StatusOK:
		return nil
	case status == http.StatusUnauthorized && oktaErr.ErrorCode == "E0000004":
		return connector.ErrRejected
	default:
		return classify(status, oktaErr, "authn")
	}
}

// CanReconcile reports whether the record allows an admin reset (Okta Admin Reset = True).
func (c *Connector) CanReconcile(a connector.Account) bool {
	return isTrue(a.Target.Fields[FieldAdminReset])
}

// CanVerify reports whether the record lets the connector check passwords (default yes).
func (c *Connector) CanVerify(a connector.Account) bool {
	v, ok := a.Target.Fields[FieldVerify]
	return !ok || !isFalse(v)
}

// userID finds the user by login with GET /api/v1/users/{login}, never by listing users, and
// remembers it (fresh forces a new lookup).
func (c *Connector) userID(ctx context.Context, a connector.Account, fresh bool) (string, error) {
	if a.Login == "" {
		return "", connector.Permanent("no_login", "the pamUser record has no login", nil)
	}
	key := strings.TrimRight(a.Target.URL, "/") + " " + a.Login
	c.mu.Lock()
	id, ok := c.ids[key]
	c.mu.Unlock()
	if ok && !fresh {
		return id, nil
	}
	var user struct {
		ID string `json:"id"`
	}
	status, oktaErr, err := c.call(ctx, a, "user", http.MethodGet, "/api/v1/users/"+url.PathEscape(a.Login), nil, &user)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", classify(status, oktaErr, "get user")
	}
	if user.ID == "" {
		return "", connector.Permanent("bad_response", "Okta returned a user without an id", nil)
	}
	c.mu.Lock()
	c.ids[key] = user.ID
	c.mu.Unlock()
	return user.ID, nil
}

// call sends one request, honouring the org's rate-limit headers, and decodes a 2xx body into
// out or an error body into the returned apiError. Errors raised before the request was sent,
// and Okta's refusals of the request's token, wrap connector.ErrNotChanged.
func (c *Connector) call(ctx context.Context, a connector.Account, class, method, path string, body, out any) (int, apiError, error) {
	base := strings.TrimRight(a.Target.URL, "/")
	if base == "" {
		return 0, apiError{}, connector.NotChanged(connector.Permanent("no_org_url", "the resource record has no Okta org URL (url field)", nil))
	}
	var cred credential
	if class != "authn" || !usesOAuth(a) { // Authn takes no token from an OAuth app: it is a public call
		var err error
		if cred, err = c.authorization(ctx, a, base); err != nil {
			return 0, apiError{}, connector.NotChanged(err)
		}
	}
	b := c.bucket(base + " " + class)
	if err := b.wait(ctx, c.now); err != nil {
		return 0, apiError{}, connector.NotChanged(err)
	}
	var learned http.Header // an answer's headers, for the bucket (none without an answer, or for a 429)
	defer func() { b.done(learned, c.now()) }()
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return 0, apiError{}, connector.NotChanged(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, apiError{}, connector.NotChanged(connector.Permanent("bad_org_url", "the Okta org URL is not a valid URL", nil))
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cred.header != "" {
		req.Header.Set("Authorization", cred.header)
	}
	if cred.dpop != nil {
		proof, err := dpopProof(cred.dpop, method, htu(req.URL), "", cred.token, c.now())
		if err != nil {
			return 0, apiError{}, connector.NotChanged(err)
		}
		req.Header.Set("DPoP", proof)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, apiError{}, ctx.Err()
		}
		return 0, apiError{}, connector.Transient("network", "Okta did not answer", redactURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, apiError{}, connector.Transient("network", "reading Okta's answer failed", err)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		// A 429 may come from another limit than the bucket's (per user for authn, or the
		// concurrency limit): wait for its own reset, and leave the bucket as it was.
		ce := connector.Transient("rate_limited", "Okta's rate limit was reached", nil)
		if _, reset, ok := rateHeaders(resp.Header, c.now()); ok {
			ce.RetryAt = reset
		} else {
			ce.RetryAt = c.now().Add(time.Second)
		}
		return resp.StatusCode, apiError{}, ce
	}
	learned = resp.Header
	if resp.StatusCode == http.StatusUnauthorized && !cred.token.IsZero() {
		return resp.StatusCode, apiError{}, connector.NotChanged(c.tokenRefused(resp.Header, cred))
	}
	if resp.StatusCode == http.StatusForbidden && strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_scope") {
		return resp.StatusCode, apiError{}, connector.NotChanged(connector.Permanent("okta_insufficient_scope",
			"the Okta app's token lacks a scope rotation needs ("+oauthScopes+")", nil))
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out != nil && len(raw) > 0 {
			if err := json.Unmarshal(raw, out); err != nil {
				return 0, apiError{}, connector.Permanent("bad_response", "Okta's answer is not the JSON expected", nil)
			}
		}
		return resp.StatusCode, apiError{}, nil
	}
	var oe apiError
	_ = json.Unmarshal(raw, &oe)
	return resp.StatusCode, oe, nil
}

// tokenRefused classifies a 401 to a call made with an OAuth access token by the error its
// WWW-Authenticate challenge names. invalid_token (or no error named) is a token that died
// before its expires_in: it is forgotten and the error is transient, so the retry mints
// another. invalid_dpop_proof is Okta refusing the call's DPoP proof: a new token would be
// refused the same way, so it is permanent, as is any other error a challenge names.
func (c *Connector) tokenRefused(h http.Header, cred credential) error {
	code, desc := challengeError(h.Values("WWW-Authenticate"))
	switch code {
	case "", "invalid_token":
		c.forgetToken(cred.token)
		return connector.Transient("okta_token_expired", "Okta refused the OAuth access token as expired or invalid; a new one is minted on retry", nil)
	case "invalid_dpop_proof":
		msg := "Okta refused the DPoP proof of an API call (invalid_dpop_proof"
		if desc != "" {
			msg += ": " + desc
		}
		return connector.Permanent("okta_dpop_proof_refused", msg+"); a new token would be refused the same way: "+
			"check that the resource record's url is the org URL the requests reach unchanged (no proxy rewriting the path or dropping the DPoP header) "+
			"and that this host's clock is right", nil)
	default:
		msg := "Okta refused the OAuth access token (" + code
		if desc != "" {
			msg += ": " + desc
		}
		return connector.Permanent("okta_oauth_"+code, msg+")", nil)
	}
}

// challengeError returns the error and error_description parameters of WWW-Authenticate
// challenges (RFC 6750 §3, RFC 9449 §7.1), made safe to show: printable, at most 200 bytes.
func challengeError(values []string) (code, desc string) {
	for _, v := range values {
		if m := challengeParam.FindAllStringSubmatch(v, -1); m != nil {
			for _, kv := range m {
				switch strings.ToLower(kv[1]) {
				case "error":
					code = strings.Map(func(r rune) rune {
						if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
							return r
						}
						return -1
					}, strings.ToLower(printable(kv[2], 64)))
				case "error_description":
					desc = printable(kv[2], 200)
				}
			}
			if code != "" {
				return code, desc
			}
		}
	}
	return "", ""
}

var challengeParam = regexp.MustCompile(`(?i)(?:^|[\s,])(error|error_description)\s*=\s*"((?:[^"\\]|\\.)*)"`)

// printable keeps the printable ASCII of s, up to max bytes.
func printable(s string, max int) string {
	b := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s) && len(b) < max; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f && c != '\\' {
			b = append(b, c)
		}
	}
	return string(b)
}

// classify turns an Okta error answer into a connector error: 5xx are transient, the rest
// permanent. The message carries Okta's code and summary, never a password.
func classify(status int, e apiError, op string) *connector.Error {
	msg := fmt.Sprintf("Okta refused %s: HTTP %d", op, status)
	if e.ErrorCode != "" {
		msg += " " + e.ErrorCode + " " + e.ErrorSummary
		if causes := e.causes(); causes != "" {
			msg += " (" + causes + ")"
		}
	}
	code := "okta_" + strings.ToLower(e.ErrorCode)
	switch {
	case e.ErrorCode == "":
		code = "okta_http_" + strconv.Itoa(status)
	case e.ErrorCode == "E0000011":
		msg += ": check the API token in the resource record"
	}
	if status >= 500 {
		return connector.Transient(code, msg, nil)
	}
	return connector.Permanent(code, msg, nil)
}

func isTrue(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	return s == "true" || s == "yes" || s == "1"
}

func isFalse(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	return s == "false" || s == "no" || s == "0"
}

// redactURLError keeps a transport error's kind without the URL's query.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func (c *Connector) bucket(key string) *bucket {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.limits[key]
	if !ok {
		b = &bucket{}
		c.limits[key] = b
	}
	return b
}

// bucket tracks one Okta rate-limit bucket from its X-Rate-Limit-* headers and holds calls back
// when it is spent. It counts its calls in flight: Okta counts them as they arrive, so an
// answer's Remaining does not yet know of the calls sent after it was written.
type bucket struct {
	mu        sync.Mutex
	known     bool
	remaining int
	reset     time.Time
	inflight  int
}

// wait returns when a call may be sent, and counts it as in flight until done.
func (b *bucket) wait(ctx context.Context, now func() time.Time) error {
	for {
		b.mu.Lock()
		t := now()
		if !b.known || b.remaining > 0 || !t.Before(b.reset) {
			if b.known && !t.Before(b.reset) {
				b.known = false // a new window: learn it from the next answer
			}
			b.remaining--
			b.inflight++
			b.mu.Unlock()
			return nil
		}
		wait := b.reset.Sub(t)
		b.mu.Unlock()
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// rateHeaders reads X-Rate-Limit-Remaining and -Reset. Reset is epoch seconds of the window's
// end; like Okta's SDKs it is taken relative to the answer's Date, plus a second, which guards
// against clock skew.
func rateHeaders(h http.Header, now time.Time) (remaining int, reset time.Time, ok bool) {
	rem, err1 := strconv.Atoi(h.Get("X-Rate-Limit-Remaining"))
	epoch, err2 := strconv.ParseInt(h.Get("X-Rate-Limit-Reset"), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, time.Time{}, false
	}
	reset = time.Unix(epoch, 0)
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		reset = now.Add(reset.Sub(date) + time.Second)
	}
	return rem, reset, true
}

// done ends a call that wait let through, learning the bucket's state from the answer's
// headers when h has them (nil: no answer, or one that says nothing of this bucket).
func (b *bucket) done(h http.Header, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight--
	rem, resetAt, ok := rateHeaders(h, now)
	if !ok {
		return
	}
	rem -= b.inflight // the calls still out may have reached Okta after this answer left
	if !b.known || resetAt.After(b.reset) {
		b.known, b.remaining, b.reset = true, rem, resetAt
		return
	}
	b.remaining = min(b.remaining, rem)
}
