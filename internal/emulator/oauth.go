package emulator

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// OAuth 2.0 for Okta (okta.md §1.1): client credentials with a private_key_jwt assertion at
// the org authorization server, scoped access tokens, optional DPoP.

// OAuthClient is an API Services app: its client id, registered public keys and the
// Okta API scopes granted to it.
type OAuthClient struct {
	ClientID string     // the app's client_id (iss and sub of its assertions)
	Keys     []OAuthKey // its registered public keys (JWKS)
	// Scopes are the granted scopes; nil means okta.users.read and okta.users.manage.
	Scopes []string
	// RequireDPoP makes the app demand DPoP-bound tokens ("Require DPoP" in the admin console).
	RequireDPoP bool
	// NoAdminRole leaves the app without an admin role: its tokens get 403 E0000006.
	NoAdminRole bool
}

// OAuthKey is one registered public key: an *rsa.PublicKey or *ecdsa.PublicKey.
type OAuthKey struct {
	KID       string           // the JWK kid
	PublicKey crypto.PublicKey // *rsa.PublicKey or *ecdsa.PublicKey
}

const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

type accessToken struct {
	clientID string
	scopes   []string
	exp      time.Time
	jkt      string // DPoP key thumbprint when the token is DPoP-bound
	admin    bool
}

type oauthState struct {
	mu        sync.Mutex
	clients   map[string]*OAuthClient
	tokens    map[string]*accessToken
	jtis      map[string]time.Time // used assertion and proof ids, until they could expire
	nonce     string
	prevNonce string
	nonceAt   time.Time
}

func (s *oauthState) init() {
	s.clients = map[string]*OAuthClient{}
	s.tokens = map[string]*accessToken{}
	s.jtis = map[string]time.Time{}
}

// AddOAuthClient registers (or replaces) an API Services app.
func (e *Emulator) AddOAuthClient(c OAuthClient) {
	if c.Scopes == nil {
		c.Scopes = []string{ScopeUsersRead, ScopeUsersManage}
	}
	c.Keys = slices.Clone(c.Keys)
	e.oauth.mu.Lock()
	e.oauth.clients[c.ClientID] = &c
	e.oauth.mu.Unlock()
}

// useJTI records a jti until keep; false if it was seen before. Expired entries are pruned.
func (s *oauthState) useJTI(jti string, now, keep time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, seen := s.jtis[jti]; seen {
		return false
	}
	if len(s.jtis) > 4096 {
		for k, t := range s.jtis {
			if now.After(t) {
				delete(s.jtis, k)
			}
		}
	}
	s.jtis[jti] = keep
	return true
}

// currentNonce returns the DPoP nonce, rotated every 10 minutes; the previous one stays valid.
func (s *oauthState) currentNonce(now time.Time) (cur, prev string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nonce == "" || now.Sub(s.nonceAt) > 10*time.Minute {
		s.prevNonce, s.nonce, s.nonceAt = s.nonce, randomString(32), now
	}
	return s.nonce, s.prevNonce
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// tokenURLs are the URLs a client may name as the token endpoint (aud, DPoP htu).
func (e *Emulator) endpointURLs(r *http.Request, path string) []string {
	return []string{"https://" + r.Host + path, "http://" + r.Host + path, e.baseURL(r) + path}
}

// htuMatches reports whether a DPoP proof's htu names r's URI as the client sent it (RFC 9449
// §4.3): scheme, host and the path as it was on the wire, not decoded (a login's "%40" stays
// "%40"), ignoring query and fragment, after RFC 3986 syntax- and scheme-based normalization.
func (e *Emulator) htuMatches(r *http.Request, htu string) bool {
	want := normalizeURI(htu)
	for _, u := range e.endpointURLs(r, sentPath(r)) {
		if normalizeURI(u) == want {
			return true
		}
	}
	return false
}

// sentPath is the path of r's request target as it was on the wire.
func sentPath(r *http.Request) string {
	if p := r.RequestURI; p != "" && p != "*" {
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			p = p[:i]
		}
		if strings.HasPrefix(p, "/") {
			return p
		}
		if u, err := url.Parse(p); err == nil { // absolute-form, as sent to a proxy
			return u.EscapedPath()
		}
	}
	return r.URL.EscapedPath()
}

