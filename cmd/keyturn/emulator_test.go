package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/connector/okta"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/secret"
)

type emulatorOutput struct {
	BaseURL string `json:"base_url"`
	OAuth   *struct {
		ClientID       string   `json:"client_id"`
		KeyIDs         []string `json:"key_ids"`
		TokenURL       string   `json:"token_url"`
		Scopes         []string `json:"scopes"`
		RequireDPoP    bool     `json:"require_dpop"`
		PrivateKeyPEM  string   `json:"private_key_pem"`
		PrivateKeyFile string   `json:"private_key_file"`
	} `json:"oauth"`
}

// runEmulator runs "keyturn emulator okta ARGS" as a child process, returns its first line of
// output parsed, and stops it (SIGTERM, clean exit) when the test ends.
func runEmulator(t *testing.T, args ...string) (emulatorOutput, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"emulator", "okta", "--users", "3"}, args...)...)
	cmd.Env = append(os.Environ(), "KEYTURN_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		if sc.Scan() {
			line <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
		waitErr = cmd.Wait()
		close(exited)
	}()
	early := false
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			if waitErr != nil && !early {
				t.Errorf("the emulator's exit: %v", waitErr)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("the emulator did not stop")
		}
	})
	var raw string
	select {
	case raw = <-line:
	case <-exited:
		early = true
		t.Fatalf("the emulator exited early: %v", waitErr)
	case <-time.After(30 * time.Second):
		t.Fatal("the emulator printed nothing")
	}
	var out emulatorOutput
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("output %q: %v", raw, err)
	}
	return out, raw
}

// oauthAccount is seeded user i of the emulator, reached with the OAuth app of out.
func oauthAccount(out emulatorOutput, i int, privatePEM string) connector.Account {
	return connector.Account{Login: emulator.SeedLogin(i), Target: connector.Target{URL: out.BaseURL,
		Fields:  map[string]string{okta.FieldClientID: out.OAuth.ClientID, okta.FieldKeyID: out.OAuth.KeyIDs[0]},
		Secrets: map[string]secret.Secret{okta.FieldPrivateKey: secret.FromString(privatePEM)}}}
}

// rotateOnce rotates seeded user i with the app and checks the new password with Authn.
func rotateOnce(t *testing.T, a connector.Account, i int) error {
	t.Helper()
	c := okta.New(okta.Options{})
	next := secret.FromString("Zq9#cli-Rotated-pw")
	if err := c.Rotate(context.Background(), a, secret.FromString(emulator.SeedPassword(i)), next); err != nil {
		return err
	}
	return c.Verify(context.Background(), a, next)
}

