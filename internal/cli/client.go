package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/vault"
)

// DefaultAddr is the server address used when KEYTURN_ADDR is not set.
const DefaultAddr = "http://127.0.0.1:8200"

// Environment variables read by the client commands (ARCHITECTURE.md §5).
const (
	EnvAddr      = "KEYTURN_ADDR"
	EnvTeam      = "KEYTURN_TEAM"
	EnvToken     = "KEYTURN_TOKEN"
	EnvKeyID     = "KEYTURN_KEY_ID"
	EnvCAFile    = "KEYTURN_CA_FILE" // PEM certificates to trust for an https KEYTURN_ADDR
	EnvKeySecret = "KEYTURN_KEY_SECRET"
)

// maxResponseBytes bounds how much of a response body the client reads.
const maxResponseBytes = 64 << 20

// maxPages bounds how many pages a list follows, in case a server keeps answering rel="next".
const maxPages = 10000

// Config is what a client needs to reach and authenticate to a keyturn server.
type Config struct {
	Addr      *url.URL
	Team      string
	Token     string // a bearer token; when empty, KeyID and KeySecret are exchanged for one
	KeyID     string
	KeySecret string
	RootCAs   *x509.CertPool // extra certificates to trust for https (KEYTURN_CA_FILE); nil: the system's
}

// ConfigFromEnv reads the client configuration through getenv. Missing or malformed settings
// are usage errors; their messages name the variables, never their secret values.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var c Config
	addr := strings.TrimSpace(getenv(EnvAddr))
	if addr == "" {
		addr = DefaultAddr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" {
		return c, Usagef("%s must be an http:// or https:// URL such as %s, without credentials or query", EnvAddr, DefaultAddr)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	c.Addr = u
	if caFile := strings.TrimSpace(getenv(EnvCAFile)); caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return c, Usagef("%s: cannot read %s", EnvCAFile, caFile)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return c, Usagef("%s: %s holds no PEM certificate", EnvCAFile, caFile)
		}
		c.RootCAs = pool
	}
	c.Team = strings.TrimSpace(getenv(EnvTeam))
	if c.Team == "" {
		return c, Usagef("%s is not set: set it to your team's name", EnvTeam)
	}
	c.Token = strings.TrimSpace(getenv(EnvToken))
	c.KeyID = strings.TrimSpace(getenv(EnvKeyID))
	c.KeySecret = strings.TrimSpace(getenv(EnvKeySecret))
	if c.Token != "" {
		return c, nil
	}
	switch {
	case c.KeyID == "" && c.KeySecret == "":
		return c, Usagef("no credentials: set %s, or %s and %s", EnvToken, EnvKeyID, EnvKeySecret)
	case c.KeyID == "":
		return c, Usagef("%s is set but %s is not: set both", EnvKeySecret, EnvKeyID)
	case c.KeySecret == "":
		return c, Usagef("%s is set but %s is not: set both", EnvKeyID, EnvKeySecret)
	case !isKeyID(c.KeyID):
		// Not echoed: it may be the secret, set in the wrong variable.
		return c, Usagef("%s is not an API key id (a UUID such as 0b5a8f1e-3c6d-4e2a-9f70-1d2c3b4a5e6f, as key rotate prints it)", EnvKeyID)
	}
	return c, nil
}

// isKeyID reports whether s can be an API key id: a UUID in its 36-character form.
func isKeyID(s string) bool {
	_, err := uuid.Parse(s)
	return len(s) == 36 && err == nil
}

// APIError is an error answer of the API: its HTTP status and {"code","message"} body.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// ConnError is a request that got no answer from the server: it could not be reached, or the
// connection failed before the whole answer came.
type ConnError struct{ Err error }

func (e *ConnError) Error() string { return e.Err.Error() }
func (e *ConnError) Unwrap() error { return e.Err }

// Client calls one team's part of the keyturn API.
type Client struct {
	cfg  Config
	http *http.Client

	mu    sync.Mutex // guards token; a Client may be used from several goroutines
	token string     // the bearer token, once known
}

// NewClient returns a client for cfg. A nil hc means a client with a one-minute timeout.
// Redirects are never followed, so credentials go only to the configured address.
func NewClient(cfg Config, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
		if cfg.RootCAs != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
			hc.Transport = tr
		}
	}
	copied := *hc
	copied.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{cfg: cfg, http: &copied, token: cfg.Token}
}

