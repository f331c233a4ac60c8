package passgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/fault"
)

// checkPassword returns a description of the first invariant pw breaks for c, or "".
func checkPassword(c Complexity, pw string) string {
	if len(pw) != c.Length {
		return fmt.Sprintf("length %d, want %d", len(pw), c.Length)
	}
	specials := c.SpecialChars
	if specials == "" {
		specials = DefaultSpecialChars
	}
	var caps, lower, digits, special int
	for i := 0; i < len(pw); i++ {
		ch := pw[i]
		switch {
		case ch >= 'A' && ch <= 'Z':
			caps++
		case ch >= 'a' && ch <= 'z':
			lower++
		case ch >= '0' && ch <= '9':
			digits++
		case strings.IndexByte(specials, ch) >= 0:
			special++
		default:
			return fmt.Sprintf("character %q at %d is in no allowed set", ch, i)
		}
	}
	for _, k := range []struct {
		name     string
		got, min int
	}{{"caps", caps, c.Caps}, {"lowercase", lower, c.Lowercase}, {"digits", digits, c.Digits}, {"special", special, c.Special}} {
		if k.got < k.min {
			return fmt.Sprintf("%d %s, want at least %d", k.got, k.name, k.min)
		}
		if k.min == 0 && k.got != 0 {
			return fmt.Sprintf("%d %s, but the class is disabled", k.got, k.name)
		}
	}
	return ""
}

func wantInvalid(t *testing.T, err error, msgPart string) {
	t.Helper()
	fe, ok := fault.As(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *fault.Error", err, err)
	}
	if fe.Kind != fault.Invalid || fe.Code != "invalid_complexity" {
		t.Errorf("kind %v code %q, want Invalid invalid_complexity", fe.Kind, fe.Code)
	}
	if !strings.Contains(fe.Message, msgPart) {
		t.Errorf("message %q does not contain %q", fe.Message, msgPart)
	}
}

func TestDefault(t *testing.T) {
	d := Default()
	want := Complexity{Length: 20, Caps: 1, Lowercase: 1, Digits: 1, Special: 1, SpecialChars: DefaultSpecialChars}
	if d != want {
		t.Fatalf("Default() = %+v, want %+v", d, want)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(DefaultSpecialChars) != 32 {
		t.Fatalf("DefaultSpecialChars has %d characters, want 32", len(DefaultSpecialChars))
	}
}

func TestValidate(t *testing.T) {
	good := []Complexity{
		Default(),
		{Length: 8, Caps: 1, Lowercase: 1, Digits: 1, Special: 1},
		{Length: 8, Caps: 2, Lowercase: 2, Digits: 2, Special: 2},
		{Length: 256, Lowercase: 1},
		{Length: 32, Caps: 5, Lowercase: 5, Digits: 5, Special: 5},
		{Length: 24, Caps: 1, Lowercase: 1, Digits: 1, Special: 1, SpecialChars: "!@#"},
		{Length: 12, Caps: 1, Lowercase: 1, Digits: 1},                                    // target refuses symbols
		{Length: 12, Caps: 1, Lowercase: 1, Digits: 1, SpecialChars: DefaultSpecialChars}, // set ignored when special 0
		{Length: 10, Digits: 10},
		{Length: 10, Special: 1, SpecialChars: "!!!!"}, // duplicates ignored
	}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: unexpected error %v", c, err)
		}
	}
	bad := []struct {
		c    Complexity
		want string
	}{
		{Complexity{}, "length 0 is too short: a length under 8 is refused"},
		{Complexity{Length: 7, Lowercase: 1}, "a length under 8 is refused"},
		{Complexity{Length: -3, Lowercase: 1}, "a length under 8 is refused"},
		{Complexity{Length: 257, Lowercase: 1}, "length 257 is too long: the maximum is 256"},
		{Complexity{Length: math.MaxInt, Lowercase: 1}, "the maximum is 256"},
		{Complexity{Length: 20, Caps: -1, Lowercase: 1}, "caps count -1 is negative"},
		{Complexity{Length: 20, Lowercase: 1, Special: math.MinInt}, "special count"},
		{Complexity{Length: 20}, "all 0: at least one character class must be enabled"},
		{Complexity{Length: 20, SpecialChars: "!@#"}, "at least one character class"},
		{Complexity{Length: 8, Caps: 3, Lowercase: 3, Digits: 3}, "(caps 3 + lowercase 3 + digits 3 + special 0 = 9) exceed the length 8"},
		{Complexity{Length: 20, Digits: 21}, "digits count 21 is more than the length 20"},
		{Complexity{Length: 20, Caps: math.MaxInt, Lowercase: math.MaxInt}, "caps count"},
		{Complexity{Length: 20, Special: 1, SpecialChars: "!a"}, `outside Keeper's special set: "a"`},
		{Complexity{Length: 20, Special: 1, SpecialChars: "! !"}, `" "`},
		{Complexity{Length: 20, Special: 1, SpecialChars: "é€\t\x00\xff"}, `"é" "€" "\t" "\x00" "\xff"`},
		{Complexity{Length: 20, Special: 1, SpecialChars: "aab"}, `: "a" "b" (allowed:`},
		{Complexity{Length: 20, Lowercase: 1, SpecialChars: "ab"}, `"a" "b"`}, // checked even when unused
		{Complexity{Length: 20, Special: 1, SpecialChars: "abcdefghijklmnopqrstuvwxyz"}, `"p" and more`},
	}
	for _, tc := range bad {
		err := tc.c.Validate()
		if err == nil {
			t.Errorf("%+v: accepted, want error containing %q", tc.c, tc.want)
			continue
		}
		wantInvalid(t, err, tc.want)
	}
}

