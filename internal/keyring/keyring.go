// Package keyring holds the vault's key hierarchy: a random master key, wrapped by a
// key-encryption key derived from a passphrase (Argon2id) or read from a key file, and the
// per-record data keys it wraps in turn. All encryption is AES-256-GCM with a random nonce.
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"

	"github.com/keyturn/keyturn/internal/secret"
)

// KeySize is the size of every symmetric key, in bytes (AES-256).
const KeySize = 32

// formatV1 is the first byte of every ciphertext this package writes.
const formatV1 byte = 1

// ErrWrongKey is returned by Open when the passphrase or key file does not unwrap the master key.
var ErrWrongKey = errors.New("wrong passphrase or key file: the master key does not unwrap")

// ErrDecrypt is returned when a ciphertext does not authenticate: it was altered, or it belongs
// to another record, revision or key.
var ErrDecrypt = errors.New("ciphertext does not authenticate (altered, or bound to another record)")

// KDFParams are the Argon2id parameters used to derive a key-encryption key from a passphrase.
// They are stored next to the wrapped master key so that they can change between versions.
type KDFParams struct {
	Algorithm string `json:"alg"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"`
}

// DefaultKDF returns the Argon2id parameters for new vaults (64 MiB, 3 passes, 2 lanes) with a
// fresh random salt.
func DefaultKDF() KDFParams {
	return KDFParams{Algorithm: "argon2id", Time: 3, MemoryKiB: 64 * 1024, Threads: 2, Salt: randomBytes(16)}
}

// Wrapped is the master key as stored: how its key-encryption key is obtained, and the sealed key.
type Wrapped struct {
	Term   uint32     `json:"term"`
	Kind   string     `json:"kind"` // "passphrase" or "keyfile"
	KDF    *KDFParams `json:"kdf,omitempty"`
	Sealed []byte     `json:"sealed"`
}

// Unlocker produces the key-encryption key that wraps the master key.
type Unlocker struct {
	kind     string
	material secret.Secret
}

// Passphrase returns an Unlocker that derives the key-encryption key from p with Argon2id.
func Passphrase(p secret.Secret) Unlocker { return Unlocker{kind: "passphrase", material: p} }

// KeyFile returns an Unlocker whose key-encryption key is the content of a key file.
func KeyFile(content secret.Secret) Unlocker { return Unlocker{kind: "keyfile", material: content} }

// NewKeyFileContent returns fresh random content for a key file.
func NewKeyFileContent() secret.Secret { return secret.New(randomBytes(KeySize)) }

func (u Unlocker) kek(kdf *KDFParams) ([]byte, error) {
	switch u.kind {
	case "passphrase":
		if kdf == nil || kdf.Algorithm != "argon2id" {
			return nil, errors.New("keyring: passphrase-wrapped key without argon2id parameters")
		}
		if u.material.IsZero() {
			return nil, errors.New("keyring: empty passphrase")
		}
		return argon2.IDKey(u.material.Bytes(), kdf.Salt, kdf.Time, kdf.MemoryKiB, kdf.Threads, KeySize), nil
	case "keyfile":
		if len(u.material.Bytes()) != KeySize {
			return nil, fmt.Errorf("keyring: a key file holds %d bytes, this one %d", KeySize, len(u.material.Bytes()))
		}
		return append([]byte(nil), u.material.Bytes()...), nil
	default:
		return nil, errors.New("keyring: no passphrase or key file given")
	}
}

// Keyring holds the unsealed master key and the keys derived from it.
type Keyring struct {
	term    uint32
	wrapDEK cipher.AEAD // wraps per-record data keys
	macKey  []byte      // keys the hashes of API key secrets and bearer tokens
}

// New creates a random master key (term 1) wrapped by u. kdf is used for passphrases only.
func New(u Unlocker, kdf KDFParams) (*Keyring, Wrapped, error) {
	w := Wrapped{Term: 1, Kind: u.kind}
	if u.kind == "passphrase" {
		w.KDF = &kdf
	}
	kek, err := u.kek(w.KDF)
	if err != nil {
		return nil, Wrapped{}, err
	}
	defer clear(kek)
	master := randomBytes(KeySize)
	defer clear(master)
	w.Sealed = seal(mustAEAD(kek), master, wrapAAD(w))
	k, err := fromMaster(w.Term, master)
	return k, w, err
}