// teamPath returns the URL path of a team resource: /v1/teams/{team}/{elem...}, each element
// escaped.
func (c *Client) teamPath(elem ...string) string {
	var b strings.Builder
	b.WriteString("/v1/teams/")
	b.WriteString(url.PathEscape(c.cfg.Team))
	for _, e := range elem {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(e))
	}
	return b.String()
}

// url returns the absolute URL of an escaped path (as teamPath builds) under the configured
// address, with query q.
func (c *Client) url(escapedPath string, q url.Values) *url.URL {
	u := *c.cfg.Addr
	raw := c.cfg.Addr.EscapedPath() + escapedPath
	p, err := url.PathUnescape(raw)
	if err != nil {
		p = raw
	}
	u.Path, u.RawPath, u.RawQuery = p, raw, q.Encode()
	return &u
}

// authenticate obtains a bearer token from the key id and secret, once.
func (c *Client) authenticate(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" {
		return nil
	}
	body := map[string]string{"key_id": c.cfg.KeyID, "key_secret": c.cfg.KeySecret}
	var out struct {
		BearerToken string `json:"bearer_token"`
	}
	raw, _, err := c.send(ctx, http.MethodPost, c.url(c.teamPath("service_token"), nil), body, false)
	if err != nil {
		return fmt.Errorf("sign in as %s: %w", c.cfg.KeyID, err)
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.BearerToken == "" {
		return fmt.Errorf("sign in as %s: the server's answer holds no bearer_token", c.cfg.KeyID)
	}
	c.token = out.BearerToken
	return nil
}

// do sends an authenticated request and returns the response body and headers. A non-2xx
// answer becomes an *APIError.
func (c *Client) do(ctx context.Context, method string, u *url.URL, body any) ([]byte, http.Header, error) {
	raw, h, _, err := c.doStatus(ctx, method, u, body)
	return raw, h, err
}

// doStatus is do that also returns the HTTP status of a 2xx answer.
func (c *Client) doStatus(ctx context.Context, method string, u *url.URL, body any) ([]byte, http.Header, int, error) {
	if err := c.authenticate(ctx); err != nil {
		return nil, nil, 0, err
	}
	return c.exchange(ctx, method, u, body, true)
}

func (c *Client) send(ctx context.Context, method string, u *url.URL, body any, withToken bool) ([]byte, http.Header, error) {
	raw, h, _, err := c.exchange(ctx, method, u, body, withToken)
	return raw, h, err
}

func (c *Client) exchange(ctx context.Context, method string, u *url.URL, body any, withToken bool) ([]byte, http.Header, int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "keyturn-cli")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if withToken {
		c.mu.Lock()
		token := c.token
		c.mu.Unlock()
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is already in our message
		}
		return nil, nil, 0, fmt.Errorf("%s %s: %w", method, u.Redacted(), &ConnError{err})
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%s %s: read the answer: %w", method, u.Redacted(), &ConnError{err})
	}
	if len(raw) > maxResponseBytes {
		return nil, nil, 0, fmt.Errorf("%s %s: the answer is larger than %d bytes", method, u.Redacted(), maxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := &APIError{Status: resp.StatusCode}
		var eb struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(raw, &eb) == nil {
			apiErr.Code, apiErr.Message = eb.Code, eb.Message
		}
		return nil, resp.Header, 0, apiErr
	}
	return raw, resp.Header, resp.StatusCode, nil
}

// getJSON GETs a team resource and decodes it into out (when not nil); it returns the raw body.
func (c *Client) getJSON(ctx context.Context, u *url.URL, out any) ([]byte, http.Header, error) {
	raw, h, err := c.do(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, nil, fmt.Errorf("GET %s: unexpected answer: %w", u.Redacted(), err)
		}
	}
	return raw, h, nil
}

// RecordInput is the body of record create and update requests.
type RecordInput struct {
	Type     string  `json:"type"`
	Title    string  `json:"title"`
	Folder   string  `json:"folder"`
	Fields   []Field `json:"fields"`
	Custom   []Field `json:"custom"`
	Notes    string  `json:"notes"`
	Revision *int64  `json:"revision,omitempty"`
}

