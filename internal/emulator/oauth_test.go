package emulator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

type oauthFixture struct {
	*env
	rsa crypto.Signer
	ec  *ecdsa.PrivateKey
	ec2 *ecdsa.PrivateKey
}

func newOAuthFixture(t *testing.T) *oauthFixture {
	rk := testRSAKey(t)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ek2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := start(t, Options{Users: 3, OAuthClients: []OAuthClient{
		{ClientID: "0oa-rsa", Keys: []OAuthKey{{KID: "k1", PublicKey: &rk.PublicKey}}},
		{ClientID: "0oa-two", Keys: []OAuthKey{{KID: "a", PublicKey: &rk.PublicKey}, {KID: "b", PublicKey: &ek.PublicKey}}},
		{ClientID: "0oa-read", Keys: []OAuthKey{{KID: "r", PublicKey: &rk.PublicKey}}, Scopes: []string{ScopeUsersRead}},
		{ClientID: "0oa-noadmin", Keys: []OAuthKey{{KID: "n", PublicKey: &rk.PublicKey}}, NoAdminRole: true},
		{ClientID: "0oa-dpop", Keys: []OAuthKey{{KID: "d", PublicKey: &ek.PublicKey}}, RequireDPoP: true},
	}})
	return &oauthFixture{env: v, rsa: rk, ec: ek, ec2: ek2}
}

var jtiCounter int

// assertion builds a client assertion for client; mutate edits the claims before signing.
func (f *oauthFixture) assertion(t *testing.T, client, kid, alg string, key crypto.Signer, mutate func(map[string]any)) string {
	now := f.clock.Now()
	jtiCounter++
	claims := map[string]any{"iss": client, "sub": client, "aud": f.srv.URL + "/oauth2/v1/token",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "jti": "jti-" + strings.Repeat("x", jtiCounter%3) + time.Now().Format(time.RFC3339Nano)}
	if mutate != nil {
		mutate(claims)
	}
	hdr := map[string]any{}
	if kid != "" {
		hdr["kid"] = kid
	}
	return signJWT(t, alg, key, hdr, claims)
}

func (f *oauthFixture) tokenRequest(t *testing.T, form url.Values, headers ...string) *resp {
	t.Helper()
	return f.raw("POST", "/oauth2/v1/token", form.Encode(), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, headers...)...)
}

func tokenForm(assertion, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {clientAssertionType}, "client_assertion": {assertion}}
}

type tokenResponse struct {
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	AccessToken string `json:"access_token"`
	Scope       string `json:"scope"`
}