// Open unwraps the master key in w with u. A wrong passphrase or key file gives ErrWrongKey.
func Open(w Wrapped, u Unlocker) (*Keyring, error) {
	if u.kind != w.Kind {
		return nil, fmt.Errorf("keyring: the vault is sealed with a %s, but a %s was given", w.Kind, u.kind)
	}
	kek, err := u.kek(w.KDF)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	master, err := open(mustAEAD(kek), w.Sealed, wrapAAD(w))
	if err != nil {
		return nil, ErrWrongKey
	}
	defer clear(master)
	return fromMaster(w.Term, master)
}

func wrapAAD(w Wrapped) []byte {
	return binary.BigEndian.AppendUint32([]byte("keyturn/master/"+w.Kind+"/"), w.Term)
}

func fromMaster(term uint32, master []byte) (*Keyring, error) {
	wrapKey, err := hkdf.Key(sha256.New, master, nil, "keyturn/v1/data-key-wrap", KeySize)
	if err != nil {
		return nil, err
	}
	macKey, err := hkdf.Key(sha256.New, master, nil, "keyturn/v1/credential-mac", KeySize)
	if err != nil {
		return nil, err
	}
	return &Keyring{term: term, wrapDEK: mustAEAD(wrapKey), macKey: macKey}, nil
}

// Hash returns the keyed hash (HMAC-SHA256) of msg for a purpose such as "token" or "api-key".
// Different purposes never produce the same hash for the same message.
func (k *Keyring) Hash(purpose string, msg []byte) []byte {
	m := hmac.New(sha256.New, k.macKey)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(msg)
	return m.Sum(nil)
}

// NewDataKey returns a fresh data key and its wrapped form, bound to aad (the record's identity).
func (k *Keyring) NewDataKey(aad []byte) (*DataKey, []byte, error) {
	raw := randomBytes(KeySize)
	defer clear(raw)
	wrapped := binary.BigEndian.AppendUint32(nil, k.term)
	wrapped = append(wrapped, seal(k.wrapDEK, raw, aad)...)
	return &DataKey{aead: mustAEAD(raw)}, wrapped, nil
}

// OpenDataKey unwraps a data key made by NewDataKey with the same aad.
func (k *Keyring) OpenDataKey(wrapped, aad []byte) (*DataKey, error) {
	if len(wrapped) < 4 {
		return nil, ErrDecrypt
	}
	if term := binary.BigEndian.Uint32(wrapped); term != k.term {
		return nil, fmt.Errorf("keyring: data key wrapped by master key term %d, unsealed term is %d", term, k.term)
	}
	raw, err := open(k.wrapDEK, wrapped[4:], aad)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	return &DataKey{aead: mustAEAD(raw)}, nil
}

// DataKey encrypts the values of one record.
type DataKey struct {
	aead cipher.AEAD
}

// Seal encrypts plaintext bound to aad.
func (d *DataKey) Seal(plaintext, aad []byte) []byte { return seal(d.aead, plaintext, aad) }

// Open decrypts a ciphertext made by Seal with the same aad, or returns ErrDecrypt.
func (d *DataKey) Open(ciphertext, aad []byte) ([]byte, error) { return open(d.aead, ciphertext, aad) }

// seal writes formatV1 || nonce || ciphertext || tag; the format byte is authenticated too.
func seal(a cipher.AEAD, plaintext, aad []byte) []byte {
	return a.Seal([]byte{formatV1}, nil, plaintext, append([]byte{formatV1}, aad...))
}

func open(a cipher.AEAD, ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) < 1+a.NonceSize()+a.Overhead() || ciphertext[0] != formatV1 {
		return nil, ErrDecrypt
	}
	out, err := a.Open(nil, nil, ciphertext[1:], append([]byte{formatV1}, aad...))
	if err != nil {
		return nil, ErrDecrypt
	}
	return out, nil
}

func mustAEAD(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(fmt.Sprintf("keyring: %v", err)) // only on a key of the wrong size: a bug
	}
	a, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		panic(fmt.Sprintf("keyring: %v", err))
	}
	return a
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return b
}