func TestParseCLI(t *testing.T) {
	good := []struct {
		in   string
		want Complexity
	}{
		{"32,5,5,5,5", Complexity{Length: 32, Caps: 5, Lowercase: 5, Digits: 5, Special: 5}},
		{"24,1,1,1,1,!@#", Complexity{Length: 24, Caps: 1, Lowercase: 1, Digits: 1, Special: 1, SpecialChars: "!@#"}},
		{" 20 , 1, 1 ,1,0", Complexity{Length: 20, Caps: 1, Lowercase: 1, Digits: 1}},
		{"20,1,1,1,1,", Complexity{Length: 20, Caps: 1, Lowercase: 1, Digits: 1, Special: 1}},
		{"20,1,1,1,1,,.", Complexity{Length: 20, Caps: 1, Lowercase: 1, Digits: 1, Special: 1, SpecialChars: ",."}},
		{"20,1,1,1,1, !@# ", Complexity{Length: 20, Caps: 1, Lowercase: 1, Digits: 1, Special: 1, SpecialChars: "!@#"}},
		{"20,1,1,1,1," + DefaultSpecialChars, Default()},
		{"8,0,0,8,0", Complexity{Length: 8, Digits: 8}},
	}
	for _, tc := range good {
		got, err := ParseCLI(tc.in)
		if err != nil {
			t.Errorf("ParseCLI(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseCLI(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", `complexity "" must be "length,caps,lowercase,digits,special[,chars]"`},
		{"32,5,5,5", "must be"},
		{"32 5 5 5 5", "must be"},
		{"32,5,x,5,5", `complexity lowercase "x" is not a whole number`},
		{"32,5,5,5,", `complexity special "" is not a whole number`},
		{"32.5,5,5,5,5", `length "32.5" is not a whole number`},
		{"99999999999999999999,1,1,1,1", `length "99999999999999999999" is out of range`},
		{"7,1,1,1,1", "a length under 8 is refused"},
		{"300,1,1,1,1", "the maximum is 256"},
		{"20,-1,1,1,1", "caps count -1 is negative"},
		{"20,0,0,0,0", "at least one character class"},
		{"10,3,3,3,3", "exceed the length 10"},
		{"20,1,1,1,1,abc", `"a" "b" "c"`},
		{"20,1,1,1,1,!@#,x", `"x"`},
	}
	for _, tc := range bad {
		_, err := ParseCLI(tc.in)
		if err == nil {
			t.Errorf("ParseCLI(%q) accepted, want error containing %q", tc.in, tc.want)
			continue
		}
		wantInvalid(t, err, tc.want)
	}
}

func TestString(t *testing.T) {
	cases := []struct {
		c    Complexity
		want string
	}{
		{Complexity{Length: 32, Caps: 5, Lowercase: 5, Digits: 5, Special: 5}, "32,5,5,5,5"},
		{Complexity{Length: 24, Caps: 1, Lowercase: 1, Digits: 1, Special: 1, SpecialChars: "!@#"}, "24,1,1,1,1,!@#"},
		{Default(), "20,1,1,1,1," + DefaultSpecialChars},
	}
	for _, tc := range cases {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.c, got, tc.want)
		}
		back, err := ParseCLI(tc.c.String())
		if err != nil || back != tc.c {
			t.Errorf("ParseCLI(%q) = %+v, %v; want %+v", tc.c.String(), back, err, tc.c)
		}
	}
}

