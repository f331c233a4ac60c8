// Package passgen generates passwords that satisfy Keeper's password complexity rules, using
// crypto/rand for every choice.
package passgen

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/secret"
)

// Complexity is Keeper's password complexity object; every class count is a minimum.
type Complexity struct {
	Length       int    `json:"length"`
	Caps         int    `json:"caps"`
	Lowercase    int    `json:"lowercase"`
	Digits       int    `json:"digits"`
	Special      int    `json:"special"`
	SpecialChars string `json:"specialChars,omitempty"`
}

// DefaultSpecialChars is Keeper's default special-character set; a custom set must be a subset.
const DefaultSpecialChars = "!@#$%^?();',.=+[]<>{}-_/\\*&:\"`~|"

// Bounds on Length.
const (
	MinLength = 8   // MinLength is the shortest length accepted, as the Keeper gateway enforces.
	MaxLength = 256 // MaxLength is the longest length accepted.
)

// The character classes other than the special set.
const (
	upperChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	lowerChars = "abcdefghijklmnopqrstuvwxyz"
	digitChars = "0123456789"
)

// maxBadShown bounds how many offending characters an error message lists.
const maxBadShown = 16

// Default returns Keeper's default complexity: length 20, at least one of each class.
func Default() Complexity {
	return Complexity{Length: 20, Caps: 1, Lowercase: 1, Digits: 1, Special: 1, SpecialChars: DefaultSpecialChars}
}

func invalid(format string, args ...any) *fault.Error {
	return fault.New(fault.Invalid, "invalid_complexity", format, args...)
}

// Validate reports, as a *fault.Error with code "invalid_complexity", why c cannot be used.
func (c Complexity) Validate() error {
	switch {
	case c.Length < MinLength:
		return invalid("password length %d is too short: a length under %d is refused", c.Length, MinLength)
	case c.Length > MaxLength:
		return invalid("password length %d is too long: the maximum is %d", c.Length, MaxLength)
	}
	counts := []struct {
		name string
		n    int
	}{{"caps", c.Caps}, {"lowercase", c.Lowercase}, {"digits", c.Digits}, {"special", c.Special}}
	sum := 0
	for _, k := range counts {
		if k.n < 0 {
			return invalid("%s count %d is negative: counts are minimums, use 0 to leave the class out", k.name, k.n)
		}
		if k.n > c.Length {
			return invalid("%s count %d is more than the length %d", k.name, k.n, c.Length)
		}
		sum += k.n // each term is at most MaxLength, so this cannot overflow
	}
	if sum == 0 {
		return invalid("caps, lowercase, digits and special are all 0: at least one character class must be enabled")
	}
	if sum > c.Length {
		return invalid("the minimums (caps %d + lowercase %d + digits %d + special %d = %d) exceed the length %d",
			c.Caps, c.Lowercase, c.Digits, c.Special, sum, c.Length)
	}
	if bad := badSpecials(c.SpecialChars); bad != "" {
		return invalid("specialChars has characters outside Keeper's special set: %s (allowed: %s)", bad, DefaultSpecialChars)
	}
	return nil
}

// badSpecials lists, quoted and without repeats, the characters of s that are not in
// DefaultSpecialChars, or returns "" when there are none. An invalid UTF-8 byte shows as \xNN.
func badSpecials(s string) string {
	var bad []string
	seen := map[string]bool{}
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		ch := s[i : i+size]
		i += size
		if size == 1 && strings.IndexByte(DefaultSpecialChars, ch[0]) >= 0 || seen[ch] {
			continue
		}
		if len(bad) == maxBadShown {
			bad = append(bad, "and more")
			break
		}
		seen[ch] = true
		bad = append(bad, strconv.Quote(ch))
	}
	return strings.Join(bad, " ")
}

// specialSet returns the distinct characters of the special set c uses, in order of first use.
func (c Complexity) specialSet() string {
	if c.SpecialChars == "" {
		return DefaultSpecialChars
	}
	var seen [128]bool
	b := make([]byte, 0, len(DefaultSpecialChars))
	for i := 0; i < len(c.SpecialChars); i++ {
		ch := c.SpecialChars[i]
		if ch < 128 && !seen[ch] {
			seen[ch] = true
			b = append(b, ch)
		}
	}
	return string(b)
}

// Generate returns a fresh password satisfying c, drawn with crypto/rand.
func Generate(c Complexity) (secret.Secret, error) {
	return generate(c, rand.Reader)
}

