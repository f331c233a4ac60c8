package mysql

import (
	"encoding/hex"
	"strings"
	"testing"
)

// cachingSHA2Vectors are caching_sha2_password authentication strings made by others, with the
// password each was made from:
//   - "secret": made by a MySQL 8.0 server, printed by SHOW CREATE USER with
//     print_identified_with_as_hex=ON in the MySQL Reference Manual, SHOW CREATE USER Statement
//     (https://dev.mysql.com/doc/refman/8.4/en/show-create-user.html); its salt holds control
//     bytes (0x0A, 0x0C, 0x10…), as MySQL's own salts may.
//   - "foobar": made by MySQL (CREATE USER … IDENTIFIED BY 'foobar', per the comment in
//     pingcap/tidb pkg/parser/auth/caching_sha2.go), TiDB's test vector in
//     pingcap/tidb pkg/parser/auth/caching_sha2_test.go (TestCheckShaPasswordGood).
//   - "hashcat": hashcat's self-test hash of mode 7401 "MySQL $A$ (sha256crypt)",
//     hashcat/hashcat src/modules/module_07401.c (ST_HASH, ST_PASS), given there as
//     $mysql$A$005*<salt hex>*<digest hex> and reassembled here as "$A$005$" + salt + digest;
//     its salt has bytes above 0x7F, which MySQL never makes, so it tests the algorithm only.
var cachingSHA2Vectors = []struct {
	password, authHex string
}{
	{"secret", "244124303035240C7745603626313D613C4C10633E0A104B1E14135A544A7871567245614F4872344643546336546F624F6C7861326932752F45622F4F473273597557627139"},
	{"foobar", "24412430303524031A69251C34295C4B35167C7F1E5A7B63091349503974624D34504B5A424679354856336868686F52485A736E4A733368786E427575516C73446469496537"},
	{"hashcat", "24412430303524" + "F9CC98CE08892924F50A213B6BC571A2C11778C5" + "625479393559393965414D45316477456B484F41316E64484742577A2E3162785353526B7554584647562F"},
}

// TestCachingSHA2AuthStringVectors checks the hash against the published vectors: the same
// password and salt must give, byte for byte, the same authentication string.
func TestCachingSHA2AuthStringVectors(t *testing.T) {
	for _, v := range cachingSHA2Vectors {
		want, err := hex.DecodeString(v.authHex)
		if err != nil || len(want) != len(sha2Prefix)+sha2SaltLen+sha2DigestChars || string(want[:7]) != sha2Prefix {
			t.Fatalf("vector %q is malformed (%d bytes, %v)", v.password, len(want), err)
		}
		salt := want[len(sha2Prefix) : len(sha2Prefix)+sha2SaltLen]
		if got := cachingSHA2AuthString([]byte(v.password), salt); got != string(want) {
			t.Errorf("password %q: got %x, want %x", v.password, got, want)
		}
		// A different password with the same salt must not match.
		if got := cachingSHA2AuthString([]byte(v.password+"x"), salt); got == string(want) {
			t.Errorf("password %q+x gives the same string", v.password)
		}
	}
}

// TestCachingSHA2HashSalt checks the strings CachingSHA2Hash makes: the layout MySQL parses,
// a salt of printable crypt characters (never NUL, '$', a quote or a backslash), a fresh salt
// each time, and a digest that is the hash of the password with that salt. Passwords of
// every length around the 32-byte block boundaries are covered.
func TestCachingSHA2HashSalt(t *testing.T) {
	seen := map[string]bool{}
	for n := 1; n <= 70; n++ {
		pw := []byte(strings.Repeat("pW'\\", 20)[:n])
		got, err := CachingSHA2Hash(pw)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 70 || !strings.HasPrefix(got, sha2Prefix) {
			t.Fatalf("CachingSHA2Hash = %q: want 70 characters starting %s", got, sha2Prefix)
		}
		salt := got[7:27]
		for _, c := range []byte(got[7:]) {
			if !strings.ContainsRune(cryptAlphabet, rune(c)) {
				t.Fatalf("salt or digest %q holds %q, outside the crypt alphabet", got[7:], c)
			}
		}
		if seen[salt] {
			t.Fatalf("salt %q made twice", salt)
		}
		seen[salt] = true
		if again := cachingSHA2AuthString(pw, []byte(salt)); again != got {
			t.Fatalf("the digest is not the hash of the password with the string's own salt")
		}
		if strings.Contains(got, string(pw)) && n > 3 {
			t.Fatalf("the authentication string holds the password")
		}
	}
}