func TestJSON(t *testing.T) {
	// The shape in ARCHITECTURE.md §3 and Keeper's pwdComplexity.
	in := `{"length": 20, "caps": 1, "lowercase": 1, "digits": 1, "special": 1,
	        "specialChars": "!@#$%^?();',.=+[]<>{}-_/\\*&:\"` + "`" + `~|"}`
	var c Complexity
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if c != Default() {
		t.Fatalf("decoded %+v, want %+v", c, Default())
	}
	out, err := json.Marshal(Complexity{Length: 12, Lowercase: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"length":12,"caps":0,"lowercase":1,"digits":0,"special":0}`; string(out) != want {
		t.Fatalf("encoded %s, want %s", out, want)
	}
}

var invariantCases = []Complexity{
	Default(),
	{Length: 8, Caps: 1, Lowercase: 1, Digits: 1, Special: 1},
	{Length: 8, Caps: 2, Lowercase: 2, Digits: 2, Special: 2},
	{Length: 32, Caps: 5, Lowercase: 5, Digits: 5, Special: 5},
	{Length: 24, Caps: 1, Lowercase: 1, Digits: 1, Special: 1, SpecialChars: "!@#"},
	{Length: 16, Caps: 2, Lowercase: 2, Digits: 2},                        // no symbols
	{Length: 16, Lowercase: 4, Digits: 4, Special: 1, SpecialChars: "-_"}, // no uppercase
	{Length: 12, Caps: 12},
	{Length: 10, Special: 1, SpecialChars: "!!!!"},
	{Length: 256, Caps: 1, Lowercase: 1, Digits: 1, Special: 1},
	{Length: 64, Caps: 16, Lowercase: 16, Digits: 16, Special: 16, SpecialChars: `"\'` + "`"},
}

func TestGenerateInvariants(t *testing.T) {
	for _, c := range invariantCases {
		t.Run(c.String(), func(t *testing.T) {
			for range 2000 {
				pw, err := Generate(c)
				if err != nil {
					t.Fatal(err)
				}
				if msg := checkPassword(c, pw.Reveal()); msg != "" {
					t.Fatalf("%s: %q", msg, pw.Reveal())
				}
			}
		})
	}
}

func TestGenerateRefusesInvalid(t *testing.T) {
	pw, err := Generate(Complexity{Length: 7, Lowercase: 1})
	wantInvalid(t, err, "a length under 8 is refused")
	if !pw.IsZero() {
		t.Fatal("a password came back with the error")
	}
}

func TestGenerateDiffers(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		pw, err := Generate(Default())
		if err != nil {
			t.Fatal(err)
		}
		if seen[pw.Reveal()] {
			t.Fatal("the same password was generated twice")
		}
		seen[pw.Reveal()] = true
	}
	// Even the smallest space: 8 digits, 10^8 passwords.
	c := Complexity{Length: 8, Digits: 1}
	a, _ := Generate(c)
	b, _ := Generate(c)
	d, _ := Generate(c)
	if a.Equal(b) && b.Equal(d) {
		t.Fatal("three 8-digit passwords were equal")
	}
}

// TestFrequencies checks over 20,000 passwords that every allowed character occurs about as
// often as it should and that each position holds each class about equally often (the shuffle).
// With these sample sizes a ±10% band is more than 5 standard deviations for every count, so
// a correct generator fails with probability below 1e-6.
func TestFrequencies(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	const n = 20000
	cases := []Complexity{
		Default(),
		{Length: 16, Lowercase: 3, Digits: 2, Special: 4, SpecialChars: "!@#"},
	}
	for _, c := range cases {
		t.Run(c.String(), func(t *testing.T) {
			type class struct {
				chars string
				min   int
			}
			classes := []class{{upperChars, c.Caps}, {lowerChars, c.Lowercase}, {digitChars, c.Digits}, {c.specialSet(), c.Special}}
			union, mins := 0, 0
			for _, k := range classes {
				if k.min > 0 {
					union += len(k.chars)
					mins += k.min
				}
			}
			fill := float64(c.Length - mins)
			classOf := map[byte]int{}
			for i, k := range classes {
				for j := 0; j < len(k.chars); j++ {
					classOf[k.chars[j]] = i
				}
			}

			var counts [256]int
			pos := make([][4]int, c.Length)
			for range n {
				pw, err := Generate(c)
				if err != nil {
					t.Fatal(err)
				}
				for i, ch := range pw.Bytes() {
					counts[ch]++
					pos[i][classOf[ch]]++
				}
			}

			chi2, df := 0.0, -1
			for ch := 0; ch < 256; ch++ {
				k, ok := classOf[byte(ch)]
				if !ok || classes[k].min == 0 {
					if counts[ch] != 0 {
						t.Errorf("character %q occurred %d times but is not allowed", rune(ch), counts[ch])
					}
					continue
				}
				// Expected count per password: its share of the class minimum plus its share of the fill.
				exp := n * (float64(classes[k].min)/float64(len(classes[k].chars)) + fill/float64(union))
				got := float64(counts[ch])
				if got < 0.9*exp || got > 1.1*exp {
					t.Errorf("character %q occurred %d times, expected about %.0f", rune(ch), counts[ch], exp)
				}
				chi2 += (got - exp) * (got - exp) / exp
				df++
			}
			// Mean about df, standard deviation about sqrt(2 df); 2 df + 50 is far out in the tail.
			if limit := float64(2*df + 50); chi2 > limit {
				t.Errorf("chi-square %.1f over %d degrees of freedom exceeds %.0f", chi2, df, limit)
			}
			t.Logf("chi-square %.1f, %d degrees of freedom", chi2, df)

			for i := range pos {
				for k, cl := range classes {
					if cl.min == 0 {
						continue
					}
					exp := n * (float64(cl.min) + fill*float64(len(cl.chars))/float64(union)) / float64(c.Length)
					if got := float64(pos[i][k]); got < 0.9*exp || got > 1.1*exp {
						t.Errorf("position %d held class %d %d times, expected about %.0f", i, k, pos[i][k], exp)
					}
				}
			}
		})
	}
}

// errReader fails every read.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("entropy unavailable") }

func TestGenerateReaderError(t *testing.T) {
	pw, err := generate(Default(), errReader{})
	if err == nil || !strings.Contains(err.Error(), "entropy unavailable") {
		t.Fatalf("err = %v", err)
	}
	if fault.KindOf(err) != fault.Internal {
		t.Fatalf("kind %v, want Internal", fault.KindOf(err))
	}
	if !pw.IsZero() {
		t.Fatal("a password came back with the error")
	}
	_, err = generate(Default(), io.LimitReader(bytes.NewReader(make([]byte, 1000)), 3))
	if err == nil {
		t.Fatal("a short read was accepted")
	}
}

func TestIntnRejectsBiasedValues(t *testing.T) {
	// For n = 3 the largest accepted value is 2^32 - 2; 0xFFFFFFFF must be rejected.
	buf := make([]byte, 512)
	copy(buf, []byte{0xff, 0xff, 0xff, 0xff, 5, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff})
	s := newSource(bytes.NewReader(buf))
	if v, err := s.intn(3); err != nil || v != 2 {
		t.Fatalf("intn(3) = %d, %v; want 2 (5 mod 3) after rejecting 0xFFFFFFFF", v, err)
	}
	if v, err := s.intn(3); err != nil || v != (1<<32-2)%3 {
		t.Fatalf("intn(3) = %d, %v; want %d", v, err, (1<<32-2)%3)
	}
	// A power of two never rejects.
	s = newSource(bytes.NewReader(bytes.Repeat([]byte{0xff}, 512)))
	if v, err := s.intn(64); err != nil || v != 63 {
		t.Fatalf("intn(64) = %d, %v; want 63", v, err)
	}
}

func TestNoPasswordInOutput(t *testing.T) {
	pw, err := Generate(Default())
	if err != nil {
		t.Fatal(err)
	}
	if out := fmt.Sprintf("%v %s %+v", pw, pw, struct{ P any }{pw}); strings.Contains(out, pw.Reveal()) {
		t.Fatal("the password printed")
	}
}

func FuzzComplexity(f *testing.F) {
	f.Add(20, 1, 1, 1, 1, "")
	f.Add(32, 5, 5, 5, 5, DefaultSpecialChars)
	f.Add(24, 1, 1, 1, 1, "!@#")
	f.Add(8, 2, 2, 2, 2, "!!")
	f.Add(12, 0, 1, 1, 0, "")
	f.Add(7, 1, 1, 1, 1, "")
	f.Add(256, 0, 0, 0, 256, "é")
	f.Add(math.MaxInt, math.MaxInt, math.MinInt, 0, -1, "\xff")
	f.Fuzz(func(t *testing.T, length, caps, lower, digits, special int, chars string) {
		c := Complexity{Length: length, Caps: caps, Lowercase: lower, Digits: digits, Special: special, SpecialChars: chars}
		if err := c.Validate(); err != nil {
			if fe, ok := fault.As(err); !ok || fe.Kind != fault.Invalid || fe.Code != "invalid_complexity" || fe.Message == "" {
				t.Fatalf("Validate error %#v is not an invalid_complexity fault", err)
			}
			if _, gerr := Generate(c); gerr == nil {
				t.Fatal("Generate accepted what Validate refused")
			}
			return
		}
		pw, err := Generate(c)
		if err != nil {
			t.Fatalf("Generate(%+v): %v", c, err)
		}
		if msg := checkPassword(c, pw.Reveal()); msg != "" {
			t.Fatalf("%+v: %s", c, msg)
		}
		back, err := ParseCLI(c.String())
		if err != nil || back != c {
			t.Fatalf("ParseCLI(%q) = %+v, %v; want %+v", c.String(), back, err, c)
		}
	})
}

func FuzzParseCLI(f *testing.F) {
	for _, s := range []string{"32,5,5,5,5", "24,1,1,1,1,!@#", "20,1,1,1,1,,.", " 8 ,0,0,8,0", "x", "", "1,2,3,4,5,6,7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCLI(s)
		if err != nil {
			if fault.KindOf(err) != fault.Invalid {
				t.Fatalf("ParseCLI(%q): %v is not Invalid", s, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseCLI(%q) returned %+v, which Validate refuses: %v", s, c, err)
		}
		back, err := ParseCLI(c.String())
		if err != nil || back != c {
			t.Fatalf("round trip of %+v: %+v, %v", c, back, err)
		}
	})
}

func BenchmarkGenerate(b *testing.B) {
	for _, bc := range []struct {
		name string
		c    Complexity
	}{{"default20", Default()}, {"len64", Complexity{Length: 64, Caps: 4, Lowercase: 4, Digits: 4, Special: 4}}} {
		c := bc.c
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Generate(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
