package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// TestParseOAuthKeys: the forms an app's public key comes in (a JWK, a JWK Set, PEM public
// keys and certificates) register the same key, named by its kid or its RFC 7638 thumbprint;
// private keys and junk are refused.
func TestParseOAuthKeys(t *testing.T) {
	rk := testRSAKey(t)
	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pkix1, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	pkcs1 := x509.MarshalPKCS1PublicKey(&rk.PublicKey)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ek.PublicKey, ek)
	if err != nil {
		t.Fatal(err)
	}
	rsaJWK := publicJWK(rk)
	_, rsaThumb, _ := jwkKey(rsaJWK)
	ecJWK, _ := jwkOf(&ek.PublicKey)
	_, ecThumb, _ := jwkKey(ecJWK)
	withKid := map[string]any{"kid": "k1", "use": "sig", "alg": "RS256"}
	for k, v := range rsaJWK {
		withKid[k] = v
	}
	js := func(v any) []byte { b, _ := json.Marshal(v); return b }
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	for name, c := range map[string]struct {
		data []byte
		kids []string
	}{
		"JWK with kid":    {js(withKid), []string{"k1"}},
		"JWK without kid": {js(rsaJWK), []string{rsaThumb}},
		"JWK Set":         {js(map[string]any{"keys": []any{withKid, ecJWK}}), []string{"k1", ecThumb}},
		"PUBLIC KEY":      {pemOf("PUBLIC KEY", pkix1), []string{rsaThumb}},
		"RSA PUBLIC KEY":  {pemOf("RSA PUBLIC KEY", pkcs1), []string{rsaThumb}},
		"CERTIFICATE":     {pemOf("CERTIFICATE", cert), []string{ecThumb}},
		"two PEM blocks":  {append(pemOf("PUBLIC KEY", pkix1), pemOf("CERTIFICATE", cert)...), []string{rsaThumb, ecThumb}},
	} {
		keys, err := ParseOAuthKeys(c.data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var kids []string
		for _, k := range keys {
			kids = append(kids, k.KID)
		}
		if strings.Join(kids, ",") != strings.Join(c.kids, ",") {
			t.Errorf("%s: kids %v, want %v", name, kids, c.kids)
		}
	}
	der, _ := x509.MarshalPKCS8PrivateKey(ek)
	private := map[string]any{"d": "AAAA"}
	for k, v := range ecJWK {
		private[k] = v
	}
	for name, data := range map[string][]byte{
		"PEM private key": pemOf("PRIVATE KEY", der),
		"JWK private key": js(private),
		"junk":            []byte("not a key"),
		"empty JWK Set":   []byte(`{"keys":[]}`),
		"symmetric JWK":   []byte(`{"kty":"oct","k":"c2VjcmV0"}`),
	} {
		if keys, err := ParseOAuthKeys(data); err == nil {
			t.Errorf("%s: accepted as %v", name, keys)
		}
	}
}