// normalizeURI applies RFC 3986 §6.2.2 and §6.2.3 normalization to an absolute URI for
// comparison: lower-case scheme and host, no default port, an empty path as "/", upper-case
// percent-encoding hex digits, unreserved characters decoded; query and fragment dropped.
// Reserved characters keep their form: "%40" and "@" differ.
func normalizeURI(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	scheme = strings.ToLower(scheme)
	host, path := rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	host = strings.ToLower(host)
	if (scheme == "http" && strings.HasSuffix(host, ":80")) || (scheme == "https" && strings.HasSuffix(host, ":443")) {
		host = host[:strings.LastIndexByte(host, ':')]
	}
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '%' && i+2 < len(path) && isHex(path[i+1]) && isHex(path[i+2]) {
			hex := strings.ToUpper(path[i+1 : i+3])
			if d, err := url.PathUnescape("%" + hex); err == nil && len(d) == 1 && isUnreserved(d[0]) {
				b.WriteByte(d[0])
			} else {
				b.WriteString("%" + hex)
			}
			i += 2
			continue
		}
		b.WriteByte(c)
	}
	return scheme + "://" + host + b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func (e *Emulator) handleToken(w http.ResponseWriter, r *http.Request, c *call) {
	now := e.now()
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The request must be form-encoded (application/x-www-form-urlencoded).")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The request body is not well-formed.")
		return
	}
	// Okta reads the parameters from the form body or the query string (okta-sdk-golang
	// v5.0.2's PrivateKey mode sends them in the query, with an empty body); the body wins.
	f := r.Form
	switch gt := f.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The token request must specify a 'grant_type'. Valid values: [client_credentials]")
		return
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "The authorization grant type is not supported by the authorization server. Configured grant types: [client_credentials].")
		return
	}
	assertion := f.Get("client_assertion")
	if assertion == "" {
		if _, _, basic := r.BasicAuth(); basic || f.Get("client_secret") != "" {
			writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed. Either the client or the client credentials are invalid.")
		} else {
			writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "No client credentials found.")
		}
		return
	}
	if f.Get("client_assertion_type") != clientAssertionType {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The client_assertion_type must be "+clientAssertionType+".")
		return
	}
	badClient := func(desc string) { writeOAuthError(w, http.StatusUnauthorized, "invalid_client", desc) }
	j, err := parseJWS(assertion)
	if err != nil {
		badClient("The client_assertion token is malformed.")
		return
	}
	if !supportedAlg(j.alg) {
		badClient("The client_assertion token has an unsupported signing algorithm: " + j.alg + ".")
		return
	}
	iss, sub := j.str("iss"), j.str("sub")
	e.oauth.mu.Lock()
	client := e.oauth.clients[sub]
	e.oauth.mu.Unlock()
	if client == nil || (f.Get("client_id") != "" && f.Get("client_id") != sub) {
		badClient("Client authentication failed. Either the client or the client credentials are invalid.")
		return
	}
	var key crypto.PublicKey
	switch {
	case j.kid == "" && len(client.Keys) == 1:
		key = client.Keys[0].PublicKey
	case j.kid == "":
		badClient("The client_assertion token must have a 'kid' header: the client has more than one key.")
		return
	default:
		for _, k := range client.Keys {
			if k.KID == j.kid {
				key = k.PublicKey
			}
		}
		if key == nil {
			badClient("The client_assertion token has an unknown 'kid': " + j.kid + ".")
			return
		}
	}
	if !j.verify(key) {
		badClient("The client_assertion signature is invalid.")
		return
	}
	if iss != sub {
		badClient("The 'iss' and 'sub' claims of the client_assertion must both be the client_id.")
		return
	}
	okAud := false
	for _, a := range j.audiences() {
		if slices.Contains(e.endpointURLs(r, "/oauth2/v1/token"), a) {
			okAud = true
		}
	}
	if !okAud {
		badClient("The audience claim for client_assertion must be the endpoint invoked for the request.")
		return
	}
	exp, hasExp := j.num("exp")
	iat, hasIat := j.num("iat")
	jti := j.str("jti")
	switch {
	case !hasExp:
		badClient("The client_assertion token must have an 'exp' claim.")
		return
	case exp <= now.Unix():
		badClient("The client_assertion token is expired.")
		return
	case exp > now.Add(time.Hour).Unix():
		badClient("The client_assertion token has an expiration too far into the future.")
		return
	case !hasIat:
		badClient("The client_assertion token must have an 'iat' claim.")
		return
	case iat > now.Add(time.Minute).Unix():
		badClient("The client_assertion token was issued in the future.")
		return
	}

	scope := strings.Fields(f.Get("scope"))
	if len(scope) == 0 {
		writeOAuthError(w, http.StatusBadRequest, "invalid_scope", "The authorization server resource does not have any configured default scopes, 'scope' must be provided.")
		return
	}
	for _, s := range scope {
		if !strings.HasPrefix(s, "okta.") {
			writeOAuthError(w, http.StatusBadRequest, "invalid_scope", "One or more scopes are not configured for the authorization server resource.")
			return
		}
		if !slices.Contains(client.Scopes, s) {
			writeOAuthError(w, http.StatusBadRequest, "invalid_scope", "The requested scope is invalid, unknown, or malformed.")
			return
		}
	}
	jkt := ""
	if client.RequireDPoP {
		var code, desc string
		jkt, code, desc = e.checkDPoP(w, r, now, "", true)
		if code != "" {
			writeOAuthError(w, http.StatusBadRequest, code, desc)
			return
		}
	}
	// Okta does not require a jti (okta-sdk-golang v5.0.2 sends none); one that is present is
	// checked for replay.
	if jti != "" && !e.oauth.useJTI("assertion:"+sub+":"+jti, now, time.Unix(exp, 0).Add(time.Minute)) {
		badClient("The client_assertion token has already been used (jti replay).")
		return
	}

	tok := randomString(64)
	ttl := e.opts.AccessTokenTTL
	e.oauth.mu.Lock()
	for k, t := range e.oauth.tokens {
		if len(e.oauth.tokens) < 1024 {
			break
		}
		if now.After(t.exp) {
			delete(e.oauth.tokens, k)
		}
	}
	e.oauth.tokens[tok] = &accessToken{clientID: sub, scopes: scope, exp: now.Add(ttl), jkt: jkt, admin: !client.NoAdminRole}
	e.oauth.mu.Unlock()
	tokenType := "Bearer"
	if jkt != "" {
		tokenType = "DPoP"
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, struct {
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}{tokenType, int(ttl.Seconds()), tok, strings.Join(scope, " ")})
}