// The record shapes are the vault's own, as the API serves them.
type (
	Record  = vault.Record
	Field   = vault.Field
	Summary = vault.Summary
)

// Version is one password version of a record.
type Version struct {
	Version   int64   `json:"version"`
	State     string  `json:"state"`
	Value     *string `json:"value,omitempty"`
	CreatedAt string  `json:"created_at"`
	UpdatedAt string  `json:"updated_at"`
}

// ListFilter selects records to list; empty fields do not filter.
type ListFilter struct {
	Type, Folder, Title string
}

// CreateRecord creates a record and returns it with the raw answer.
func (c *Client) CreateRecord(ctx context.Context, in RecordInput) (Record, []byte, error) {
	in.Revision = nil
	return c.recordCall(ctx, http.MethodPost, c.url(c.teamPath("records"), nil), in)
}

// GetRecord returns a record with its values, and the raw answer.
func (c *Client) GetRecord(ctx context.Context, uid string) (Record, []byte, error) {
	return c.recordCall(ctx, http.MethodGet, c.url(c.teamPath("records", uid), nil), nil)
}

// UpdateRecord replaces a record's contents; in.Revision must be the revision read.
func (c *Client) UpdateRecord(ctx context.Context, uid string, in RecordInput) (Record, []byte, error) {
	if in.Revision == nil {
		return Record{}, nil, errors.New("update record: no revision")
	}
	return c.recordCall(ctx, http.MethodPut, c.url(c.teamPath("records", uid), nil), in)
}

// recordCall sends a record request (see call) and returns the record answered with the raw
// answer.
func (c *Client) recordCall(ctx context.Context, method string, u *url.URL, body any) (Record, []byte, error) {
	var rec Record
	raw, err := c.call(ctx, method, u, body, &rec)
	if err != nil {
		return Record{}, nil, err
	}
	return rec, raw, nil
}

// DeleteRecord deletes a record.
func (c *Client) DeleteRecord(ctx context.Context, uid string) error {
	_, _, err := c.do(ctx, http.MethodDelete, c.url(c.teamPath("records", uid), nil), nil)
	return err
}

// ListRecords returns every record matching f, following the Link rel="next" header from page
// to page.
func (c *Client) ListRecords(ctx context.Context, f ListFilter) ([]Summary, error) {
	q := url.Values{}
	for k, v := range map[string]string{"type": f.Type, "folder": f.Folder, "title": f.Title} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return listAll[Summary](ctx, c, c.url(c.teamPath("records"), q), "list records")
}

// listAll GETs a list from u and every page after it, following the Link rel="next" header,
// and returns all their items (an empty, non-nil slice when there are none).
func listAll[T any](ctx context.Context, c *Client, u *url.URL, what string) ([]T, error) {
	out := []T{}
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("%s: stopped after %d pages", what, maxPages)
		}
		var body struct {
			List []T `json:"list"`
		}
		_, h, err := c.getJSON(ctx, u, &body)
		if err != nil {
			return nil, err
		}
		out = append(out, body.List...)
		next, err := c.nextLink(u, h)
		if err != nil || next == nil {
			return out, err
		}
		u = next
	}
}

// nextLink returns the target of the Link rel="next" header, resolved against the request URL,
// or nil when there is none. A link to another server is refused: the token must not leave.
func (c *Client) nextLink(base *url.URL, h http.Header) (*url.URL, error) {
	target := nextTarget(h.Values("Link"))
	if target == "" {
		return nil, nil
	}
	ref, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("the server's Link header is malformed: %w", err)
	}
	next := base.ResolveReference(ref)
	if next.Scheme != c.cfg.Addr.Scheme || next.Host != c.cfg.Addr.Host {
		return nil, fmt.Errorf("the server's next page is on another server (%s): not following it", next.Host)
	}
	if next.String() == base.String() {
		return nil, errors.New("the server's next page is the same page: not following it")
	}
	return next, nil
}

