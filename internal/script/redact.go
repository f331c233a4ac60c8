package script

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/keyturn/keyturn/internal/secret"
)

// Redactor replaces every occurrence of a set of secrets in a script's output by
// secret.Redacted. Each secret is looked for raw, in every form of Encodings (shell-quoted,
// JSON-escaped, percent-encoded), and base64-encoded (std and URL alphabets, padded or not, and
// at all three byte alignments, so that a secret inside a longer base64 blob is caught too),
// and so is the base64 of its JSON-escaped forms. It is also looked for in views of the output
// that undo backslash escapes (C, $'…', printf %q, JSON, Go, Python), shell quoting ('…', "…",
// a quote closed, escaped and reopened, a word quoted piece by piece or split into words) and
// percent-encoding, whatever set of characters the encoder chose to escape; what decodes to a
// secret is replaced. Every byte covered by an occurrence is replaced, overlapping occurrences
// included; a run of replaced bytes becomes one secret.Redacted. A secret of one or two
// characters redacts noisily: its base64 fragments are one to three characters long. Base64
// that a script wraps over several lines is not recognised. A nil *Redactor redacts nothing. A
// Redactor is safe for concurrent use.
type Redactor struct {
	patterns []string // looked for in the text as it is
	decoded  []string // looked for in the text's decoded views (see views)
	maxLen   int      // the longest stretch of text an occurrence may take
}

// NewRedactor returns a Redactor of the given secrets; empty secrets are ignored.
func NewRedactor(secrets ...secret.Secret) *Redactor {
	return (*Redactor)(nil).with(secrets)
}

// with returns a new Redactor of r's secrets, more secrets, and extra patterns (looked for
// as they are).
func (r *Redactor) with(secrets []secret.Secret, extra ...string) *Redactor {
	n := &Redactor{}
	seen := map[string]bool{}
	add := func(p string) {
		if p == "" || seen[p] {
			return
		}
		seen[p] = true
		n.patterns = append(n.patterns, p)
		n.maxLen = max(n.maxLen, len(p))
	}
	seenDecoded := map[string]bool{}
	addDecoded := func(p string) {
		if p == "" || seenDecoded[p] {
			return
		}
		seenDecoded[p] = true
		n.decoded = append(n.decoded, p)
		// The longest encoding a view decodes: '"'"' for ', or \ooo for each byte.
		n.maxLen = max(n.maxLen, 5*len(p)+2)
	}
	if r != nil {
		for _, p := range r.patterns {
			add(p)
		}
		for _, p := range r.decoded {
			addDecoded(p)
		}
	}
	for _, s := range secrets {
		if s.IsZero() {
			continue
		}
		v := s.Reveal()
		for _, p := range patternsOf(v) {
			add(p)
		}
		addDecoded(v)
		for _, f := range jsonForms(v) {
			addDecoded(f)
		}
	}
	for _, p := range extra {
		add(p)
	}
	return n
}

// Redact returns s with every occurrence of the secrets replaced.
func (r *Redactor) Redact(s string) string {
	return r.redactPrefix(s, len(s))
}

// redactPrefix redacts t (all of it is searched) and returns the redacted text of t[:end]; an
// occurrence that starts before end is replaced whole.
func (r *Redactor) redactPrefix(t string, end int) string {
	var mask []bool
	if r != nil {
		for _, p := range r.patterns {
			mask = markAll(mask, t, p, nil)
		}
		if len(r.decoded) > 0 {
			for _, v := range views(t, r.decoded) {
				for _, p := range r.decoded {
					mask = markAll(mask, t, p, v)
				}
			}
		}
	}
	if mask == nil {
		return t[:end]
	}
	var b strings.Builder
	for i := 0; i < end; {
		if !mask[i] {
			j := i
			for j < end && !mask[j] {
				j++
			}
			b.WriteString(t[i:j])
			i = j
			continue
		}
		b.WriteString(secret.Redacted)
		for i < len(t) && mask[i] {
			i++
		}
	}
	return b.String()
}