type oauthErr struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (f *oauthFixture) accessToken(t *testing.T, client, kid, alg string, key crypto.Signer, scope string) string {
	t.Helper()
	r := f.tokenRequest(t, tokenForm(f.assertion(t, client, kid, alg, key, nil), scope))
	r.status(t, 200)
	var tr tokenResponse
	r.json(t, &tr)
	if tr.TokenType != "Bearer" || tr.ExpiresIn != 3600 || tr.AccessToken == "" || tr.Scope != scope {
		t.Fatalf("token response %s", r.body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
	}
	return tr.AccessToken
}

// §5.7: the private_key_jwt flow, then the token on the Users API.
func TestPrivateKeyJWTFlow(t *testing.T) {
	f := newOAuthFixture(t)
	tok := f.accessToken(t, "0oa-rsa", "k1", "RS256", f.rsa, "okta.users.read okta.users.manage")
	bearer := []string{"Authorization", "Bearer " + tok}
	f.raw("GET", "/api/v1/users", nil, bearer...).status(t, 200)
	id, _ := f.em.UserID(SeedLogin(1))
	f.raw("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody(SeedPassword(1), "OAuth-Rotated-1"), bearer...).status(t, 200)
	if pw, _ := f.em.Password(id); pw != "OAuth-Rotated-1" {
		t.Errorf("password %q", pw)
	}
	// The kid may be omitted when the client has one key.
	f.accessToken(t, "0oa-rsa", "", "RS256", f.rsa, ScopeUsersManage)
	// ES256 with the right kid of a two-key client; the https://{host} audience is accepted too.
	a := f.assertion(t, "0oa-two", "b", "ES256", f.ec, func(c map[string]any) {
		c["aud"] = "https://" + strings.TrimPrefix(f.srv.URL, "http://") + "/oauth2/v1/token"
	})
	f.tokenRequest(t, tokenForm(a, ScopeUsersRead)).status(t, 200)

	// manage alone grants read.
	mtok := f.accessToken(t, "0oa-rsa", "k1", "RS256", f.rsa, ScopeUsersManage)
	f.raw("GET", "/api/v1/users/"+id, nil, "Authorization", "Bearer "+mtok).status(t, 200)

	// A read-only token on change_password: 403, empty body, WWW-Authenticate.
	rtok := f.accessToken(t, "0oa-read", "r", "RS256", f.rsa, ScopeUsersRead)
	f.raw("GET", "/api/v1/users/"+id, nil, "Authorization", "Bearer "+rtok).status(t, 200)
	r := f.raw("POST", "/api/v1/users/"+id+"/credentials/change_password", changeBody("OAuth-Rotated-1", "OAuth-Rotated-2"), "Authorization", "Bearer "+rtok)
	r.status(t, 403)
	if len(r.body) != 0 {
		t.Errorf("body %q", r.body)
	}
	wa := r.Header.Get("WWW-Authenticate")
	for _, part := range []string{`Bearer authorization_uri="` + f.srv.URL + `/oauth2/v1/authorize"`, `realm="` + f.srv.URL + `"`,
		`scope="okta.users.manage"`, `error="insufficient_scope"`, `error_description="The access token provided does not contain the required scopes."`,
		`resource="/api/v1/users/` + id + `/credentials/change_password"`} {
		if !strings.Contains(wa, part) {
			t.Errorf("WWW-Authenticate %q lacks %s", wa, part)
		}
	}
	if r.Header.Get("X-Rate-Limit-Limit") == "" || r.Header.Get("X-Okta-Request-Id") == "" {
		t.Error("headers missing on the 403")
	}
	// An app without an admin role.
	ntok := f.accessToken(t, "0oa-noadmin", "n", "RS256", f.rsa, ScopeUsersRead)
	f.raw("GET", "/api/v1/users", nil, "Authorization", "Bearer "+ntok).oktaErr(t, 403, ErrNoPermission)

	// Tokens expire after an hour; unknown tokens are refused the same way.
	f.clock.Advance(time.Hour)
	for _, tk := range []string{tok, "not-a-token"} {
		r = f.raw("GET", "/api/v1/users", nil, "Authorization", "Bearer "+tk)
		r.oktaErr(t, 401, ErrInvalidToken)
		if wa := r.Header.Get("WWW-Authenticate"); !strings.Contains(wa, `error="invalid_token"`) {
			t.Errorf("WWW-Authenticate %q", wa)
		}
	}
}

// §5.7: each check of the client assertion, and the OAuth-style errors.
func TestClientAssertionChecks(t *testing.T) {
	f := newOAuthFixture(t)
	now := f.clock.Now()
	replayed := f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, nil)
	f.tokenRequest(t, tokenForm(replayed, ScopeUsersRead)).status(t, 200)
	cases := []struct {
		name   string
		form   url.Values
		status int
		code   string
	}{
		{"replayed jti", tokenForm(replayed, ScopeUsersRead), 401, "invalid_client"},
		{"wrong aud", tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, func(c map[string]any) { c["aud"] = "https://elsewhere.okta.com/oauth2/v1/token" }), ScopeUsersRead), 401, "invalid_client"},
		{"custom authorization server aud", tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, func(c map[string]any) { c["aud"] = f.srv.URL + "/oauth2/default/v1/token" }), ScopeUsersRead), 401, "invalid_client"},
		{"iss differs from sub", tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, func(c map[string]any) { c["iss"] = "someone" }), ScopeUsersRead), 401, "invalid_client"},
		{"unknown client", tokenForm(f.assertion(t, "0oa-nobody", "", "RS256", f.rsa, nil), ScopeUsersRead), 401, "invalid_client"},
		{"exp more than 1h ahead", tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, func(c map[string]any) { c["exp"] = now.Add(61 * time.Minute).Unix() }), ScopeUsersRead), 401, "invalid_client"},
		{"expired", tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, func(c map[string]any) { c["exp"] = now.Add(-time.Second).Unix() }), ScopeUsersRead), 401, "invalid_client"},
		{"no exp", tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, func(c map[string]any) { delete(c, "exp") }), ScopeUsersRead), 401, "invalid_client"},
		{"no iat", tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, func(c map[string]any) { delete(c, "iat") }), ScopeUsersRead), 401, "invalid_client"},
		{"iat in the future", tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, func(c map[string]any) { c["iat"] = now.Add(10 * time.Minute).Unix() }), ScopeUsersRead), 401, "invalid_client"},
		{"no kid with two keys", tokenForm(f.assertion(t, "0oa-two", "", "RS256", f.rsa, nil), ScopeUsersRead), 401, "invalid_client"},
		{"unknown kid", tokenForm(f.assertion(t, "0oa-two", "zz", "RS256", f.rsa, nil), ScopeUsersRead), 401, "invalid_client"},
		{"kid of the other key", tokenForm(f.assertion(t, "0oa-two", "b", "RS256", f.rsa, nil), ScopeUsersRead), 401, "invalid_client"},
		{"signed by another key", tokenForm(f.assertion(t, "0oa-two", "b", "ES256", f.ec2, nil), ScopeUsersRead), 401, "invalid_client"},
		{"alg none", tokenForm(f.assertion(t, "0oa-rsa", "k1", "none", nil, nil), ScopeUsersRead), 401, "invalid_client"},
		{"garbage assertion", tokenForm("not.a.jwt", ScopeUsersRead), 401, "invalid_client"},
		{"no credentials", url.Values{"grant_type": {"client_credentials"}, "scope": {ScopeUsersRead}}, 401, "invalid_client"},
		{"client secret", url.Values{"grant_type": {"client_credentials"}, "scope": {ScopeUsersRead}, "client_id": {"0oa-rsa"}, "client_secret": {"s"}}, 401, "invalid_client"},
		{"wrong assertion type", func() url.Values {
			v := tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, nil), ScopeUsersRead)
			v.Set("client_assertion_type", "jwt")
			return v
		}(), 400, "invalid_request"},
		{"grant type", func() url.Values {
			v := tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, nil), ScopeUsersRead)
			v.Set("grant_type", "password")
			return v
		}(), 400, "unsupported_grant_type"},
		{"no scope", tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, nil), ""), 400, "invalid_scope"},
		{"unknown scope", tokenForm(f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, nil), "openid"), 400, "invalid_scope"},
		{"scope not granted", tokenForm(f.assertion(t, "0oa-read", "r", "RS256", f.rsa, nil), ScopeUsersManage), 400, "invalid_scope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.tokenRequest(t, c.form)
			r.status(t, c.status)
			var e oauthErr
			r.json(t, &e)
			if e.Error != c.code || e.Description == "" {
				t.Errorf("error %s", r.body)
			}
			if strings.Contains(string(r.body), "errorCode") {
				t.Error("OAuth errors are not Okta E-codes")
			}
		})
	}
	// JSON instead of a form.
	f.raw("POST", "/oauth2/v1/token", `{"grant_type":"client_credentials"}`).status(t, 400)
}

