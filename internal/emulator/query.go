package emulator

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// The filter and search expressions of GET /api/v1/users (okta.md §1.2): comparisons
// `attr op "value"` joined with and/or and parentheses. filter: status, lastUpdated, id and
// profile.login/email/firstName/lastName, eq only (lastUpdated also gt/ge/lt/le), values
// case-sensitive. search: any profile attribute and the top-level properties, eq/sw/co/pr/
// gt/ge/lt/le (co only on login/email/firstName/lastName), values case-insensitive.

var filterAttrs = map[string]bool{"status": true, "lastUpdated": true, "id": true,
	"profile.login": true, "profile.email": true, "profile.firstName": true, "profile.lastName": true}

var topAttrs = map[string]bool{"status": true, "id": true, "created": true, "activated": true, "statusChanged": true,
	"lastUpdated": true, "passwordChanged": true, "lastLogin": true}

var timeAttrs = map[string]bool{"created": true, "activated": true, "statusChanged": true, "lastUpdated": true,
	"passwordChanged": true, "lastLogin": true}

var containsAttrs = map[string]bool{"profile.login": true, "profile.email": true, "profile.firstName": true, "profile.lastName": true}

func knownAttr(a string) bool {
	return topAttrs[a] || (strings.HasPrefix(a, "profile.") && len(a) > len("profile."))
}

type token struct {
	text   string
	quoted bool
}

func tokenize(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			toks = append(toks, token{text: string(c)})
			i++
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, errors.New("unterminated string")
			}
			toks = append(toks, token{text: b.String(), quoted: true})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n()\"", rune(s[j])) {
				j++
			}
			toks = append(toks, token{text: s[i:j]})
			i = j
		}
	}
	return toks, nil
}

type parser struct {
	toks   []token
	pos    int
	search bool
}

func (p *parser) peek() (token, bool) {
	if p.pos < len(p.toks) {
		return p.toks[p.pos], true
	}
	return token{}, false
}

func (p *parser) next() (token, bool) {
	t, ok := p.peek()
	if ok {
		p.pos++
	}
	return t, ok
}

func (p *parser) keyword(k string) bool {
	t, ok := p.peek()
	if ok && !t.quoted && strings.EqualFold(t.text, k) {
		p.pos++
		return true
	}
	return false
}

// compileExpr compiles a filter (search=false) or search expression into a predicate.
func compileExpr(s string, search bool) (func(*user) bool, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, search: search}
	f, err := p.or()
	if err != nil {
		return nil, err
	}
	if t, ok := p.peek(); ok {
		return nil, fmt.Errorf("unexpected %q", t.text)
	}
	return f, nil
}

func (p *parser) or() (func(*user) bool, error) {
	f, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.keyword("or") {
		g, err := p.and()
		if err != nil {
			return nil, err
		}
		a := f
		f = func(u *user) bool { return a(u) || g(u) }
	}
	return f, nil
}

func (p *parser) and() (func(*user) bool, error) {
	f, err := p.primary()
	if err != nil {
		return nil, err
	}
	for p.keyword("and") {
		g, err := p.primary()
		if err != nil {
			return nil, err
		}
		a := f
		f = func(u *user) bool { return a(u) && g(u) }
	}
	return f, nil
}

func (p *parser) primary() (func(*user) bool, error) {
	t, ok := p.next()
	if !ok {
		return nil, errors.New("unexpected end of expression")
	}
	if t.text == "(" && !t.quoted {
		f, err := p.or()
		if err != nil {
			return nil, err
		}
		if c, ok := p.next(); !ok || c.text != ")" || c.quoted {
			return nil, errors.New("missing )")
		}
		return f, nil
	}
	attr := t.text
	if t.quoted || attr == ")" {
		return nil, fmt.Errorf("unexpected %q", t.text)
	}
	if p.search && !knownAttr(attr) || !p.search && !filterAttrs[attr] {
		return nil, fmt.Errorf("unsupported attribute %s", attr)
	}
	opTok, ok := p.next()
	if !ok || opTok.quoted {
		return nil, fmt.Errorf("missing operator after %s", attr)
	}
	op := strings.ToLower(opTok.text)
	switch {
	case op == "eq":
	case op == "gt" || op == "ge" || op == "lt" || op == "le":
		if !p.search && attr != "lastUpdated" {
			return nil, fmt.Errorf("operator %s is not supported on %s", op, attr)
		}
	case p.search && op == "sw":
	case p.search && op == "co":
		if !containsAttrs[attr] {
			return nil, fmt.Errorf("operator co is not supported on %s", attr)
		}
	case p.search && op == "pr":
		return func(u *user) bool { v, ok := attrValue(u, attr); return ok && v != "" }, nil
	default:
		return nil, fmt.Errorf("unsupported operator %s", opTok.text)
	}
	vt, ok := p.next()
	if !ok || (!vt.quoted && (vt.text == "(" || vt.text == ")")) {
		return nil, fmt.Errorf("missing value after %s %s", attr, op)
	}
	val := vt.text
	if timeAttrs[attr] {
		want, err := parseTime(val)
		if err != nil {
			return nil, fmt.Errorf("invalid date %q", val)
		}
		return func(u *user) bool {
			got := timeValue(u, attr)
			if got.IsZero() {
				return false
			}
			switch op {
			case "eq":
				return got.Equal(want)
			case "gt":
				return got.After(want)
			case "ge":
				return !got.Before(want)
			case "lt":
				return got.Before(want)
			case "le":
				return !got.After(want)
			}
			return strings.HasPrefix(formatOktaTime(got), val)
		}, nil
	}
	fold := p.search
	if fold {
		val = strings.ToLower(val)
	}
	return func(u *user) bool {
		got, ok := attrValue(u, attr)
		if !ok {
			return false
		}
		if fold {
			got = strings.ToLower(got)
		}
		switch op {
		case "eq":
			return got == val
		case "sw":
			return strings.HasPrefix(got, val)
		case "co":
			return strings.Contains(got, val)
		case "gt":
			return got > val
		case "ge":
			return got >= val
		case "lt":
			return got < val
		case "le":
			return got <= val
		}
		return false
	}, nil
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, oktaTimeLayout, "2006-01-02T15:04:05.000Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("bad time")
}

func timeValue(u *user, attr string) time.Time {
	switch attr {
	case "created":
		return u.created
	case "activated":
		return u.activated
	case "statusChanged":
		return u.statusChanged
	case "lastUpdated":
		return u.lastUpdated
	case "passwordChanged":
		return u.passwordChanged
	case "lastLogin":
		return u.lastLogin
	}
	return time.Time{}
}

// attrValue is the string value of attr on u; false when absent or null.
func attrValue(u *user, attr string) (string, bool) {
	switch attr {
	case "status":
		return u.status, true
	case "id":
		return u.id, true
	}
	if timeAttrs[attr] {
		t := timeValue(u, attr)
		return formatOktaTime(t), !t.IsZero()
	}
	v, ok := u.profile[strings.TrimPrefix(attr, "profile.")]
	if !ok || v == nil {
		return "", false
	}
	if s, ok := v.(string); ok {
		return s, true
	}
	return fmt.Sprint(v), true
}

// sortKey is the value search results are sorted by (sortBy), case-insensitive.
func sortKey(u *user, attr string) string {
	v, _ := attrValue(u, attr)
	return strings.ToLower(v)
}
