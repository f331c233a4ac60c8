package script

import (
	"sort"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// A view is a text decoded one way (shell quoting, backslash escapes, percent-encoding), with,
// for each of its bytes, the stretch of the text it was decoded from, so that a secret found in
// the view is redacted in the text. Views find the quoted and escaped forms of a secret
// whatever set of characters the quoting program chose to escape (bash's differs between
// versions, Python's from Go's), and words that a shell quoted piece by piece.
type view struct {
	b      []byte
	segs   []seg // in order of v
	parent *view // the view this one decodes further, if any: its text is parent.b
}

// seg says where the view's bytes from v on come from: with literal, b[v+k] is text[src+k];
// otherwise each of them was decoded from text[src:srcEnd].
type seg struct {
	v, src, srcEnd int32
	literal        bool
}

func newView(n int) *view {
	return &view{b: make([]byte, 0, n), segs: make([]seg, 0, 16)}
}

// copyRun appends text[from:to] as it is.
func (v *view) copyRun(t string, from, to int) {
	if from >= to {
		return
	}
	if n := len(v.segs); n > 0 {
		if last := v.segs[n-1]; last.literal && int(last.src)+len(v.b)-int(last.v) == from {
			v.b = append(v.b, t[from:to]...)
			return
		}
	}
	v.segs = append(v.segs, seg{v: int32(len(v.b)), src: int32(from), literal: true})
	v.b = append(v.b, t[from:to]...)
}

// emit appends s, decoded from text[from:to].
func (v *view) emit(s string, from, to int) {
	if s == "" {
		return
	}
	v.segs = append(v.segs, seg{v: int32(len(v.b)), src: int32(from), srcEnd: int32(to)})
	v.b = append(v.b, s...)
}

// emitByte appends c, decoded from text[from:to].
func (v *view) emitByte(c byte, from, to int) {
	v.segs = append(v.segs, seg{v: int32(len(v.b)), src: int32(from), srcEnd: int32(to)})
	v.b = append(v.b, c)
}

// source returns the stretch of text that view byte i was decoded from.
func (v *view) source(i int) (from, to int) {
	k := sort.Search(len(v.segs), func(k int) bool { return int(v.segs[k].v) > i }) - 1
	sg := v.segs[k]
	if sg.literal {
		from, to = int(sg.src)+i-int(sg.v), int(sg.src)+i-int(sg.v)+1
	} else {
		from, to = int(sg.src), int(sg.srcEnd)
	}
	if v.parent != nil {
		from, _ = v.parent.source(from)
		_, to = v.parent.source(to - 1)
	}
	return from, to
}

// views returns the decoded views of t that may hold one of patterns and differ from t:
// each is made only when t has the characters it decodes.
func views(t string, patterns []string) []*view {
	var out []*view
	if strings.IndexByte(t, '\\') >= 0 {
		out = append(out, unescapeView(t))
	}
	if anyContains(patterns, "'") && (strings.Contains(t, `'\''`) || strings.Contains(t, `'"'"'`)) {
		out = append(out, joinView(t))
	}
	if strings.ContainsAny(t, `'"\`) {
		out = append(out, shellView(t))
	}
	// Text quoted twice (bash's set -x of a ${s@Q}, printf %q of a quoted word) still holds
	// quote-backslash-quote-quote after one unquoting: unquote it once more.
	for _, v := range out {
		if inner := string(v.b); strings.Contains(inner, `'\''`) {
			for _, w := range []*view{joinView(inner), shellView(inner)} {
				w.parent = v
				out = append(out, w)
			}
		}
	}
	if strings.IndexByte(t, '%') >= 0 {
		out = append(out, percentView(t, false))
	}
	if anyContains(patterns, " ") && strings.IndexByte(t, '+') >= 0 {
		out = append(out, percentView(t, true))
	}
	return out
}

func anyContains(patterns []string, sub string) bool {
	for _, p := range patterns {
		if strings.Contains(p, sub) {
			return true
		}
	}
	return false
}

// unescapeView decodes every backslash escape of t as C, bash's $'…', printf %q, Go, Python
// and JSON write them: \n and the other letters, \ooo, \xHH, \uXXXX (surrogate pairs joined),
// \UXXXXXXXX, and \ before any other character (a newline too) as that character.
func unescapeView(t string) *view {
	v := newView(len(t))
	for i := 0; i < len(t); {
		j := strings.IndexByte(t[i:], '\\')
		if j < 0 || i+j+1 >= len(t) {
			v.copyRun(t, i, len(t))
			break
		}
		v.copyRun(t, i, i+j)
		i += j
		s, n := unescape(t[i:])
		v.emit(s, i, i+n)
		i += n
	}
	return v
}

// unescape decodes the escape at the start of t (t[0] is a backslash with a character after
// it) and returns it and the number of bytes it takes.
func unescape(t string) (string, int) {
	c := t[1]
	switch c {
	case 'a':
		return "\a", 2
	case 'b':
		return "\b", 2
	case 'e', 'E':
		return "\x1b", 2
	case 'f':
		return "\f", 2
	case 'n':
		return "\n", 2
	case 'r':
		return "\r", 2
	case 't':
		return "\t", 2
	case 'v':
		return "\v", 2
	case 'x':
		if n, k := hexDigits(t[2:], 2); k > 0 {
			return string([]byte{byte(n)}), 2 + k
		}
	case 'u', 'U':
		want := 4
		if c == 'U' {
			want = 8
		}
		n, k := hexDigits(t[2:], want)
		if k != want {
			break
		}
		r := rune(n)
		if utf16.IsSurrogate(r) && len(t) >= 12 && t[6] == '\\' && t[7] == 'u' {
			if low, k := hexDigits(t[8:], 4); k == 4 {
				if pair := utf16.DecodeRune(r, rune(low)); pair != utf8.RuneError {
					return string(pair), 12
				}
			}
		}
		return string(r), 2 + k
	}
	if c >= '0' && c <= '7' {
		n, k := 0, 0
		for k < 3 && 1+k < len(t) && t[1+k] >= '0' && t[1+k] <= '7' {
			n = n*8 + int(t[1+k]-'0')
			k++
		}
		return string([]byte{byte(n)}), 1 + k
	}
	return t[1:2], 2
}

// hexDigits reads up to max hex digits at the start of t.
func hexDigits(t string, max int) (n, k int) {
	for k < max && k < len(t) {
		d := unhex(t[k])
		if d < 0 {
			break
		}
		n = n*16 + d
		k++
	}
	return n, k
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// joinView turns each quote that a shell wrote as quote, backslash, quote, quote (bash) or
// '"'"' (Python's shlex.quote) back into a quote, so that a single-quoted word reads as it is;
// it needs no parsing, so a stray apostrophe elsewhere does not throw it off.
func joinView(t string) *view {
	v := newView(len(t))
	for i := 0; i < len(t); {
		j := strings.IndexByte(t[i:], '\'')
		if j < 0 {
			v.copyRun(t, i, len(t))
			break
		}
		v.copyRun(t, i, i+j)
		i += j
		switch {
		case strings.HasPrefix(t[i:], `'\''`):
			v.emitByte('\'', i, i+4)
			i += 4
		case strings.HasPrefix(t[i:], `'"'"'`):
			v.emitByte('\'', i, i+5)
			i += 5
		default:
			v.copyRun(t, i, i+1)
			i++
		}
	}
	return v
}

