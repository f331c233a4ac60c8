// Package rest rotates a password on any REST endpoint, declaratively: the resource record
// describes the change request (and optionally a verify request) as templates, and no script
// is needed.
package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
)

// ConfigField is the label of the resource record's custom field holding the Config as JSON.
const ConfigField = "REST Rotation"

// Request is one templated HTTP request. Templates see .URL (the resource's url), .User (the
// pamUser's login), .NewPassword, .OldPassword, .Password (the one being verified),
// .AdminLogin and .AdminSecret. In the body every value is JSON-escaped (write
// "{{.NewPassword}}" inside quotes); in the URL every value but .URL is path-escaped; headers
// take values as they are.
type Request struct {
	Method   string            `json:"method"`   // default POST
	URL      string            `json:"url"`      // default "{{.URL}}"
	Headers  map[string]string `json:"headers"`  // e.g. {"Authorization": "Bearer {{.AdminSecret}}"}
	Body     string            `json:"body"`     // e.g. {"user": "{{.User}}", "password": "{{.NewPassword}}"}
	Success  []int             `json:"success"`  // statuses meaning success; default 200, 201, 204
	Rejected []int             `json:"rejected"` // verify only: statuses meaning "wrong password"; default 401, 403
}

// Config is the declarative rotation of a REST endpoint.
type Config struct {
	Rotate Request  `json:"rotate"`
	Verify *Request `json:"verify,omitempty"`
}

// ParseConfig reads and checks a Config.
func ParseConfig(raw string) (Config, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%s: %v", ConfigField, err)
	}
	for name, r := range map[string]*Request{"rotate": &c.Rotate, "verify": c.Verify} {
		if r == nil {
			continue
		}
		if err := r.check(); err != nil {
			return Config{}, fmt.Errorf("%s %s: %w", ConfigField, name, err)
		}
	}
	return c, nil
}

func (r *Request) check() error {
	if r.Method == "" {
		r.Method = http.MethodPost
	}
	if r.URL == "" {
		r.URL = "{{.URL}}"
	}
	if len(r.Success) == 0 {
		r.Success = []int{200, 201, 204}
	}
	if len(r.Rejected) == 0 {
		r.Rejected = []int{401, 403}
	}
	for _, t := range append([]string{r.URL, r.Body}, headerValues(r.Headers)...) {
		if _, err := template.New("").Option("missingkey=error").Parse(t); err != nil {
			return err
		}
	}
	return nil
}

func headerValues(h map[string]string) []string {
	out := make([]string, 0, len(h))
	for _, v := range h {
		out = append(out, v)
	}
	return out
}

// Connector performs declarative REST rotations.
type Connector struct {
	client *http.Client
}

// New returns a Connector; a nil client means connector.NewHTTPClient().
func New(client *http.Client) *Connector {
	if client == nil {
		client = connector.NewHTTPClient()
	}
	return &Connector{client: client}
}

func config(a connector.Account) (Config, error) {
	raw, ok := a.Target.Fields[ConfigField]
	if !ok {
		return Config{}, connector.Permanent("rest_not_configured",
			fmt.Sprintf("the resource record has no %q custom field describing the REST rotation", ConfigField), nil)
	}
	c, err := ParseConfig(raw)
	if err != nil {
		return Config{}, connector.Permanent("rest_bad_config", err.Error(), nil)
	}
	return c, nil
}

// Rotate sends the rotate request. Its errors wrap connector.ErrNotChanged when the request
// was never sent (a bad configuration or template); any answer, or none, may have changed the
// target.
func (c *Connector) Rotate(ctx context.Context, a connector.Account, old, new secret.Secret) error {
	cfg, err := config(a)
	if err != nil {
		return connector.NotChanged(err)
	}
	status, retryAt, err := c.send(ctx, cfg.Rotate, a, map[string]string{"NewPassword": new.Reveal(), "OldPassword": old.Reveal()})
	if err != nil {
		return err
	}
	if slices.Contains(cfg.Rotate.Success, status) {
		return nil
	}
	return statusError(status, retryAt, "rotate")
}

