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
// an SSWS token. An app that requires DPoP (Okta's default for new apps) gets DPoP-bound tokens.
const (
	FieldClientID   = "Okta Client ID"   // custom text field: the app's client_id
	FieldPrivateKey = "Okta Private Key" // custom secret field: its private key, PEM (RSA or EC P-256)
	FieldKeyID      = "Okta Key ID"      // custom text field, optional: the key's kid
)

// oauthScopes are what rotation needs.
const oauthScopes = "okta.users.read okta.users.manage"

type oauthToken struct {
	token   secret.Secret
	expires time.Time
	dpop    *ecdsa.PrivateKey // the key a DPoP-bound token is bound to; nil for a Bearer token
}

// credential authenticates one API call: an SSWS token, a Bearer token, or a DPoP-bound token,
// which needs a fresh proof for each request.
type credential struct {
	header string        // the Authorization header
	token  secret.Secret // the OAuth access token; zero for SSWS
	dpop   *ecdsa.PrivateKey
}

// usesOAuth reports whether the record describes an OAuth app rather than an SSWS token.
func usesOAuth(a connector.Account) bool { return a.Target.Fields[FieldClientID] != "" }

// authorization returns the credential for the org: SSWS with the token in the password
// field, or an access token from the OAuth app (Bearer, or DPoP when the app requires it).
func (c *Connector) authorization(ctx context.Context, a connector.Account, base string) (credential, error) {
	if !usesOAuth(a) {
		if a.Target.AdminSecret.IsZero() {
			return credential{}, connector.Permanent("no_api_token", "the resource record has no Okta API token (password field)", nil)
		}
		return credential{header: "SSWS " + a.Target.AdminSecret.Reveal()}, nil
	}
	tok, err := c.accessToken(ctx, a, base)
	if err != nil {
		return credential{}, err
	}
	if tok.dpop != nil {
		return credential{header: "DPoP " + tok.token.Reveal(), token: tok.token, dpop: tok.dpop}, nil
	}
	return credential{header: "Bearer " + tok.token.Reveal(), token: tok.token}, nil
}

// forgetToken drops a cached access token that Okta refused before it expired.
func (c *Connector) forgetToken(token secret.Secret) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, t := range c.tokens {
		if t.token.Reveal() == token.Reveal() {
			delete(c.tokens, k)
		}
	}
}

// accessToken mints (or reuses, until a minute before it expires) an access token with a
// private_key_jwt client assertion. An app that requires DPoP answers the first request without
// a proof with invalid_dpop_proof, and one without its nonce with use_dpop_nonce: the request is
// made again with a proof from a fresh key (and the nonce), and the app is remembered, so that
// later tokens are asked for with a proof at once.
func (c *Connector) accessToken(ctx context.Context, a connector.Account, base string) (oauthToken, error) {
	clientID := a.Target.Fields[FieldClientID]
	pemKey := a.Target.Secrets[FieldPrivateKey]
	if pemKey.IsZero() {
		return oauthToken{}, connector.Permanent("no_private_key",
			fmt.Sprintf("the resource record has %q but no secret custom field %q", FieldClientID, FieldPrivateKey), nil)
	}
	sum := sha256.Sum256(pemKey.Bytes())
	cacheKey := base + " " + clientID + " " + hex.EncodeToString(sum[:])
	c.mu.Lock()
	tok, ok := c.tokens[cacheKey]
	nonce, dpopRequired := c.dpopNonces[cacheKey]
	c.mu.Unlock()
	if ok && c.now().Before(tok.expires.Add(-time.Minute)) {
		return tok, nil
	}
	key, err := parsePrivateKey(pemKey)
	if err != nil {
		return oauthToken{}, connector.Permanent("bad_private_key", err.Error(), nil)
	}
	var proofKey *ecdsa.PrivateKey
	if dpopRequired {
		proofKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	var out tokenAnswer
	for try := 0; ; try++ {
		if out, err = c.tokenRequest(ctx, a, base, key, proofKey, nonce); err != nil {
			return oauthToken{}, err
		}
		if try >= 2 || out.status != http.StatusBadRequest {
			break
		}
		if out.Error == "invalid_dpop_proof" && proofKey == nil { // the app requires DPoP
			proofKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			continue
		}
		if out.Error == "use_dpop_nonce" && proofKey != nil && out.nonce != "" && out.nonce != nonce {
			nonce = out.nonce
			continue
		}
		break
	}
	if proofKey != nil {
		c.mu.Lock()
		c.dpopNonces[cacheKey] = nonce
		c.mu.Unlock()
	}
	switch {
	case out.status == http.StatusOK && out.AccessToken != "" && strings.EqualFold(out.TokenType, "Bearer"):
		proofKey = nil // the app does not bind its tokens
	case out.status == http.StatusOK && out.AccessToken != "" && strings.EqualFold(out.TokenType, "DPoP") && proofKey != nil:
	case out.status == http.StatusTooManyRequests || out.status >= 500:
		return oauthToken{}, connector.Transient("okta_oauth_unavailable", fmt.Sprintf("Okta's token endpoint answered %d", out.status), nil)
	default:
		msg := fmt.Sprintf("Okta refused the OAuth token request: HTTP %d %s", out.status, out.Error)
		if out.Description != "" {
			msg += " (" + out.Description + ")"
		}
		return oauthToken{}, connector.Permanent("okta_oauth_"+strings.ToLower(out.Error), msg, nil)
	}
	tok = oauthToken{token: secret.FromString(out.AccessToken), dpop: proofKey,
		expires: c.now().Add(time.Duration(out.ExpiresIn) * time.Second)}
	c.mu.Lock()
	c.tokens[cacheKey] = tok
	c.mu.Unlock()
	return tok, nil
}

// tokenAnswer is the token endpoint's answer.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	TokenType   string `json:"token_type"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
	status      int
	nonce       string // DPoP-Nonce
}