// shellView removes shell quoting from t as bash would read it: '…', "…" (where \ escapes
// $ ` " \ and newline), $'…' (C escapes) and \ outside quotes, so that a word quoted piece by
// piece, or split into several words, reads as it is. A newline outside an escape ends any
// quote, so that one stray apostrophe throws off one line at most.
func shellView(t string) *view {
	const (
		outside = iota
		single
		double
		ansi
	)
	// The bytes that end a literal run in each mode.
	stops := [...]string{outside: "'\"$\\\n", single: "'\n", double: "\"\\\n", ansi: "'\\\n"}
	v := newView(len(t))
	mode := outside
	for i := 0; i < len(t); {
		j := strings.IndexAny(t[i:], stops[mode])
		if j < 0 {
			v.copyRun(t, i, len(t))
			break
		}
		v.copyRun(t, i, i+j)
		i += j
		c := t[i]
		if c == '\n' {
			v.copyRun(t, i, i+1)
			mode = outside
			i++
			continue
		}
		switch mode {
		case outside:
			switch {
			case c == '\'':
				mode = single
			case c == '"':
				mode = double
			case c == '$' && i+1 < len(t) && t[i+1] == '\'':
				mode = ansi
				i++
			case c == '\\' && i+1 < len(t):
				if t[i+1] != '\n' {
					v.emitByte(t[i+1], i, i+2)
				}
				i++
			default:
				v.copyRun(t, i, i+1)
			}
			i++
		case single:
			mode = outside // c is the closing quote
			i++
		case double:
			switch {
			case c == '"':
				mode = outside
			case c == '\\' && i+1 < len(t) && strings.IndexByte("$`\"\\\n", t[i+1]) >= 0:
				if t[i+1] != '\n' {
					v.emitByte(t[i+1], i, i+2)
				}
				i++
			default:
				v.copyRun(t, i, i+1)
			}
			i++
		case ansi:
			switch {
			case c == '\'':
				mode = outside
				i++
			case c == '\\' && i+1 < len(t):
				s, n := unescape(t[i:])
				v.emit(s, i, i+n)
				i += n
			default:
				v.copyRun(t, i, i+1)
				i++
			}
		}
	}
	return v
}

// percentView decodes %XX, and with plus also + as a space (form encoding).
func percentView(t string, plus bool) *view {
	stops := "%"
	if plus {
		stops = "%+"
	}
	v := newView(len(t))
	for i := 0; i < len(t); {
		j := strings.IndexAny(t[i:], stops)
		if j < 0 {
			v.copyRun(t, i, len(t))
			break
		}
		v.copyRun(t, i, i+j)
		i += j
		switch {
		case t[i] == '+':
			v.emitByte(' ', i, i+1)
			i++
		case i+2 < len(t) && unhex(t[i+1]) >= 0 && unhex(t[i+2]) >= 0:
			v.emitByte(byte(unhex(t[i+1])<<4|unhex(t[i+2])), i, i+3)
			i += 3
		default:
			v.copyRun(t, i, i+1)
			i++
		}
	}
	return v
}