// §5.7: the DPoP dance: missing proof, use_dpop_nonce with DPoP-Nonce, then a DPoP token whose
// API calls need a proof bound to it.
func TestDPoP(t *testing.T) {
	f := newOAuthFixture(t)
	proofKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	n := 0
	proof := func(key crypto.Signer, method, u, nonce, accessToken string) string {
		n++
		claims := map[string]any{"htm": method, "htu": u, "iat": f.clock.Now().Unix(), "jti": "dpop-" + string(rune('a'+n%26)) + time.Now().Format(time.RFC3339Nano)}
		if nonce != "" {
			claims["nonce"] = nonce
		}
		if accessToken != "" {
			sum := sha256.Sum256([]byte(accessToken))
			claims["ath"] = b64url(sum[:])
		}
		return signJWT(t, "ES256", key, map[string]any{"typ": "dpop+jwt", "jwk": publicJWK(key)}, claims)
	}
	tokenURL := f.srv.URL + "/oauth2/v1/token"
	form := func() url.Values {
		return tokenForm(f.assertion(t, "0oa-dpop", "d", "ES256", f.ec, nil), ScopeUsersManage)
	}

	r := f.tokenRequest(t, form())
	r.status(t, 400)
	var e oauthErr
	r.json(t, &e)
	if e.Error != "invalid_dpop_proof" || e.Description != "The DPoP proof JWT header is missing." {
		t.Errorf("%s", r.body)
	}
	r = f.tokenRequest(t, form(), "DPoP", proof(proofKey, "POST", tokenURL, "", ""))
	r.status(t, 400)
	r.json(t, &e)
	nonce := r.Header.Get("DPoP-Nonce")
	if e.Error != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("%s nonce %q", r.body, nonce)
	}
	r = f.tokenRequest(t, form(), "DPoP", proof(proofKey, "POST", tokenURL, nonce, ""))
	r.status(t, 200)
	var tr tokenResponse
	r.json(t, &tr)
	if tr.TokenType != "DPoP" {
		t.Fatalf("%s", r.body)
	}
	usersURL := f.srv.URL + "/api/v1/users"
	f.raw("GET", "/api/v1/users", nil, "Authorization", "DPoP "+tr.AccessToken, "DPoP", proof(proofKey, "GET", usersURL, "", tr.AccessToken)).status(t, 200)
	// As a Bearer token it is refused.
	f.raw("GET", "/api/v1/users", nil, "Authorization", "Bearer "+tr.AccessToken).oktaErr(t, 401, ErrInvalidToken)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, p := range map[string]string{
		"wrong htu":    proof(proofKey, "GET", f.srv.URL+"/api/v1/groups", "", tr.AccessToken),
		"wrong htm":    proof(proofKey, "POST", usersURL, "", tr.AccessToken),
		"wrong key":    proof(other, "GET", usersURL, "", tr.AccessToken),
		"no ath":       proof(proofKey, "GET", usersURL, "", ""),
		"not a proof":  "x.y.z",
		"missing typ":  signJWT(t, "ES256", proofKey, map[string]any{"jwk": publicJWK(proofKey)}, map[string]any{"htm": "GET", "htu": usersURL, "iat": f.clock.Now().Unix(), "jti": "q"}),
		"missing jwk":  signJWT(t, "ES256", proofKey, map[string]any{"typ": "dpop+jwt"}, map[string]any{"htm": "GET", "htu": usersURL, "iat": f.clock.Now().Unix(), "jti": "q2"}),
		"stale iat":    signJWT(t, "ES256", proofKey, map[string]any{"typ": "dpop+jwt", "jwk": publicJWK(proofKey)}, map[string]any{"htm": "GET", "htu": usersURL, "iat": f.clock.Now().Add(-time.Hour).Unix(), "jti": "q3"}),
		"missing jti":  signJWT(t, "ES256", proofKey, map[string]any{"typ": "dpop+jwt", "jwk": publicJWK(proofKey)}, map[string]any{"htm": "GET", "htu": usersURL, "iat": f.clock.Now().Unix()}),
		"missing (no)": "",
	} {
		t.Run(name, func(t *testing.T) {
			h := []string{"Authorization", "DPoP " + tr.AccessToken}
			if p != "" {
				h = append(h, "DPoP", p)
			}
			r := f.raw("GET", "/api/v1/users", nil, h...)
			r.status(t, 401)
			if wa := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "DPoP ") || !strings.Contains(wa, `error="invalid_dpop_proof"`) {
				t.Errorf("WWW-Authenticate %q", wa)
			}
		})
	}
	// A proof cannot be replayed.
	p := proof(proofKey, "GET", usersURL, "", tr.AccessToken)
	f.raw("GET", "/api/v1/users", nil, "Authorization", "DPoP "+tr.AccessToken, "DPoP", p).status(t, 200)
	f.raw("GET", "/api/v1/users", nil, "Authorization", "DPoP "+tr.AccessToken, "DPoP", p).status(t, 401)
}