// nextTarget finds the URI of the rel="next" link in Link header values (RFC 8288).
func nextTarget(values []string) string {
	for _, v := range values {
		for {
			v = strings.TrimLeft(v, " \t,")
			if !strings.HasPrefix(v, "<") {
				break
			}
			end := strings.IndexByte(v, '>')
			if end < 0 {
				break
			}
			target := v[1:end]
			v = v[end+1:]
			// The link's parameters run to the next comma outside a quoted string.
			i, quoted := 0, false
		scan:
			for ; i < len(v); i++ {
				switch c := v[i]; {
				case c == '"':
					quoted = !quoted
				case c == '\\' && quoted:
					i++
				case c == ',' && !quoted:
					break scan
				}
			}
			i = min(i, len(v))
			if hasRel(v[:i], "next") {
				return target
			}
			v = v[i:]
		}
	}
	return ""
}

// hasRel reports whether link parameters such as `; rel="prev next"` include relation rel.
func hasRel(params, rel string) bool {
	for _, p := range strings.Split(params, ";") {
		name, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "rel") {
			continue
		}
		for _, r := range strings.Fields(strings.Trim(strings.TrimSpace(val), `"`)) {
			if strings.EqualFold(r, rel) {
				return true
			}
		}
	}
	return false
}

// Versions returns a record's password versions, with their values when reveal is set, and
// the raw answer.
func (c *Client) Versions(ctx context.Context, uid string, reveal bool) ([]Version, []byte, error) {
	var q url.Values
	if reveal {
		q = url.Values{"reveal": {"true"}}
	}
	var body struct {
		List []Version `json:"list"`
	}
	raw, _, err := c.getJSON(ctx, c.url(c.teamPath("records", uid, "versions"), q), &body)
	if err != nil {
		return nil, nil, err
	}
	return body.List, raw, nil
}

// Resolve returns the JSON value a Keeper notation reference names, and the raw answer.
func (c *Client) Resolve(ctx context.Context, ref string) (json.RawMessage, []byte, error) {
	var body struct {
		Value json.RawMessage `json:"value"`
	}
	raw, _, err := c.getJSON(ctx, c.url(c.teamPath("notation"), url.Values{"ref": {ref}}), &body)
	if err != nil {
		return nil, nil, err
	}
	if body.Value == nil {
		return nil, nil, errors.New("the server's answer holds no value")
	}
	return body.Value, raw, nil
}

// The identity shapes are the auth service's own, as the API serves them.
type (
	User = auth.User
	Key  = auth.Key
	Role = auth.Role
)

// IssuedKey is a freshly issued API key with the only copy of its secret.
type IssuedKey struct {
	Key
	Secret string `json:"secret"`
}

// UserFilter selects service users to list; empty fields do not filter.
type UserFilter struct {
	Contains, StartsWith, Status string
	PageSize                     int // users per request; 0 means the server's default
}

// UserInput is the body of a service user create request; empty roles and folders are left out
// (no roles; every folder).
type UserInput struct {
	Name    string   `json:"name"`
	Roles   []string `json:"roles,omitempty"`
	Folders []string `json:"folders,omitempty"`
}

// UserChange is the body of a service user update request: nil fields are not sent and stay as
// they are; a pointer to an empty slice clears the roles, or grants every folder.
type UserChange struct {
	Status  *string   `json:"status,omitempty"`
	Roles   *[]string `json:"roles,omitempty"`
	Folders *[]string `json:"folders,omitempty"`
}

// call sends an authenticated request and decodes a 2xx answer into out; it returns the raw
// answer.
func (c *Client) call(ctx context.Context, method string, u *url.URL, body, out any) ([]byte, error) {
	raw, _, err := c.do(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("%s %s: unexpected answer: %w", method, u.Redacted(), err)
	}
	return raw, nil
}

// getList GETs a list answered in one page, {"list": [...]}, and returns its items (an empty,
// non-nil slice when there are none) and the raw answer.
func getList[T any](ctx context.Context, c *Client, u *url.URL) ([]T, []byte, error) {
	var body struct {
		List []T `json:"list"`
	}
	raw, err := c.call(ctx, http.MethodGet, u, nil, &body)
	if err != nil {
		return nil, nil, err
	}
	if body.List == nil {
		body.List = []T{}
	}
	return body.List, raw, nil
}

