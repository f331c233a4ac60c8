package sink

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/secret"
)

// Headers of a webhook delivery.
const (
	HeaderTimestamp = "X-Keyturn-Timestamp" // Unix seconds when the delivery was signed
	HeaderSignature = "X-Keyturn-Signature" // "v1=" + hex HMAC-SHA256(key, timestamp + "." + body)
)

// Webhook POSTs each batch as {"events": [...]} to a URL, signed with a shared key so that the
// receiver can tell keyturn sent it and when (reject old timestamps to stop replays). Any 2xx
// answer acknowledges the batch; a redirect is not followed.
type Webhook struct {
	url    string
	key    secret.Secret
	client *http.Client
	now    func() time.Time
}

// NewWebhook returns a webhook sink; client may be nil (a client with a 10 s timeout).
func NewWebhook(target string, key secret.Secret, client *http.Client) (*Webhook, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("audit webhook: %q is not an http(s) URL", redactURL(target))
	}
	if key.IsZero() {
		return nil, fmt.Errorf("audit webhook %s: the signing key is empty", redactURL(target))
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	copied := *client
	// A redirect is an answer, not a new destination: events go only where they were configured.
	copied.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Webhook{url: target, key: key, client: &copied, now: time.Now}, nil
}

// Send posts the batch and waits for a 2xx.
func (w *Webhook) Send(ctx context.Context, events []audit.Exported) error {
	body, err := json.Marshal(map[string]any{"events": events})
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("audit webhook %s: %w", redactURL(w.url), err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keyturn")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, "v1="+hex.EncodeToString(sign(w.key.Bytes(), ts, body)))
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("audit webhook %s did not answer", redactURL(w.url))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("audit webhook %s answered %d", redactURL(w.url), resp.StatusCode)
	}
	return nil
}

// Close does nothing: each delivery is a request of its own.
func (w *Webhook) Close() error { return nil }

// VerifySignature checks a delivery's signature header against the shared key, for receivers
// (and tests): it reports whether body was signed with key at timestamp.
func VerifySignature(key []byte, timestamp string, body []byte, header string) bool {
	got, err := hex.DecodeString(strings.TrimPrefix(header, "v1="))
	return err == nil && strings.HasPrefix(header, "v1=") && hmac.Equal(got, sign(key, timestamp, body))
}

func sign(key []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// redactURL keeps a URL's scheme, host and path: its query or user info may hold a token.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(an unparsable URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