// tokenWithoutProof asks the token endpoint for a token without a DPoP proof: an app that
// requires DPoP answers 400 invalid_dpop_proof, another one a Bearer token.
func tokenWithoutProof(t *testing.T, out emulatorOutput, assertion string) (int, string) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {emulator.ScopeUsersRead},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	resp, err := http.Post(out.OAuth.TokenURL, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error     string `json:"error"`
		TokenType string `json:"token_type"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error + body.TokenType
}

// TestEmulatorRegistersOAuthApps runs "keyturn emulator okta" with the flags that register an
// OAuth app, and rotates a user through it with keyturn's Okta connector: a generated key pair
// printed once, with DPoP required; one written to a 0600 file; a public key file in PEM and
// as a JWK; and granted scopes that leave out okta.users.manage.
func TestEmulatorRegistersOAuthApps(t *testing.T) {
	t.Run("generated key, DPoP required", func(t *testing.T) {
		out, _ := runEmulator(t, "--oauth-generate-key", "--oauth-require-dpop", "--oauth-client-id", "0oa-cli-dpop")
		o := out.OAuth
		if o == nil || o.ClientID != "0oa-cli-dpop" || !o.RequireDPoP || len(o.KeyIDs) != 1 || o.TokenURL != out.BaseURL+"/oauth2/v1/token" ||
			!strings.HasPrefix(o.PrivateKeyPEM, "-----BEGIN PRIVATE KEY-----") || strings.Join(o.Scopes, " ") != "okta.users.read okta.users.manage" {
			t.Fatalf("oauth output %+v", o)
		}
		if err := rotateOnce(t, oauthAccount(out, 1, o.PrivateKeyPEM), 1); err != nil {
			t.Fatalf("rotate with DPoP: %v", err)
		}
		block, _ := pem.Decode([]byte(o.PrivateKeyPEM))
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if st, e := tokenWithoutProof(t, out, assertionFor(t, key.(*rsa.PrivateKey), o.ClientID, o.KeyIDs[0], o.TokenURL)); st != 400 || e != "invalid_dpop_proof" {
			t.Fatalf("a token request without a proof: %d %s", st, e)
		}
	})
	t.Run("generated EC key written to a file, no DPoP", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "okta-app.pem")
		out, raw := runEmulator(t, "--oauth-generate-key", "--oauth-key-type", "ec", "--oauth-private-key-out", file)
		o := out.OAuth
		if o == nil || o.RequireDPoP || o.PrivateKeyPEM != "" || o.PrivateKeyFile != file || strings.Contains(raw, "PRIVATE KEY") {
			t.Fatalf("oauth output %s", raw)
		}
		st, err := os.Stat(file)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("key file: %v %v", st, err)
		}
		pemKey, _ := os.ReadFile(file)
		if err := rotateOnce(t, oauthAccount(out, 2, string(pemKey)), 2); err != nil {
			t.Fatalf("rotate: %v", err)
		}
	})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := func(k any) string {
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	t.Run("public key PEM file, read scope only", func(t *testing.T) {
		der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
		file := filepath.Join(t.TempDir(), "pub.pem")
		if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		out, raw := runEmulator(t, "--oauth-public-key", file, "--oauth-key-id", "rsa-1", "--oauth-scopes", "okta.users.read")
		o := out.OAuth
		if o == nil || o.KeyIDs[0] != "rsa-1" || strings.Join(o.Scopes, " ") != "okta.users.read" || strings.Contains(raw, "PRIVATE") {
			t.Fatalf("oauth output %s", raw)
		}
		err := rotateOnce(t, oauthAccount(out, 1, privPEM(rsaKey)), 1)
		var ce *connector.Error
		if !errors.As(err, &ce) || ce.Code != "okta_oauth_invalid_scope" {
			t.Fatalf("an app without okta.users.manage: %v", err)
		}
		if st, tt := tokenWithoutProof(t, out, assertionFor(t, rsaKey, o.ClientID, "rsa-1", o.TokenURL)); st != 200 || tt != "Bearer" {
			t.Fatalf("read-scope token: %d %s", st, tt)
		}
	})
	t.Run("public JWK file, DPoP required", func(t *testing.T) {
		ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		point, _ := ecKey.PublicKey.Bytes()
		enc := base64.RawURLEncoding.EncodeToString
		jwk, _ := json.Marshal(map[string]string{"kty": "EC", "crv": "P-256", "kid": "ec-jwk", "use": "sig",
			"x": enc(point[1:33]), "y": enc(point[33:])})
		file := filepath.Join(t.TempDir(), "pub.jwk")
		if err := os.WriteFile(file, jwk, 0o644); err != nil {
			t.Fatal(err)
		}
		out, _ := runEmulator(t, "--oauth-public-key", file, "--oauth-require-dpop")
		o := out.OAuth
		if o == nil || o.KeyIDs[0] != "ec-jwk" || !o.RequireDPoP || !strings.HasPrefix(o.ClientID, "0oa") {
			t.Fatalf("oauth output %+v", o)
		}
		if err := rotateOnce(t, oauthAccount(out, 3, privPEM(ecKey)), 3); err != nil {
			t.Fatalf("rotate with DPoP: %v", err)
		}
	})
}

// assertionFor signs a client assertion (RS256) for a raw token request.
func assertionFor(t *testing.T, key *rsa.PrivateKey, clientID, kid, aud string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": kid})
	now := time.Now()
	c, _ := json.Marshal(map[string]any{"iss": clientID, "sub": clientID, "aud": aud, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
	input := enc(h) + "." + enc(c)
	sig, err := signRS256(key, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc(sig)
}

// TestEmulatorOAuthFlagMistakes: contradictory or incomplete OAuth flags are usage errors
// (exit 2) naming the flag, before anything is served.
func TestEmulatorOAuthFlagMistakes(t *testing.T) {
	dir := t.TempDir()
	exists := filepath.Join(dir, "exists.pem")
	private := filepath.Join(dir, "private.pem")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	for _, f := range []struct {
		path string
		data []byte
	}{{exists, []byte("x")}, {private, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--oauth-require-dpop"}, "--oauth-require-dpop needs"},
		{[]string{"--oauth-public-key", private, "--oauth-generate-key"}, "exclude each other"},
		{[]string{"--oauth-public-key", private}, "not a public key"},
		{[]string{"--oauth-public-key", filepath.Join(dir, "missing")}, "--oauth-public-key"},
		{[]string{"--oauth-generate-key", "--oauth-scopes", "openid"}, `unknown scope "openid"`},
		{[]string{"--oauth-generate-key", "--oauth-key-type", "dsa"}, "--oauth-key-type"},
		{[]string{"--oauth-generate-key", "--oauth-private-key-out", exists}, "exists"},
		{[]string{"--oauth-public-key", private, "--oauth-private-key-out", filepath.Join(dir, "new.pem")}, "go with --oauth-generate-key"},
	} {
		code, _, errOut := keyturn(t, append([]string{"emulator", "okta", "--listen", "127.0.0.1:0"}, c.args...)...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut, c.want)
		}
		if strings.Contains(errOut, "BEGIN") {
			t.Errorf("%v: stderr shows key material", c.args)
		}
	}
}

func signRS256(key *rsa.PrivateKey, input []byte) ([]byte, error) {
	sum := sha256.Sum256(input)
	return rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
}