// ListUsers returns every service user of the team matching f, following the Link rel="next"
// header from page to page.
func (c *Client) ListUsers(ctx context.Context, f UserFilter) ([]User, error) {
	q := url.Values{}
	for k, v := range map[string]string{"contains": f.Contains, "starts_with": f.StartsWith, "status": f.Status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.PageSize > 0 {
		q.Set("count", strconv.Itoa(f.PageSize))
	}
	return listAll[User](ctx, c, c.url(c.teamPath("service_users"), q), "list service users")
}

// CreateUser creates a service user and returns it with the raw answer.
func (c *Client) CreateUser(ctx context.Context, in UserInput) (User, []byte, error) {
	var u User
	raw, err := c.call(ctx, http.MethodPost, c.url(c.teamPath("service_users"), nil), in, &u)
	return u, raw, err
}

// GetUser returns a service user and the raw answer.
func (c *Client) GetUser(ctx context.Context, name string) (User, []byte, error) {
	var u User
	raw, err := c.call(ctx, http.MethodGet, c.url(c.teamPath("service_users", name), nil), nil, &u)
	return u, raw, err
}

// UpdateUser changes what ch holds of a service user and returns the user with the raw answer.
func (c *Client) UpdateUser(ctx context.Context, name string, ch UserChange) (User, []byte, error) {
	var u User
	raw, err := c.call(ctx, http.MethodPut, c.url(c.teamPath("service_users", name), nil), ch, &u)
	return u, raw, err
}

// UserKeys returns a service user's API keys (never their secrets) and the raw answer.
func (c *Client) UserKeys(ctx context.Context, name string) ([]Key, []byte, error) {
	return getList[Key](ctx, c, c.url(c.teamPath("service_users", name, "keys"), nil))
}

// RotateUserKey issues a new API key to a service user; the server makes the older keys expire
// soon. The answer holds the only copy of the new key's secret.
func (c *Client) RotateUserKey(ctx context.Context, name string) (IssuedKey, []byte, error) {
	var k IssuedKey
	raw, err := c.call(ctx, http.MethodPost, c.url(c.teamPath("service_users", name, "keys"), nil), nil, &k)
	if err != nil {
		return IssuedKey{}, nil, err
	}
	if k.ID == "" || k.Secret == "" {
		return IssuedKey{}, nil, errors.New("the server's answer holds no key id or secret")
	}
	return k, raw, nil
}

// DeleteUserKey deletes one of a service user's API keys.
func (c *Client) DeleteUserKey(ctx context.Context, name, keyID string) error {
	_, _, err := c.do(ctx, http.MethodDelete, c.url(c.teamPath("service_users", name, "keys", keyID), nil), nil)
	return err
}

// The rotation shapes are the rotation engine's own, as the API serves them.
type (
	RotationSettings = rotation.Settings
	RotationInfo     = rotation.Info
	DriftInfo        = rotation.DriftInfo
	Run              = rotation.Run
	RunError         = rotation.RunError
	ExecResult       = script.Result
	ScriptInfo       = rotation.ScriptInfo
	AuditEvent       = audit.Event
)

// RunFilter selects rotation runs to list; empty fields do not filter.
type RunFilter struct {
	RecordUID, Status string
}

// ScriptInput is the body of a script attach request. A zero TimeoutS means the server's
// default.
type ScriptInput struct {
	Name           string   `json:"name"`
	ContentBase64  string   `json:"content_base64"`
	Command        string   `json:"command,omitempty"`
	CredentialUIDs []string `json:"credential_uids,omitempty"`
	TimeoutS       int      `json:"timeout_s,omitempty"`
}

// Started is the answer to a rotate request: the run's id and status, and the whole run when
// the request waited and the run ended in time.
type Started struct {
	RotationID string
	Status     string
	Created    bool // a new run; false when the record's active run was returned instead
	Run        *Run // the finished run, when a wait ended it
}

// SetRotation stores a pamUser record's rotation settings (replacing any before them) and
// returns them as stored, with the raw answer.
func (c *Client) SetRotation(ctx context.Context, uid string, s RotationSettings) (RotationSettings, []byte, error) {
	var out RotationSettings
	raw, err := c.call(ctx, http.MethodPut, c.url(c.teamPath("records", uid, "rotation"), nil), s, &out)
	return out, raw, err
}

// RotationInfo returns a record's rotation settings and state, and the raw answer.
func (c *Client) RotationInfo(ctx context.Context, uid string) (RotationInfo, []byte, error) {
	var out RotationInfo
	raw, err := c.call(ctx, http.MethodGet, c.url(c.teamPath("records", uid, "rotation"), nil), nil, &out)
	return out, raw, err
}

// Rotate starts a rotation of a record, or returns its active one. A positive wait asks the
// server to hold the answer until the run ends or wait passes.
func (c *Client) Rotate(ctx context.Context, uid string, wait time.Duration) (Started, []byte, error) {
	var q url.Values
	if wait > 0 {
		q = url.Values{"wait": {wait.String()}}
	}
	u := c.url(c.teamPath("records", uid, "rotate"), q)
	raw, _, status, err := c.doStatus(ctx, http.MethodPost, u, nil)
	if err != nil {
		return Started{}, nil, err
	}
	var body struct {
		RotationID string `json:"rotation_id"`
		Status     string `json:"status"`
		ID         string `json:"id"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return Started{}, nil, fmt.Errorf("POST %s: unexpected answer: %w", u.Redacted(), err)
	}
	st := Started{RotationID: body.RotationID, Status: body.Status, Created: status == http.StatusAccepted}
	if body.ID != "" { // the whole run: the wait ended it
		var run Run
		if err := json.Unmarshal(raw, &run); err != nil {
			return Started{}, nil, fmt.Errorf("POST %s: unexpected answer: %w", u.Redacted(), err)
		}
		st.RotationID, st.Status, st.Run = run.ID, run.Status, &run
	}
	if st.RotationID == "" {
		return Started{}, nil, fmt.Errorf("POST %s: the server's answer holds no rotation id", u.Redacted())
	}
	return st, raw, nil
}

// GetRun returns a rotation run with its exec log, and the raw answer.
func (c *Client) GetRun(ctx context.Context, id string) (Run, []byte, error) {
	var out Run
	raw, err := c.call(ctx, http.MethodGet, c.url(c.teamPath("rotations", id), nil), nil, &out)
	return out, raw, err
}

// ListRuns returns every rotation run matching f, newest first, following the Link
// rel="next" header from page to page.
func (c *Client) ListRuns(ctx context.Context, f RunFilter) ([]Run, error) {
	q := url.Values{}
	for k, v := range map[string]string{"record_uid": f.RecordUID, "status": f.Status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return listAll[Run](ctx, c, c.url(c.teamPath("rotations"), q), "list rotations")
}

// AddScript attaches a script to a record and returns it (never its content) with the raw
// answer.
func (c *Client) AddScript(ctx context.Context, uid string, in ScriptInput) (ScriptInfo, []byte, error) {
	var out ScriptInfo
	raw, err := c.call(ctx, http.MethodPost, c.url(c.teamPath("records", uid, "scripts"), nil), in, &out)
	return out, raw, err
}

// Scripts returns a record's scripts in the order they run, and the raw answer.
func (c *Client) Scripts(ctx context.Context, uid string) ([]ScriptInfo, []byte, error) {
	return getList[ScriptInfo](ctx, c, c.url(c.teamPath("records", uid, "scripts"), nil))
}

// DeleteScript detaches a script from a record.
func (c *Client) DeleteScript(ctx context.Context, uid, scriptID string) error {
	_, _, err := c.do(ctx, http.MethodDelete, c.url(c.teamPath("records", uid, "scripts", scriptID), nil), nil)
	return err
}

// ScriptParams returns the params a pamUser record's scripts would receive in a rotation now
// (as JSON, with <, > and & unescaped as a script decodes them), secrets masked unless reveal.
func (c *Client) ScriptParams(ctx context.Context, uid string, reveal bool) ([]byte, error) {
	q := url.Values{"reveal": {strconv.FormatBool(reveal)}}
	raw, _, err := c.do(ctx, http.MethodGet, c.url(c.teamPath("records", uid, "script_params"), q), nil)
	if err != nil {
		return nil, err
	}
	if !json.Valid(raw) {
		return nil, errors.New("the server's answer is not JSON")
	}
	return unescapeHTML(raw), nil
}

// AuditEvents returns up to limit of the team's audit events after sequence number after,
// oldest first (limit 0: the server's default), and the raw answer.
func (c *Client) AuditEvents(ctx context.Context, after int64, limit int) ([]AuditEvent, []byte, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return getList[AuditEvent](ctx, c, c.url(c.teamPath("audit_events"), q))
}
