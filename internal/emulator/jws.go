package emulator

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	_ "crypto/sha512" // SHA-384 and SHA-512 for RS384/RS512/ES384/ES512
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
)

// A compact JWS, as the client assertions and DPoP proofs are: verified with the standard
// library (RS256/384/512, ES256/384/512; nothing else is accepted, "none" and HMAC included).

type jws struct {
	alg, kid, typ string
	jwk           map[string]any
	claims        map[string]any
	signingInput  []byte
	sig           []byte
}

var errMalformedJWT = errors.New("malformed JWT")

func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func parseJWS(s string) (*jws, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, errMalformedJWT
	}
	hb, err := b64(parts[0])
	if err != nil {
		return nil, errMalformedJWT
	}
	cb, err := b64(parts[1])
	if err != nil {
		return nil, errMalformedJWT
	}
	sig, err := b64(parts[2])
	if err != nil {
		return nil, errMalformedJWT
	}
	var hdr struct {
		Alg string         `json:"alg"`
		Kid string         `json:"kid"`
		Typ string         `json:"typ"`
		JWK map[string]any `json:"jwk"`
	}
	if json.Unmarshal(hb, &hdr) != nil {
		return nil, errMalformedJWT
	}
	dec := json.NewDecoder(bytes.NewReader(cb))
	dec.UseNumber()
	var claims map[string]any
	if dec.Decode(&claims) != nil || claims == nil {
		return nil, errMalformedJWT
	}
	return &jws{alg: hdr.Alg, kid: hdr.Kid, typ: hdr.Typ, jwk: hdr.JWK, claims: claims,
		signingInput: []byte(parts[0] + "." + parts[1]), sig: sig}, nil
}

func supportedAlg(alg string) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "ES256", "ES384", "ES512":
		return true
	}
	return false
}

func hashOf(alg string) crypto.Hash {
	switch alg[2:] {
	case "384":
		return crypto.SHA384
	case "512":
		return crypto.SHA512
	}
	return crypto.SHA256
}

// verify checks the signature with key, which must suit the algorithm.
func (j *jws) verify(key crypto.PublicKey) bool {
	if !supportedAlg(j.alg) {
		return false
	}
	h := hashOf(j.alg)
	hh := h.New()
	hh.Write(j.signingInput)
	digest := hh.Sum(nil)
	switch k := key.(type) {
	case *rsa.PublicKey:
		return j.alg[0] == 'R' && rsa.VerifyPKCS1v15(k, h, digest, j.sig) == nil
	case *ecdsa.PublicKey:
		want := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[j.alg]
		if j.alg[0] != 'E' || k.Curve.Params().Name != want {
			return false
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(j.sig) != 2*size {
			return false
		}
		r, s := new(big.Int).SetBytes(j.sig[:size]), new(big.Int).SetBytes(j.sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}

func (j *jws) str(name string) string {
	s, _ := j.claims[name].(string)
	return s
}

// num returns a numeric claim in seconds.
func (j *jws) num(name string) (int64, bool) {
	n, ok := j.claims[name].(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	f, err := n.Float64()
	return int64(f), err == nil
}

// audiences returns the aud claim, a string or an array of strings.
func (j *jws) audiences() []string {
	switch a := j.claims["aud"].(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, v := range a {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// jwkKey converts a public JWK (RSA or EC) into a key and its RFC 7638 thumbprint.
func jwkKey(jwk map[string]any) (crypto.PublicKey, string, error) {
	s := func(k string) string { v, _ := jwk[k].(string); return v }
	if _, private := jwk["d"]; private {
		return nil, "", errors.New("the jwk holds a private key")
	}
	var canonical string
	var key crypto.PublicKey
	switch s("kty") {
	case "RSA":
		n, err1 := b64(s("n"))
		e, err2 := b64(s("e"))
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, "", errors.New("bad RSA jwk")
		}
		key = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		canonical = `{"e":"` + s("e") + `","kty":"RSA","n":"` + s("n") + `"}`
	case "EC":
		curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
		c := curves[s("crv")]
		x, err1 := b64(s("x"))
		y, err2 := b64(s("y"))
		if c == nil || err1 != nil || err2 != nil {
			return nil, "", errors.New("bad EC jwk")
		}
		size := (c.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, "", errors.New("bad EC jwk")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, "", err
		}
		key = pub
		canonical = `{"crv":"` + s("crv") + `","kty":"EC","x":"` + s("x") + `","y":"` + s("y") + `"}`
	default:
		return nil, "", errors.New("unsupported jwk kty")
	}
	sum := sha256.Sum256([]byte(canonical))
	return key, base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