// Verify sends the verify request; without one it cannot tell.
func (c *Connector) Verify(ctx context.Context, a connector.Account, pw secret.Secret) error {
	cfg, err := config(a)
	if err != nil {
		return err
	}
	if cfg.Verify == nil {
		return connector.Permanent("rest_no_verify", "the REST rotation has no verify request", nil)
	}
	status, retryAt, err := c.send(ctx, *cfg.Verify, a, map[string]string{"Password": pw.Reveal()})
	switch {
	case err != nil:
		return err
	case slices.Contains(cfg.Verify.Success, status):
		return nil
	case slices.Contains(cfg.Verify.Rejected, status):
		return connector.ErrRejected
	default:
		return statusError(status, retryAt, "verify")
	}
}

// CanVerify reports whether the record describes a verify request.
func (c *Connector) CanVerify(a connector.Account) bool {
	cfg, err := config(a)
	return err == nil && cfg.Verify != nil
}

// send renders and sends one request and returns the answer's status; errors raised before
// the request was sent wrap connector.ErrNotChanged.
func (c *Connector) send(ctx context.Context, r Request, a connector.Account, extra map[string]string) (int, time.Time, error) {
	values := map[string]string{"URL": a.Target.URL, "User": a.Login, "AdminLogin": a.Target.AdminLogin,
		"AdminSecret": a.Target.AdminSecret.Reveal(), "NewPassword": "", "OldPassword": "", "Password": ""}
	for k, v := range extra {
		values[k] = v
	}
	u, err := render(r.URL, values, func(k, v string) string {
		if k == "URL" {
			return v
		}
		return url.PathEscape(v)
	})
	if err != nil {
		return 0, time.Time{}, connector.NotChanged(err)
	}
	body, err := render(r.Body, values, func(_, v string) string {
		b, _ := json.Marshal(v)
		return string(b[1 : len(b)-1])
	})
	if err != nil {
		return 0, time.Time{}, connector.NotChanged(err)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, u, bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, time.Time{}, connector.NotChanged(connector.Permanent("rest_bad_config", "the REST request URL is not valid", nil))
	}
	for name, tmpl := range r.Headers {
		v, err := render(tmpl, values, func(_, v string) string { return v })
		if err != nil {
			return 0, time.Time{}, connector.NotChanged(err)
		}
		if strings.ContainsAny(v, "\r\n") {
			return 0, time.Time{}, connector.NotChanged(connector.Permanent("rest_bad_config", "header "+name+" would contain a line break", nil))
		}
		req.Header.Set(name, v)
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, time.Time{}, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may carry a templated secret
		}
		return 0, time.Time{}, connector.Transient("network", "the REST endpoint did not answer", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	var retryAt time.Time
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		retryAt = time.Now().Add(time.Duration(s) * time.Second)
	}
	return resp.StatusCode, retryAt, nil
}

// render executes a template with every value escaped for its context.
func render(tmpl string, values map[string]string, escape func(key, value string) string) (string, error) {
	t, err := template.New("").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", connector.Permanent("rest_bad_config", "a REST template does not parse: "+err.Error(), nil)
	}
	data := make(map[string]string, len(values))
	for k, v := range values {
		data[k] = escape(k, v)
	}
	var buf strings.Builder
	if err := t.Execute(&buf, data); err != nil {
		return "", connector.Permanent("rest_bad_config", "a REST template names an unknown value (use .URL, .User, .NewPassword, .OldPassword, .Password, .AdminLogin, .AdminSecret)", nil)
	}
	return buf.String(), nil
}

func statusError(status int, retryAt time.Time, op string) error {
	msg := fmt.Sprintf("the REST endpoint answered %s with HTTP %d", op, status)
	code := "rest_http_" + strconv.Itoa(status)
	if status == http.StatusTooManyRequests || status >= 500 {
		ce := connector.Transient(code, msg, nil)
		ce.RetryAt = retryAt
		return ce
	}
	return connector.Permanent(code, msg, nil)
}
