package script

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Encodings returns the forms in which a script may print s, each without its surrounding
// quotes so that it is found inside a longer word too: s itself; shell-quoted as bash's
// `set -x` and `printf %q` write it ('…', a quote in it closed, escaped and reopened, \-escapes, and
// ANSI-C $'…' with non-ASCII bytes raw or in octal), as Python's shlex.quote writes it ('"'"'),
// and inside double quotes; JSON-escaped as Go, Python and jq write it; percent-encoded (query
// and path escaping, and every reserved byte in upper- and lower-case hex); and base64 (both
// alphabets). The Redactor looks for all of them, and for more: see Redactor.
func Encodings(s string) []string {
	forms := []string{s}
	forms = append(forms, shellForms(s)...)
	forms = append(forms, jsonForms(s)...)
	forms = append(forms, urlForms(s)...)
	forms = append(forms, base64.StdEncoding.EncodeToString([]byte(s)), base64.URLEncoding.EncodeToString([]byte(s)))
	return dedupe(forms)
}

// shellForms returns s quoted as shells and shell-quoting libraries write it, without the
// outer quotes.
func shellForms(s string) []string {
	single := strings.ReplaceAll(s, `'`, `'\''`)
	return []string{
		single,                                  // bash xtrace, sh_single_quote, ${s@Q}, many scripts
		strings.ReplaceAll(single, `'`, `'\''`), // quoted twice: xtrace of ${s@Q}
		strings.ReplaceAll(s, `'`, `'"'"'`),     // Python's shlex.quote
		backslashQuote(s),                       // printf %q, ${s@Q} without control characters
		doubleQuote(s),                          // "…"
		ansiCQuote(s, false),                    // $'…' in a UTF-8 locale
		ansiCQuote(s, true),                     // $'…' in the C locale: non-ASCII bytes in octal
	}
}

// bashSpecial holds the bytes that bash's printf %q escapes with a backslash anywhere in a
// word (lib/sh/shquote.c, bstab). It also escapes ~ and # at the start of a word; a pattern
// that leaves them alone still matches there, inside "\~…", and in the middle of a word.
const bashSpecial = " \t\n!\"$&'()*,;<>?[\\]^`{|}"

// backslashQuote escapes with a backslash every byte of s in bashSpecial.
func backslashQuote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(bashSpecial, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// doubleQuote escapes s for the inside of a double-quoted shell word.
func doubleQuote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c == '$' || c == '`' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ansiCQuote escapes s as bash's ansic_quote does for $'…': the usual C escapes, \E for ESC,
// other control bytes in three-digit octal, and, with octalHigh, every non-ASCII byte in
// octal too (as in the C locale; in a UTF-8 locale printable characters stay as they are).
func ansiCQuote(s string, octalHigh bool) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '\'', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\a':
			b.WriteString(`\a`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\v':
			b.WriteString(`\v`)
		case 0x1b:
			b.WriteString(`\E`)
		default:
			if c < 0x20 || c == 0x7f || (c >= 0x80 && octalHigh) {
				fmt.Fprintf(&b, `\%03o`, c)
			} else if c >= 0x80 {
				_, n := utf8.DecodeRuneInString(s[i:])
				b.WriteString(s[i : i+n])
				i += n
				continue
			} else {
				b.WriteByte(c)
			}
		}
		i++
	}
	return b.String()
}

// urlForms returns s percent-encoded: as a query value (space as +), as a path segment, and
// with every byte but the unreserved ones encoded, in upper- and lower-case hex.
func urlForms(s string) []string {
	var upper, lower strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			upper.WriteByte(c)
			lower.WriteByte(c)
			continue
		}
		fmt.Fprintf(&upper, "%%%02X", c)
		fmt.Fprintf(&lower, "%%%02x", c)
	}
	return []string{url.QueryEscape(s), url.PathEscape(s), upper.String(), lower.String()}
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := in[:0]
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
