package emulator

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is an emulator served over loopback HTTP.
type env struct {
	t     testing.TB
	em    *Emulator
	srv   *httptest.Server
	clock *clock
}

// start serves New(opts) with a fake clock (unless opts.Now is set).
func start(t testing.TB, opts Options) *env {
	t.Helper()
	c := newClock()
	if opts.Now == nil {
		opts.Now = c.Now
	}
	em := New(opts)
	srv := httptest.NewServer(em)
	t.Cleanup(func() {
		em.Close()
		srv.Close()
	})
	return &env{t: t, em: em, srv: srv, clock: c}
}

type resp struct {
	*http.Response
	body []byte
}

// raw sends a request with exactly the given headers (pairs) and body (string, []byte,
// nil, or a value to marshal).
func (v *env) raw(method, path string, body any, headers ...string) *resp {
	v.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			v.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	u := path
	if !strings.HasPrefix(path, "http") {
		u = v.srv.URL + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		v.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := v.srv.Client().Do(req)
	if err != nil {
		v.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		v.t.Fatal(err)
	}
	return &resp{res, b}
}

// api sends a request authenticated with the SSWS token.
func (v *env) api(method, path string, body any) *resp {
	v.t.Helper()
	return v.raw(method, path, body, "Authorization", "SSWS "+v.em.Token())
}

func (r *resp) json(t testing.TB, into any) {
	t.Helper()
	if err := json.Unmarshal(r.body, into); err != nil {
		b := r.body
		if len(b) > 2000 {
			b = b[:2000]
		}
		t.Fatalf("body %s: %v", b, err)
	}
}

func (r *resp) status(t testing.TB, want int) {
	t.Helper()
	if r.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.Request.Method, r.Request.URL, r.StatusCode, want, r.body)
	}
}

var errorIDPattern = regexp.MustCompile(`^oae[A-Za-z0-9_-]{22}$`)

// oktaErr checks the exact Okta error shape, status and code, and returns the error.
func (r *resp) oktaErr(t testing.TB, status int, code string) oktaError {
	t.Helper()
	r.status(t, status)
	var m map[string]json.RawMessage
	r.json(t, &m)
	for _, k := range []string{"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("error body lacks %s: %s", k, r.body)
		}
	}
	if len(m) != 5 {
		t.Fatalf("error body has extra keys: %s", r.body)
	}
	var e oktaError
	r.json(t, &e)
	if e.ErrorCode != code || e.ErrorLink != code {
		t.Fatalf("errorCode %q errorLink %q, want %s: %s", e.ErrorCode, e.ErrorLink, code, r.body)
	}
	if !errorIDPattern.MatchString(e.ErrorID) {
		t.Fatalf("errorId %q", e.ErrorID)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(m["errorCauses"]), []byte("[")) {
		t.Fatalf("errorCauses is not an array: %s", r.body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return e
}

func causes(e oktaError) []string {
	var out []string
	for _, c := range e.ErrorCauses {
		out = append(out, c.ErrorSummary)
	}
	return out
}

// links parses Okta's Link headers, requiring one entry per header.
func links(t testing.TB, h http.Header) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, v := range h.Values("Link") {
		if strings.Count(v, "<") != 1 {
			t.Fatalf("Link header with more than one entry: %q", v)
		}
		m := regexp.MustCompile(`^<([^>]*)>; rel="([a-z]+)"$`).FindStringSubmatch(v)
		if m == nil {
			t.Fatalf("Link %q", v)
		}
		out[m[2]] = m[1]
	}
	return out
}

func changeBody(old, new string) map[string]any {
	return map[string]any{"oldPassword": map[string]string{"value": old}, "newPassword": map[string]string{"value": new}}
}

// ---- JWT signing with the standard library ----------------------------------------------

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signJWT signs claims with key (RSA or ECDSA) under alg; header gets alg and the extras.
func signJWT(t testing.TB, alg string, key crypto.Signer, header, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": alg}
	for k, v := range header {
		h[k] = v
	}
	hb, _ := json.Marshal(h)
	cb, _ := json.Marshal(claims)
	input := b64url(hb) + "." + b64url(cb)
	if alg == "none" {
		return input + "."
	}
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch k := key.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	case *ecdsa.PrivateKey:
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, k, sum[:])
		if err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64url(sig)
}

// publicJWK is the public JWK of key, for DPoP proofs.
func publicJWK(key crypto.Signer) map[string]any {
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "n": b64url(k.N.Bytes()), "e": b64url(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, err := k.Bytes() // 0x04 || X || Y
		if err != nil {
			return nil
		}
		return map[string]any{"kty": "EC", "crv": "P-256", "x": b64url(b[1:33]), "y": b64url(b[33:])}
	}
	return nil
}

var (
	rsaKeyOnce sync.Once
	rsaKey     *rsa.PrivateKey
)

// testRSAKey is one 2048-bit key shared by the tests (generating is slow under -race).
func testRSAKey(t testing.TB) *rsa.PrivateKey {
	rsaKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		rsaKey = k
	})
	return rsaKey
}