// tokenRequest asks the org's token endpoint for an access token, with a DPoP proof signed by
// proofKey when it is set.
func (c *Connector) tokenRequest(ctx context.Context, a connector.Account, base string, key crypto.Signer, proofKey *ecdsa.PrivateKey, nonce string) (tokenAnswer, error) {
	tokenURL := base + "/oauth2/v1/token"
	assertion, err := clientAssertion(key, a.Target.Fields[FieldClientID], a.Target.Fields[FieldKeyID], tokenURL, c.now())
	if err != nil {
		return tokenAnswer{}, connector.Permanent("bad_private_key", err.Error(), nil)
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {oauthScopes},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenAnswer{}, connector.Permanent("bad_org_url", "the Okta org URL is not a valid URL", nil)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if proofKey != nil {
		proof, err := dpopProof(proofKey, http.MethodPost, htu(req.URL), nonce, secret.Secret{}, c.now())
		if err != nil {
			return tokenAnswer{}, err
		}
		req.Header.Set("DPoP", proof)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return tokenAnswer{}, ctx.Err()
		}
		return tokenAnswer{}, connector.Transient("network", "Okta did not answer the token request", redactURLError(err))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var out tokenAnswer
	_ = json.Unmarshal(raw, &out)
	out.status, out.nonce = resp.StatusCode, resp.Header.Get("DPoP-Nonce")
	return out, nil
}

// htu is a DPoP proof's htu for a request to u: the URI exactly as the HTTP client sends it
// (RFC 9449 §4.2), scheme, host and escaped path, without query or fragment. A login in the
// path stays as it is on the wire ("j%C3%BCrgen@example.com"), never decoded.
func htu(u *url.URL) string {
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// dpopProof signs a DPoP proof (RFC 9449) for one request: its method and target (see htu),
// the time, a random jti, the server's nonce when it gave one, and for an API call the hash of
// the access token (ath).
func dpopProof(key *ecdsa.PrivateKey, method, target, nonce string, token secret.Secret, now time.Time) (string, error) {
	point, err := key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil || len(point) != 65 {
		return "", errors.New("okta: the DPoP key is not an uncompressed P-256 point")
	}
	jwk := map[string]string{"kty": "EC", "crv": "P-256",
		"x": base64.RawURLEncoding.EncodeToString(point[1:33]), "y": base64.RawURLEncoding.EncodeToString(point[33:])}
	claims := map[string]any{"htm": method, "htu": target, "iat": now.Unix(), "jti": randomHex()}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	if !token.IsZero() {
		sum := sha256.Sum256(token.Bytes())
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return signJWS(key, map[string]any{"typ": "dpop+jwt", "jwk": jwk}, claims)
}

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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
	header := map[string]any{"typ": "JWT"}
	if kid != "" {
		header["kid"] = kid
	}
	return signJWS(key, header, map[string]any{"iss": clientID, "sub": clientID, "aud": aud, "iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(), "jti": randomHex()})
}

// signJWS signs a compact JWS of header and claims: RS256 with an RSA key, ES256 with P-256.
func signJWS(key crypto.Signer, header, claims map[string]any) (string, error) {
	header["alg"] = "RS256"
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		header["alg"] = "ES256"
	}
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
	default:
		return "", errors.New("okta: the key must be RSA or EC P-256")
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

func fixed32(n *big.Int) []byte {
	b := make([]byte, 32)
	return n.FillBytes(b)
}