// generate is Generate with the randomness source as a parameter, for tests.
func generate(c Complexity, r io.Reader) (secret.Secret, error) {
	if err := c.Validate(); err != nil {
		return secret.Secret{}, err
	}
	classes := []struct {
		chars string
		n     int
	}{{upperChars, c.Caps}, {lowerChars, c.Lowercase}, {digitChars, c.Digits}, {c.specialSet(), c.Special}}

	src := newSource(r)
	defer src.clear()
	pw := make([]byte, 0, c.Length)
	defer func() { clear(pw[:cap(pw)]) }()

	var union strings.Builder
	for _, k := range classes {
		if k.n == 0 {
			continue // a class with count 0 is not used at all
		}
		union.WriteString(k.chars) // the classes are disjoint, so each character appears once
		for range k.n {
			i, err := src.intn(len(k.chars))
			if err != nil {
				return secret.Secret{}, err
			}
			pw = append(pw, k.chars[i])
		}
	}
	all := union.String()
	for len(pw) < c.Length {
		i, err := src.intn(len(all))
		if err != nil {
			return secret.Secret{}, err
		}
		pw = append(pw, all[i])
	}
	// Fisher–Yates: each of the n! orders is equally likely.
	for i := len(pw) - 1; i > 0; i-- {
		j, err := src.intn(i + 1)
		if err != nil {
			return secret.Secret{}, err
		}
		pw[i], pw[j] = pw[j], pw[i]
	}
	return secret.New(pw), nil
}

// source draws unbiased indices from a reader of uniform random bytes, reading in blocks.
type source struct {
	r   io.Reader
	buf [512]byte
	off int
}

func newSource(r io.Reader) *source {
	s := &source{r: r}
	s.off = len(s.buf)
	return s
}

func (s *source) uint32() (uint32, error) {
	if s.off+4 > len(s.buf) {
		if _, err := io.ReadFull(s.r, s.buf[:]); err != nil {
			return 0, fmt.Errorf("passgen: reading random bytes: %w", err)
		}
		s.off = 0
	}
	v := binary.LittleEndian.Uint32(s.buf[s.off:])
	s.off += 4
	return v, nil
}

// intn returns a uniform integer in [0, n), 0 < n <= 1<<31, by rejection sampling: values at or
// above the largest multiple of n that fits in 32 bits are discarded, so no residue is favoured.
func (s *source) intn(n int) (int, error) {
	if n <= 0 || n > 1<<31 {
		panic("passgen: intn argument out of range")
	}
	limit := uint64(1<<32) / uint64(n) * uint64(n)
	for {
		v, err := s.uint32()
		if err != nil {
			return 0, err
		}
		if uint64(v) < limit {
			return int(uint64(v) % uint64(n)), nil
		}
	}
}

// clear overwrites the buffered randomness, which determined the password.
func (s *source) clear() { clear(s.buf[:]) }

// ParseCLI parses Commander's "len,caps,lower,digits,special[,chars]" form and validates it.
// Everything after the fifth comma is the special set, so it may itself contain commas.
func ParseCLI(s string) (Complexity, error) {
	parts := strings.SplitN(s, ",", 6)
	if len(parts) < 5 {
		return Complexity{}, invalid("complexity %q must be \"length,caps,lowercase,digits,special[,chars]\", e.g. \"32,5,5,5,5\"", s)
	}
	names := [5]string{"length", "caps", "lowercase", "digits", "special"}
	var n [5]int
	for i, name := range names {
		f := strings.TrimSpace(parts[i])
		v, err := strconv.Atoi(f)
		if errors.Is(err, strconv.ErrRange) {
			return Complexity{}, invalid("complexity %s %q is out of range", name, f)
		} else if err != nil {
			return Complexity{}, invalid("complexity %s %q is not a whole number", name, f)
		}
		n[i] = v
	}
	c := Complexity{Length: n[0], Caps: n[1], Lowercase: n[2], Digits: n[3], Special: n[4]}
	if len(parts) == 6 {
		c.SpecialChars = strings.TrimSpace(parts[5])
	}
	if err := c.Validate(); err != nil {
		return Complexity{}, err
	}
	return c, nil
}

// String returns c in Commander's "len,caps,lower,digits,special[,chars]" form.
func (c Complexity) String() string {
	s := fmt.Sprintf("%d,%d,%d,%d,%d", c.Length, c.Caps, c.Lowercase, c.Digits, c.Special)
	if c.SpecialChars != "" {
		s += "," + c.SpecialChars
	}
	return s
}
