package okta

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
)

// Fields of the resource record for OAuth 2.0 ("API Services" app, private_key_jwt) instead of
// an SSWS token. The app must not require DPoP.
const (
	FieldClientID   = "Okta Client ID"   // custom text field: the app's client_id
	FieldPrivateKey = "Okta Private Key" // custom secret field: its private key, PEM (RSA or EC P-256)
	FieldKeyID      = "Okta Key ID"      // custom text field, optional: the key's kid
)

// oauthScopes are what rotation needs.
const oauthScopes = "okta.users.read okta.users.manage"

type oauthToken struct {
	bearer  secret.Secret
	expires time.Time
}

// usesOAuth reports whether the record describes an OAuth app rather than an SSWS token.
func usesOAuth(a connector.Account) bool { return a.Target.Fields[FieldClientID] != "" }

// authorization returns the Authorization header for the org: SSWS with the token in the
// password field, or Bearer with an access token from the OAuth app.
func (c *Connector) authorization(ctx context.Context, a connector.Account, base string) (string, error) {
	if !usesOAuth(a) {
		if a.Target.AdminSecret.IsZero() {
			return "", connector.Permanent("no_api_token", "the resource record has no Okta API token (password field)", nil)
		}
		return "SSWS " + a.Target.AdminSecret.Reveal(), nil
	}
	tok, err := c.accessToken(ctx, a, base)
	if err != nil {
		return "", err
	}
	return "Bearer " + tok.Reveal(), nil
}

// accessToken mints (or reuses, until a minute before it expires) an access token with a
// private_key_jwt client assertion.
func (c *Connector) accessToken(ctx context.Context, a connector.Account, base string) (secret.Secret, error) {
	clientID := a.Target.Fields[FieldClientID]
	pemKey := a.Target.Secrets[FieldPrivateKey]
	if pemKey.IsZero() {
		return secret.Secret{}, connector.Permanent("no_private_key",
			fmt.Sprintf("the resource record has %q but no secret custom field %q", FieldClientID, FieldPrivateKey), nil)
	}
	sum := sha256.Sum256(pemKey.Bytes())
	cacheKey := base + " " + clientID + " " + hex.EncodeToString(sum[:])
	c.mu.Lock()
	tok, ok := c.tokens[cacheKey]
	c.mu.Unlock()
	if ok && c.now().Before(tok.expires.Add(-time.Minute)) {
		return tok.bearer, nil
	}
	key, err := parsePrivateKey(pemKey)
	if err != nil {
		return secret.Secret{}, connector.Permanent("bad_private_key", err.Error(), nil)
	}
	assertion, err := clientAssertion(key, clientID, a.Target.Fields[FieldKeyID], base+"/oauth2/v1/token", c.now())
	if err != nil {
		return secret.Secret{}, connector.Permanent("bad_private_key", err.Error(), nil)
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {oauthScopes},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth2/v1/token", strings.NewReader(form.Encode()))
	if err != nil {
		return secret.Secret{}, connector.Permanent("bad_org_url", "the Okta org URL is not a valid URL", nil)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return secret.Secret{}, ctx.Err()
		}
		return secret.Secret{}, connector.Transient("network", "Okta did not answer the token request", redactURLError(err))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		TokenType   string `json:"token_type"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(raw, &out)
	switch {
	case resp.StatusCode == http.StatusOK && out.AccessToken != "" && strings.EqualFold(out.TokenType, "Bearer"):
	case resp.StatusCode == http.StatusOK && strings.EqualFold(out.TokenType, "DPoP"):
		return secret.Secret{}, connector.Permanent("okta_dpop_required", "the Okta app requires DPoP, which keyturn does not send: turn off \"Require DPoP\"", nil)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return secret.Secret{}, connector.Transient("okta_oauth_unavailable", fmt.Sprintf("Okta's token endpoint answered %d", resp.StatusCode), nil)
	default:
		msg := fmt.Sprintf("Okta refused the OAuth token request: HTTP %d %s", resp.StatusCode, out.Error)
		if out.Description != "" {
			msg += " (" + out.Description + ")"
		}
		return secret.Secret{}, connector.Permanent("okta_oauth_"+strings.ToLower(out.Error), msg, nil)
	}
	tok = oauthToken{bearer: secret.FromString(out.AccessToken), expires: c.now().Add(time.Duration(out.ExpiresIn) * time.Second)}
	c.mu.Lock()
	c.tokens[cacheKey] = tok
	c.mu.Unlock()
	return tok.bearer, nil
}

// parsePrivateKey reads a PEM private key: PKCS#8, PKCS#1 (RSA) or SEC 1 (EC).
func parsePrivateKey(pemKey secret.Secret) (crypto.Signer, error) {
	block, _ := pem.Decode(pemKey.Bytes())
	if block == nil {
		return nil, errors.New("the Okta private key is not PEM")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, errors.New("the Okta private key does not parse")
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("the Okta private key must be RSA or EC P-256")
		}
		return k, nil
	}
	return nil, errors.New("the Okta private key must be RSA or EC P-256")
}

// clientAssertion signs the private_key_jwt assertion: iss = sub = client_id, aud = the token
// endpoint, five minutes of validity and a random jti (Okta refuses a replayed one).
func clientAssertion(key crypto.Signer, clientID, kid, aud string, now time.Time) (string, error) {
	alg := "RS256"
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = "ES256"
	}
	header := map[string]string{"alg": alg, "typ": "JWT"}
	if kid != "" {
		header["kid"] = kid
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	claims := map[string]any{"iss": clientID, "sub": clientID, "aud": aud, "iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(), "jti": hex.EncodeToString(jti)}
	h, _ := json.Marshal(header)
	cl, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(cl)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		s, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:])
		if err != nil {
			return "", err
		}
		sig = s
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			return "", err
		}
		sig = append(fixed32(r), fixed32(s)...)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

func fixed32(n *big.Int) []byte {
	b := make([]byte, 32)
	return n.FillBytes(b)
}
