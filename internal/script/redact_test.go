package script

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/keyturn/keyturn/internal/secret"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	pw := `p@ss"wörd/<x>\1+?`
	html, _ := json.Marshal(pw)
	red := NewRedactor(secret.FromString(pw), secret.FromString("other-Secret"), secret.Secret{})
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct{ in, want string }{
		{"no secret here", "no secret here"},
		{"a " + pw + " b " + pw, "a [REDACTED] b [REDACTED]"},
		{"go:" + string(html), `go:"[REDACTED]"`},
		{`py:"p@ss\"w\u00f6rd/<x>\\1+?"`, `py:"[REDACTED]"`},
		{`slash:"p@ss\"wörd\/<x>\\1+?"`, `slash:"[REDACTED]"`},
		{"b64:" + b64([]byte(pw)) + ".", "b64:[REDACTED]."},
		{"url:" + base64.URLEncoding.EncodeToString([]byte(pw)) + ".", "url:[REDACTED]."},
		{"raw:" + base64.RawStdEncoding.EncodeToString([]byte(pw)) + ".", "raw:[REDACTED]."},
		{"json-b64:" + b64(html) + ".", "json-b64:In[REDACTED]yI=."},
		// Overlapping and adjacent secrets make one replacement.
		{"other-Secret" + pw + "other-Secret", "[REDACTED]"},
	} {
		if got := red.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
	var nilRed *Redactor
	if got := nilRed.Redact("x " + pw); got != "x "+pw {
		t.Errorf("nil Redactor: %q", got)
	}
	// A one-character secret redacts noisily, as documented.
	if got := NewRedactor(secret.FromString("a")).Redact("banana"); got != "b[REDACTED]n[REDACTED]n[REDACTED]" {
		t.Errorf("one character: %q", got)
	}
}

// TestRedactBase64Blobs hides random secrets at random places in random binary blobs, base64
// encodes the blobs in both alphabets, and checks that no character of the secret's base64
// that depends on the secret alone survives.
func TestRedactBase64Blobs(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		s := make([]byte, 3+rng.IntN(30))
		for j := range s {
			s[j] = byte(33 + rng.IntN(94))
		}
		pre := make([]byte, rng.IntN(40))
		post := make([]byte, rng.IntN(40))
		for _, b := range [][]byte{pre, post} {
			for j := range b {
				b[j] = byte(rng.IntN(256))
			}
		}
		red := NewRedactor(secret.New(s))
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding} {
			blob := enc.EncodeToString(append(append(append([]byte(nil), pre...), s...), post...))
			got := red.Redact("<" + blob + ">")
			if !strings.Contains(got, secret.Redacted) {
				t.Fatalf("case %d: nothing redacted in %q", i, blob)
			}
			// The characters fully made of the secret's bits, minus one at each end
			// (which could match by chance with the neighbouring redaction).
			first := (8*len(pre) + 5) / 6
			last := 8 * (len(pre) + len(s)) / 6
			for j := first; j+4 <= last; j++ {
				if strings.Contains(got, blob[j:j+4]) {
					t.Fatalf("case %d: %q of the secret's base64 survives in %q", i, blob[j:j+4], got)
				}
			}
		}
	}
}

// TestConcurrentRuns runs scripts in parallel: each sees its own line and no ETXTBSY.
func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	r := newTestRunner(t, Options{})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			want := fmt.Sprintf("line-%d", i)
			res, err := r.Run(context.Background(), Script{Name: "cat.sh", Content: []byte("#!/bin/sh\ncat\necho \"$HOME\" >&2\n")}, secret.FromString(want), nil)
			if err != nil || res.ReturnCode != 0 || res.Stdout != "[REDACTED]\n" {
				t.Errorf("run %d: %+v %v", i, res, err)
			}
		})
	}
	wg.Wait()
}