// checkDPoP verifies the DPoP proof of r: at the token endpoint (atToken, with nonce) or on
// an API call for accessToken (with ath). It returns the key thumbprint, or an OAuth error.
func (e *Emulator) checkDPoP(w http.ResponseWriter, r *http.Request, now time.Time, accessToken string, atToken bool) (jkt, code, desc string) {
	proofs := r.Header.Values("DPoP")
	if len(proofs) == 0 {
		return "", "invalid_dpop_proof", "The DPoP proof JWT header is missing."
	}
	if len(proofs) > 1 {
		return "", "invalid_dpop_proof", "Only one DPoP proof JWT header is allowed."
	}
	j, err := parseJWS(proofs[0])
	if err != nil {
		return "", "invalid_dpop_proof", "The DPoP proof JWT is malformed."
	}
	if j.typ != "dpop+jwt" {
		return "", "invalid_dpop_proof", "The DPoP proof JWT 'typ' header must be 'dpop+jwt'."
	}
	if !supportedAlg(j.alg) {
		return "", "invalid_dpop_proof", "The DPoP proof JWT has an unsupported signing algorithm."
	}
	key, thumb, err := jwkKey(j.jwk)
	if err != nil {
		return "", "invalid_dpop_proof", "The DPoP proof JWT 'jwk' header is invalid."
	}
	if !j.verify(key) {
		return "", "invalid_dpop_proof", "The DPoP proof JWT signature is invalid."
	}
	if j.str("htm") != r.Method {
		return "", "invalid_dpop_proof", "The DPoP proof 'htm' claim does not match the request method."
	}
	if !e.htuMatches(r, j.str("htu")) {
		return "", "invalid_dpop_proof", "The DPoP proof 'htu' claim does not match the request URL."
	}
	iat, ok := j.num("iat")
	if !ok || iat > now.Add(time.Minute).Unix() || iat < now.Add(-5*time.Minute).Unix() {
		return "", "invalid_dpop_proof", "The DPoP proof 'iat' claim is missing or not recent."
	}
	jti := j.str("jti")
	if jti == "" {
		return "", "invalid_dpop_proof", "The DPoP proof 'jti' claim is missing."
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		if subtle.ConstantTimeCompare([]byte(j.str("ath")), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) != 1 {
			return "", "invalid_dpop_proof", "The DPoP proof 'ath' claim does not match the access token."
		}
	}
	if atToken {
		cur, prev := e.oauth.currentNonce(now)
		if n := j.str("nonce"); n == "" || (n != cur && n != prev) {
			w.Header().Set("DPoP-Nonce", cur)
			return "", "use_dpop_nonce", "Authorization server requires nonce in DPoP proof."
		}
	}
	if !e.oauth.useJTI("dpop:"+jti, now, now.Add(6*time.Minute)) {
		return "", "invalid_dpop_proof", "The DPoP proof 'jti' has already been used."
	}
	return thumb, "", ""
}