// markAll marks in mask (made when first needed, len(t)) every byte of t that an
// occurrence of p covers. With a view, p is looked for in the view's bytes, and an
// occurrence covers the text that those bytes were decoded from.
func markAll(mask []bool, t, p string, v *view) []bool {
	n := len(t)
	if v != nil {
		n = len(v.b)
	}
	done := 0 // mask[:done] is already marked for this pattern
	for i := 0; i <= n-len(p); {
		var j int
		if v != nil {
			j = bytes.Index(v.b[i:], []byte(p))
		} else {
			j = strings.Index(t[i:], p)
		}
		if j < 0 {
			break
		}
		if mask == nil {
			mask = make([]bool, len(t))
		}
		from, to := i+j, i+j+len(p)
		if v != nil {
			from, _ = v.source(from)
			_, to = v.source(to - 1)
		}
		for k := max(from, done); k < to; k++ {
			mask[k] = true
		}
		done = max(done, to)
		i += j + 1
	}
	return mask
}

// patternsOf returns the forms of s to look for in the text as it is: every form of
// Encodings, and the base64 of s and of its JSON forms at every alignment. (The views find
// the shell-quoted and percent-encoded forms too, whatever characters their encoder
// escaped; these find them where a neighbouring character changes how a view decodes.)
func patternsOf(s string) []string {
	forms := []string{s}
	for _, f := range jsonForms(s) {
		if f != s {
			forms = append(forms, f)
		}
	}
	out := append([]string(nil), forms...)
	for _, f := range forms {
		out = append(out, base64Forms(f)...)
	}
	out = append(out, shellForms(s)...)
	return append(out, urlForms(s)...)
}

// jsonForms returns s JSON-escaped, without the quotes, as common encoders write it: Go (with
// and without HTML escaping), Python's json.dumps (ASCII-only by default, or not), jq (DEL
// escaped; -a for ASCII-only), and with "/" escaped as some encoders do.
func jsonForms(s string) []string {
	html, _ := json.Marshal(s)
	goPlain := string(jsonString(s))
	return []string{
		string(html[1 : len(html)-1]),
		goPlain[1 : len(goPlain)-1],
		strings.ReplaceAll(goPlain[1:len(goPlain)-1], "/", `\/`),
		escape(s, false, false),
		escape(s, true, false),
		escape(s, false, true),
		escape(s, true, true),
	}
}

// escape JSON-escapes s the way Python and jq do: short forms for the usual control
// characters, \u00XX for the others, and with ascii every non-ASCII character as \uXXXX
// (surrogate pairs beyond the BMP), with del DEL as \u007f.
func escape(s string, ascii, del bool) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c < 0x20 || (c == 0x7f && del) || (ascii && c >= 0x7f && c < 0x10000):
			fmt.Fprintf(&b, `\u%04x`, c)
		case ascii && c >= 0x10000:
			c -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(c>>10), 0xdc00+(c&0x3ff))
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// base64Forms returns the base64 forms of s: whole (padded and not) in both alphabets, and for
// each alignment (0, 1 or 2 bytes before s in a longer blob) the characters that depend on the
// bytes of s alone.
func base64Forms(s string) []string {
	var out []string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		out = append(out, enc.EncodeToString([]byte(s)))
		raw := enc.WithPadding(base64.NoPadding)
		for k := range 3 {
			buf := make([]byte, k+len(s))
			copy(buf[k:], s)
			e := raw.EncodeToString(buf)
			start := (8*k + 5) / 6      // the first character with no bit of the filler
			end := 8 * (k + len(s)) / 6 // the characters made only of the bytes before the end
			if end > start {
				out = append(out, e[start:end])
			}
			if k == 0 {
				out = append(out, e)
			}
		}
	}
	return out
}

// capture keeps the first limit bytes written to it and counts the rest.
type capture struct {
	buf   []byte
	limit int
	total int64
}

// Write implements io.Writer; it never fails, so the child never blocks on a full pipe.
func (c *capture) Write(p []byte) (int, error) {
	if room := c.limit - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	c.total += int64(len(p))
	return len(p), nil
}

// truncated is appended to an output cut at the cap.
const truncated = "…[truncated]"

// output returns what was captured, redacted, then cut at outCap bytes (at a character
// boundary) followed by truncated. The capture must hold outCap + r.maxLen bytes when it is
// full, so that an occurrence starting before outCap is seen whole.
func (c *capture) output(r *Redactor, outCap int) string {
	complete := c.total == int64(len(c.buf))
	end := len(c.buf)
	if !complete {
		end = min(end, outCap)
	}
	s := r.redactPrefix(string(c.buf), end)
	if complete && len(s) <= outCap {
		return s
	}
	cut := min(outCap, len(s))
	for cut > 0 && cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncated
}
