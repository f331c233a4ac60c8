package mysql

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
)

// MySQL's caching_sha2_password stores "$A$005$" + a 20-byte salt + the 43-character digest
// of sha256crypt (Ulrich Drepper's SHA-crypt, https://www.akkadia.org/drepper/SHA-crypt.txt)
// over the password and that salt with 5000 rounds ("005" is the rounds / 1000, in hex in
// MySQL 8.0.24 and later, in decimal before; both read 005 as 5000). MySQL's variant, as in its
// mysys/crypt_genhash_impl.cc and sql/auth/sha2_password.cc: the salt is 20 bytes (Drepper
// caps it at 16) and the digest is stored without the "$5$salt$" prefix crypt(3) writes.
const (
	sha2Prefix      = "$A$005$"
	sha2SaltLen     = 20
	sha2Rounds      = 5000
	sha2DigestChars = 43
	// MaxCachingSHA2Password is the longest password, in bytes, that MySQL's caching_sha2_password
	// checks (CACHING_SHA2_PASSWORD_MAX_PASSWORD_LENGTH): a longer one can never log in.
	MaxCachingSHA2Password = 256
)

// cryptAlphabet is crypt(3)'s base-64 alphabet; it also supplies the salt's characters.
const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// CachingSHA2Hash returns a caching_sha2_password authentication string for pw with a fresh
// random salt, what MySQL stores in mysql.user when told IDENTIFIED BY pw.
//
// The salt is 20 characters of the crypt alphabet (120 random bits). MySQL's own salts are any
// 7-bit byte but NUL and '$' (generate_user_salt); the server hashes the stored salt as a C string
// cut at the first '$', and the column holds UTF-8, so those bytes must never appear. The crypt
// alphabet holds none of them, nor quotes or backslashes, so the whole string is printable
// ASCII that any SQL string literal carries unchanged.
func CachingSHA2Hash(pw []byte) (string, error) {
	var salt [sha2SaltLen]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return "", fmt.Errorf("caching_sha2_password salt: %w", err)
	}
	for i, b := range salt {
		salt[i] = cryptAlphabet[b&0x3f] // 256 is a multiple of 64: uniform
	}
	return cachingSHA2AuthString(pw, salt[:]), nil
}

// cachingSHA2AuthString is the caching_sha2_password authentication string of pw with salt
// (20 bytes). The numbered steps are those of Drepper's specification.
func cachingSHA2AuthString(pw, salt []byte) string {
	const mix = sha256.Size
	// Steps 4-8: B = SHA256(pw + salt + pw).
	h := sha256.New()
	h.Write(pw)
	h.Write(salt)
	h.Write(pw)
	b := h.Sum(nil)

	// Steps 1-3, 9-12: A = SHA256(pw + salt + B repeated to len(pw) bytes + for each bit of
	// len(pw), lowest first: B when set, pw when clear).
	h.Reset()
	h.Write(pw)
	h.Write(salt)
	n := len(pw)
	for ; n > mix; n -= mix {
		h.Write(b)
	}
	h.Write(b[:n])
	for n = len(pw); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(pw)
		}
	}
	a := h.Sum(nil)

	// Steps 13-16: P = SHA256(pw repeated len(pw) times), repeated to len(pw) bytes.
	h.Reset()
	for range len(pw) {
		h.Write(pw)
	}
	p := repeatTo(h.Sum(nil), len(pw))
	defer clear(p)

	// Steps 17-20: S = SHA256(salt repeated 16 + A[0] times), repeated to len(salt) bytes.
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(salt)
	}
	s := repeatTo(h.Sum(nil), len(salt))

	// Step 21: the rounds.
	c := a
	for i := range sha2Rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(s)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(c[:0])
	}

	// Step 22: the digest's bytes in crypt's order, 24 bits to 4 characters, lowest first.
	var out strings.Builder
	out.Grow(len(sha2Prefix) + len(salt) + sha2DigestChars)
	out.WriteString(sha2Prefix)
	out.Write(salt)
	put := func(b2, b1, b0 byte, chars int) {
		w := uint32(b2)<<16 | uint32(b1)<<8 | uint32(b0)
		for range chars {
			out.WriteByte(cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	for k := range 10 {
		// (0,10,20) (21,1,11) (12,22,2) (3,13,23) … : each group rotates by one.
		i, j, l := k, k+10, k+20
		switch k % 3 {
		case 1:
			i, j, l = k+20, k, k+10
		case 2:
			i, j, l = k+10, k+20, k
		}
		put(c[i], c[j], c[l], 4)
	}
	put(0, c[31], c[30], 3)
	return out.String()
}

// repeatTo returns digest repeated (and cut) to n bytes.
func repeatTo(digest []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, digest[:min(len(digest), n-len(out))]...)
	}
	return out
}