// TestTokenRequestAsOktaSDKGolangV5Sends: okta-sdk-golang v5.0.2 in PrivateKey mode sends the
// token request's parameters in the query string with an empty form body, and its assertion
// has no jti (exp one hour ahead). Okta accepts that; a jti, when present, is still checked for
// replay, and the other checks still apply to a request in the query string.
func TestTokenRequestAsOktaSDKGolangV5Sends(t *testing.T) {
	f := newOAuthFixture(t)
	noJTI := func(mutate func(map[string]any)) string {
		return f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, func(c map[string]any) {
			delete(c, "jti")
			c["exp"] = f.clock.Now().Add(time.Hour).Unix()
			if mutate != nil {
				mutate(c)
			}
		})
	}
	inQuery := func(form url.Values) *resp {
		return f.raw("POST", "/oauth2/v1/token?"+form.Encode(), nil, "Content-Type", "application/x-www-form-urlencoded")
	}
	scope := ScopeUsersRead + " " + ScopeUsersManage
	a := noJTI(nil)
	for i := range 2 { // without a jti there is nothing to replay-check
		r := inQuery(tokenForm(a, scope))
		r.status(t, 200)
		var tr tokenResponse
		r.json(t, &tr)
		if tr.TokenType != "Bearer" || tr.AccessToken == "" || tr.Scope != scope {
			t.Fatalf("request %d: %s", i+1, r.body)
		}
		f.raw("GET", "/api/v1/users", nil, "Authorization", "Bearer "+tr.AccessToken).status(t, 200)
	}
	// The form body, as before, also takes an assertion without a jti.
	f.tokenRequest(t, tokenForm(noJTI(nil), scope)).status(t, 200)

	// A jti in a query-string request is checked for replay.
	withJTI := f.assertion(t, "0oa-rsa", "k1", "RS256", f.rsa, nil)
	inQuery(tokenForm(withJTI, scope)).status(t, 200)
	// The other checks hold for the query string too.
	for name, a := range map[string]string{
		"replayed jti": withJTI,
		"wrong aud":    noJTI(func(c map[string]any) { c["aud"] = "https://elsewhere.okta.com/oauth2/v1/token" }),
		"expired":      noJTI(func(c map[string]any) { c["exp"] = f.clock.Now().Add(-time.Second).Unix() }),
		"exp too far":  noJTI(func(c map[string]any) { c["exp"] = f.clock.Now().Add(61 * time.Minute).Unix() }),
		"iss not sub":  noJTI(func(c map[string]any) { c["iss"] = "someone" }),
		"bad signature": f.assertion(t, "0oa-rsa", "k1", "ES256", f.ec, func(c map[string]any) {
			delete(c, "jti")
		}),
	} {
		r := inQuery(tokenForm(a, scope))
		r.status(t, 401)
		var e oauthErr
		r.json(t, &e)
		if e.Error != "invalid_client" {
			t.Errorf("%s: %s", name, r.body)
		}
	}
}

