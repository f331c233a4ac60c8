package keyring

import (
	"bytes"
	"errors"
	"testing"

	"github.com/keyturn/keyturn/internal/secret"
)

// fastKDF keeps tests quick; the algorithm and code path are the production ones.
func fastKDF() KDFParams {
	p := DefaultKDF()
	p.Time, p.MemoryKiB = 1, 1024
	return p
}

func TestPassphraseRoundTrip(t *testing.T) {
	k1, w, err := New(Passphrase(secret.FromString("correct horse")), fastKDF())
	if err != nil {
		t.Fatal(err)
	}
	dk, wrapped, err := k1.NewDataKey([]byte("rec-1"))
	if err != nil {
		t.Fatal(err)
	}
	ct := dk.Seal([]byte("s3cret"), []byte("rec-1|1"))

	k2, err := Open(w, Passphrase(secret.FromString("correct horse")))
	if err != nil {
		t.Fatal(err)
	}
	dk2, err := k2.OpenDataKey(wrapped, []byte("rec-1"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := dk2.Open(ct, []byte("rec-1|1"))
	if err != nil || string(pt) != "s3cret" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	if !bytes.Equal(k1.Hash("token", []byte("x")), k2.Hash("token", []byte("x"))) {
		t.Fatal("hash differs after reopening")
	}
	if bytes.Equal(k1.Hash("token", []byte("x")), k1.Hash("api-key", []byte("x"))) {
		t.Fatal("hash does not depend on purpose")
	}
}

func TestWrongUnlocker(t *testing.T) {
	_, w, err := New(Passphrase(secret.FromString("right")), fastKDF())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(w, Passphrase(secret.FromString("wrong"))); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := Open(w, KeyFile(NewKeyFileContent())); err == nil {
		t.Fatal("key file opened a passphrase vault")
	}

	kf := NewKeyFileContent()
	_, w2, err := New(KeyFile(kf), KDFParams{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(w2, KeyFile(NewKeyFileContent())); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key file: %v", err)
	}
	if _, err := Open(w2, KeyFile(secret.FromString("short"))); err == nil {
		t.Fatal("short key file accepted")
	}
	if _, err := Open(w2, KeyFile(kf)); err != nil {
		t.Fatal(err)
	}
}

func TestTamperingFails(t *testing.T) {
	k, _, err := New(KeyFile(NewKeyFileContent()), KDFParams{})
	if err != nil {
		t.Fatal(err)
	}
	dk, wrapped, _ := k.NewDataKey([]byte("a"))
	ct := dk.Seal([]byte("value"), []byte("a|1"))
	for i := range ct {
		flipped := bytes.Clone(ct)
		flipped[i] ^= 0x01
		if _, err := dk.Open(flipped, []byte("a|1")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("bit flip at %d: %v", i, err)
		}
	}
	if _, err := dk.Open(ct, []byte("b|1")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("other aad: %v", err)
	}
	if _, err := dk.Open(ct[:10], []byte("a|1")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := k.OpenDataKey(wrapped, []byte("b")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("data key under other aad: %v", err)
	}
}