// authorizeOkta authenticates an Okta API call (SSWS, Bearer or DPoP) and checks its scope;
// false after answering the refusal.
func (e *Emulator) authorizeOkta(w http.ResponseWriter, r *http.Request, rt *route) bool {
	authz := strings.TrimSpace(r.Header.Get("Authorization"))
	optional := rt.auth == authOktaOptional
	if authz == "" {
		if optional {
			return true
		}
		writeOktaError(w, http.StatusForbidden, ErrInvalidSession, "Invalid session")
		return false
	}
	scheme, cred, _ := strings.Cut(authz, " ")
	cred = strings.TrimSpace(cred)
	base := e.baseURL(r)
	switch strings.ToLower(scheme) {
	case "ssws":
		e.tokMu.RLock()
		ok := cred != "" && e.tokens[cred]
		e.tokMu.RUnlock()
		if !ok {
			writeOktaError(w, http.StatusUnauthorized, ErrInvalidToken, "Invalid token provided")
		}
		return ok
	case "bearer", "dpop":
		if optional {
			return true
		}
		now := e.now()
		dpop := strings.EqualFold(scheme, "dpop")
		e.oauth.mu.Lock()
		tok := e.oauth.tokens[cred]
		e.oauth.mu.Unlock()
		challenge := "Bearer"
		if dpop {
			challenge = "DPoP"
		}
		if tok == nil || !now.Before(tok.exp) || dpop != (tok.jkt != "") {
			desc := "The token is not valid."
			if tok != nil && !now.Before(tok.exp) {
				desc = "The token has expired."
			} else if tok != nil && tok.jkt != "" {
				desc = "The resource request requires a DPoP proof."
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`%s authorization_uri="%s/oauth2/v1/authorize", realm="%s", error="invalid_token", error_description="%s", resource="%s"`,
				challenge, base, base, desc, r.URL.Path))
			writeOktaError(w, http.StatusUnauthorized, ErrInvalidToken, "Invalid token provided")
			return false
		}
		if dpop {
			jkt, _, desc := e.checkDPoP(w, r, now, cred, false)
			if jkt == "" || jkt != tok.jkt {
				if jkt != "" {
					desc = "The DPoP proof key does not match the access token."
				}
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`DPoP algs="RS256 RS384 RS512 ES256 ES384 ES512", error="invalid_dpop_proof", error_description="%s"`, desc))
				w.WriteHeader(http.StatusUnauthorized)
				return false
			}
		}
		if !slices.Contains(tok.scopes, rt.scope) && !(rt.scope == ScopeUsersRead && slices.Contains(tok.scopes, ScopeUsersManage)) {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`%s authorization_uri="%s/oauth2/v1/authorize", realm="%s", scope="%s", error="insufficient_scope", error_description="The access token provided does not contain the required scopes.", resource="%s"`,
				challenge, base, base, rt.scope, r.URL.Path))
			w.WriteHeader(http.StatusForbidden)
			return false
		}
		if !tok.admin {
			writeOktaError(w, http.StatusForbidden, ErrNoPermission, "You do not have permission to perform the requested action")
			return false
		}
		return true
	}
	if optional {
		return true
	}
	writeOktaError(w, http.StatusForbidden, ErrInvalidSession, "Invalid session")
	return false
}