// dpopToken gets a DPoP-bound token for 0oa-dpop and returns it with a proof signer for it.
func (f *oauthFixture) dpopToken(t *testing.T) (string, func(method, htu string) string) {
	t.Helper()
	proofKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	n := 0
	sign := func(method, htu, nonce, accessToken string) string {
		n++
		claims := map[string]any{"htm": method, "htu": htu, "iat": f.clock.Now().Unix(), "jti": "dpop-" + strconv.Itoa(n) + "-" + time.Now().Format(time.RFC3339Nano)}
		if nonce != "" {
			claims["nonce"] = nonce
		}
		if accessToken != "" {
			sum := sha256.Sum256([]byte(accessToken))
			claims["ath"] = b64url(sum[:])
		}
		return signJWT(t, "ES256", proofKey, map[string]any{"typ": "dpop+jwt", "jwk": publicJWK(proofKey)}, claims)
	}
	tokenURL := f.srv.URL + "/oauth2/v1/token"
	form := func() url.Values {
		return tokenForm(f.assertion(t, "0oa-dpop", "d", "ES256", f.ec, nil), ScopeUsersManage)
	}
	r := f.tokenRequest(t, form(), "DPoP", sign("POST", tokenURL, "", ""))
	nonce := r.Header.Get("DPoP-Nonce")
	r = f.tokenRequest(t, form(), "DPoP", sign("POST", tokenURL, nonce, ""))
	r.status(t, 200)
	var tr tokenResponse
	r.json(t, &tr)
	if tr.TokenType != "DPoP" {
		t.Fatalf("%s", r.body)
	}
	return tr.AccessToken, func(method, htu string) string { return sign(method, htu, "", tr.AccessToken) }
}

