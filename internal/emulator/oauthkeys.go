package emulator

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/keyturn/keyturn/internal/secret"
)

// Registering an API Services app from outside Go: its public keys read from a file (PEM or
// JWK, as the Okta admin console takes them), or a key pair made for it.

// ParseOAuthKeys reads public keys for an OAuth app: a JWK, a JWK Set ({"keys": […]}), or PEM
// blocks ("PUBLIC KEY", "RSA PUBLIC KEY" or "CERTIFICATE"). RSA and EC P-256/384/521 keys are
// accepted; private keys are refused. A key's KID is its JWK "kid", or else its RFC 7638
// thumbprint.
func ParseOAuthKeys(data []byte) ([]OAuthKey, error) {
	data = bytes.TrimSpace(data)
	if bytes.HasPrefix(data, []byte("{")) {
		return parseJWKs(data)
	}
	var keys []OAuthKey
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var pub any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %q is not a public key (give the public half only)", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", block.Type, err)
		}
		k, err := oauthKeyOf(pub, "")
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no public key found: want a JWK, a JWK Set or PEM")
	}
	return keys, nil
}

func parseJWKs(data []byte) ([]OAuthKey, error) {
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWK: %w", err)
	}
	if set.Keys == nil {
		var one map[string]any
		if err := json.Unmarshal(data, &one); err != nil {
			return nil, fmt.Errorf("not a JWK: %w", err)
		}
		set.Keys = []map[string]any{one}
	}
	var keys []OAuthKey
	for i, jwk := range set.Keys {
		pub, thumb, err := jwkKey(jwk)
		if err != nil {
			return nil, fmt.Errorf("JWK %d: %w", i+1, err)
		}
		kid, _ := jwk["kid"].(string)
		if kid == "" {
			kid = thumb
		}
		keys = append(keys, OAuthKey{KID: kid, PublicKey: pub})
	}
	if len(keys) == 0 {
		return nil, errors.New("the JWK Set has no keys")
	}
	return keys, nil
}

// oauthKeyOf checks a public key and names it kid, or its thumbprint when kid is empty.
func oauthKeyOf(pub any, kid string) (OAuthKey, error) {
	jwk, err := jwkOf(pub)
	if err != nil {
		return OAuthKey{}, err
	}
	key, thumb, err := jwkKey(jwk)
	if err != nil {
		return OAuthKey{}, err
	}
	if kid == "" {
		kid = thumb
	}
	return OAuthKey{KID: kid, PublicKey: key}, nil
}

// jwkOf is the public JWK of an RSA or EC key.
func jwkOf(pub any) (map[string]any, error) {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}, nil
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		point, err := k.Bytes() // 0x04 || X || Y
		if err != nil || len(point) != 1+2*size {
			return nil, errors.New("the EC key is not an uncompressed point")
		}
		return map[string]any{"kty": "EC", "crv": k.Curve.Params().Name, "x": enc(point[1 : 1+size]), "y": enc(point[1+size:])}, nil
	}
	return nil, fmt.Errorf("unsupported public key type %T: want RSA or EC", pub)
}

// GenerateOAuthKey makes a key pair for an OAuth app: kind "rsa" (2048 bits) or "ec" (P-256),
// the kinds keyturn's Okta connector signs with. It returns the private key as PKCS#8 PEM and
// the public key, named kid (its thumbprint when kid is empty).
func GenerateOAuthKey(kind, kid string) (secret.Secret, OAuthKey, error) {
	var priv crypto.Signer
	var err error
	switch kind {
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ec":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return secret.Secret{}, OAuthKey{}, fmt.Errorf("unknown key type %q: want rsa or ec", kind)
	}
	if err != nil {
		return secret.Secret{}, OAuthKey{}, fmt.Errorf("generate the key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return secret.Secret{}, OAuthKey{}, fmt.Errorf("encode the key: %w", err)
	}
	key, err := oauthKeyOf(priv.Public(), kid)
	if err != nil {
		return secret.Secret{}, OAuthKey{}, err
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)
	s := secret.New(pemKey)
	clear(pemKey)
	return s, key, nil
}

// NewClientID returns a random client_id in Okta's form (0oa and 17 letters or digits).
func NewClientID() string { return "0oa" + randomAlnum(17) }