// TestDPoPHTUIsTheRequestURIAsSent: RFC 9449 compares htu with the request URI as the client
// sent it, so a lookup by login sent as "isaac.brock%40example.com" (what okta-sdk-nodejs
// sends) is proved with "%40" in htu, not the decoded "@"; a non-ASCII login's UTF-8
// percent-encoding likewise. Syntax-based normalization applies (hex case, host case, default
// port, encoded unreserved characters), and the query is ignored.
func TestDPoPHTUIsTheRequestURIAsSent(t *testing.T) {
	f := newOAuthFixture(t)
	for _, login := range []string{"isaac.brock@example.com", "jürgen@example.com", "a~b@example.com"} {
		if _, err := f.em.CreateUser(NewUser{Login: login, Password: "Some-Pass-123"}); err != nil {
			t.Fatal(err)
		}
	}
	tok, proof := f.dpopToken(t)
	hostPort := strings.TrimPrefix(f.srv.URL, "http://")
	get := func(path, htu string) *resp {
		return f.raw("GET", path, nil, "Authorization", "DPoP "+tok, "DPoP", proof("GET", htu))
	}
	for _, c := range []struct{ name, path, htu string }{
		{"%40 as sent", "/api/v1/users/isaac.brock%40example.com", f.srv.URL + "/api/v1/users/isaac.brock%40example.com"},
		{"@ as sent", "/api/v1/users/isaac.brock@example.com", f.srv.URL + "/api/v1/users/isaac.brock@example.com"},
		{"UTF-8 escapes", "/api/v1/users/j%C3%BCrgen@example.com", f.srv.URL + "/api/v1/users/j%C3%BCrgen@example.com"},
		{"hex case", "/api/v1/users/j%c3%bcrgen%40example.com", f.srv.URL + "/api/v1/users/j%C3%BCrgen%40example.com"},
		{"scheme and host case", "/api/v1/users/isaac.brock%40example.com", "HTTP://" + strings.ToUpper(hostPort) + "/api/v1/users/isaac.brock%40example.com"},
		{"encoded unreserved", "/api/v1/users/a%7Eb%40example.com", f.srv.URL + "/api/v1/users/a~b%40example.com"},
		{"query ignored", "/api/v1/users?limit=1", f.srv.URL + "/api/v1/users"},
		{"query in htu ignored", "/api/v1/users?limit=1", f.srv.URL + "/api/v1/users?limit=1"},
	} {
		if r := get(c.path, c.htu); r.StatusCode != 200 {
			t.Errorf("%s: %s with htu %s: %d %s %s", c.name, c.path, c.htu, r.StatusCode, r.Header.Get("WWW-Authenticate"), r.body)
		}
	}
	for _, c := range []struct{ name, path, htu string }{
		{"decoded @ for a sent %40", "/api/v1/users/isaac.brock%40example.com", f.srv.URL + "/api/v1/users/isaac.brock@example.com"},
		{"%40 for a sent @", "/api/v1/users/isaac.brock@example.com", f.srv.URL + "/api/v1/users/isaac.brock%40example.com"},
		{"decoded UTF-8", "/api/v1/users/j%C3%BCrgen@example.com", f.srv.URL + "/api/v1/users/jürgen@example.com"},
		{"another path", "/api/v1/users/isaac.brock%40example.com", f.srv.URL + "/api/v1/users/isaac.brock"},
	} {
		r := get(c.path, c.htu)
		if wa := r.Header.Get("WWW-Authenticate"); r.StatusCode != 401 || !strings.Contains(wa, `error="invalid_dpop_proof"`) || !strings.Contains(wa, "htu") {
			t.Errorf("%s: %s with htu %s: %d %q", c.name, c.path, c.htu, r.StatusCode, wa)
		}
	}
}
