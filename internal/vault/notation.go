package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/keyturn/keyturn/internal/fault"
)

// Notation is a parsed Keeper notation reference:
//
//	keeper://<uid or title>/<field|custom_field>/<type or label>[index][property]
//	keeper://<uid or title>/<title|notes|type>
//
// A backslash escapes '/', '[', ']' and '\' inside the record and field names.
type Notation struct {
	Record   string // uid or title
	Selector string // field, custom_field, title, notes or type
	Name     string // field type or label (field and custom_field only)
	Index    int    // -1 when absent
	All      bool   // "[]": every value
	Property string // "" when absent
}

const notationPrefix = "keeper://"

// ParseNotation parses a Keeper notation reference; the "keeper://" prefix is optional.
func ParseNotation(ref string) (Notation, error) {
	bad := func(format string, args ...any) (Notation, error) {
		return Notation{}, fault.New(fault.Invalid, "bad_notation", "bad reference %q: %s", ref, fmt.Sprintf(format, args...))
	}
	s := ref
	if len(s) >= len(notationPrefix) && strings.EqualFold(s[:len(notationPrefix)], notationPrefix) {
		s = s[len(notationPrefix):]
	} else if i := strings.Index(s, "://"); i >= 0 {
		return bad("the scheme must be keeper://")
	}
	parts, err := splitEscaped(s)
	if err != nil {
		return bad("%v", err)
	}
	if len(parts) == 0 || parts[0].text == "" {
		return bad("no record: expected keeper://<uid or title>/field/<type or label>")
	}
	if len(parts) == 1 || parts[1].text == "" && len(parts) == 2 {
		return bad("no selector after the record: expected field, custom_field, title, notes or type")
	}
	n := Notation{Record: parts[0].text, Selector: parts[1].text, Index: -1}
	switch n.Selector {
	case "title", "notes", "type":
		if len(parts) > 2 {
			return bad("selector %q takes nothing after it", n.Selector)
		}
		return n, nil
	case "field", "custom_field":
	case "file":
		return bad("file attachments are not supported")
	default:
		return bad("unknown selector %q: use field, custom_field, title, notes or type", n.Selector)
	}
	if len(parts) != 3 || parts[2].text == "" && !strings.HasPrefix(parts[2].raw, "[") {
		if len(parts) > 3 {
			return bad("too many path segments (escape a '/' in a name as '\\/')")
		}
		return bad("selector %s needs a field type or label, as in %s/password", n.Selector, n.Selector)
	}
	if err := n.parseParam(parts[2].raw); err != nil {
		return bad("%v", err)
	}
	return n, nil
}

// parseParam reads "name[index][property]" with escapes.
func (n *Notation) parseParam(raw string) error {
	var name strings.Builder
	i := 0
	for ; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) {
			i++
			name.WriteByte(raw[i])
			continue
		}
		if c == '[' {
			break
		}
		if c == ']' {
			return errors.New("']' without '[' (escape it as '\\]')")
		}
		name.WriteByte(c)
	}
	n.Name = name.String()
	if n.Name == "" {
		return errors.New("the field type or label is empty")
	}
	var preds []string
	for i < len(raw) {
		if raw[i] != '[' {
			return fmt.Errorf("unexpected %q after a predicate", raw[i:])
		}
		end := strings.IndexByte(raw[i:], ']')
		if end < 0 {
			return errors.New("'[' without a closing ']'")
		}
		preds = append(preds, raw[i+1:i+end])
		i += end + 1
	}
	switch len(preds) {
	case 0:
		return nil
	case 1, 2:
	default:
		return errors.New("at most two predicates: [index][property]")
	}
	if preds[0] == "" {
		n.All = true
	} else {
		idx, err := strconv.Atoi(preds[0])
		if err != nil || strings.Trim(preds[0], "0123456789") != "" { // digits only: no sign, no "-0"
			if c := preds[0][0]; len(preds) == 1 && c != '-' && c != '+' && (c < '0' || c > '9') {
				return fmt.Errorf("index %q is not a number: a property needs an index first, as in [0][%s] or [][%s]", preds[0], preds[0], preds[0])
			}
			return fmt.Errorf("index %q is not a non-negative number", preds[0])
		}
		n.Index = idx
	}
	if len(preds) == 2 {
		if preds[1] == "" {
			return errors.New("empty property predicate []")
		}
		n.Property = preds[1]
	}
	return nil
}

type segment struct {
	text string // unescaped
	raw  string // as written, escapes kept (the field parameter is parsed further)
}

// splitEscaped splits on '/' not preceded by a backslash.
func splitEscaped(s string) ([]segment, error) {
	var out []segment
	var text strings.Builder
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 == len(s) {
				return nil, errors.New("a trailing backslash escapes nothing")
			}
			i++
			text.WriteByte(s[i])
		case '/':
			out = append(out, segment{text: text.String(), raw: s[start:i]})
			text.Reset()
			start = i + 1
		default:
			text.WriteByte(s[i])
		}
	}
	return append(out, segment{text: text.String(), raw: s[start:]}), nil
}

// Resolve returns the JSON value a notation reference names, and the uid of its record.
func (v *Vault) Resolve(ctx context.Context, scope Scope, ref string) (json.RawMessage, string, error) {
	n, err := ParseNotation(ref)
	if err != nil {
		return nil, "", err
	}
	rec, err := v.findRecord(ctx, scope, n.Record)
	if err != nil {
		return nil, "", err
	}
	val, err := n.Select(rec)
	return val, rec.UID, err
}

// findRecord opens the record a name denotes (see Lookup).
func (v *Vault) findRecord(ctx context.Context, scope Scope, name string) (Record, error) {
	row, err := v.lookup(ctx, scope, name)
	if err != nil {
		return Record{}, err
	}
	rec, _, err := v.openRecord(row)
	return rec, err
}

// Select applies the reference to a record.
func (n Notation) Select(rec Record) (json.RawMessage, error) {
	switch n.Selector {
	case "title":
		return json.Marshal(rec.Title)
	case "notes":
		return json.Marshal(rec.Notes)
	case "type":
		return json.Marshal(rec.Type)
	}
	fields := rec.Fields
	if n.Selector == "custom_field" {
		fields = rec.Custom
	}
	var f *Field
	for i := range fields {
		if fields[i].Type == n.Name || fields[i].Label == n.Name {
			f = &fields[i]
			break
		}
	}
	if f == nil {
		return nil, fault.NotFoundf("record %s has no %s with type or label %q", rec.UID, strings.ReplaceAll(n.Selector, "_", " "), n.Name)
	}
	if n.All {
		vals := make([]json.RawMessage, 0, len(f.Value))
		for i, val := range f.Value {
			if n.Property != "" {
				p, err := property(val, n, i)
				if err != nil {
					return nil, err
				}
				val = p
			}
			vals = append(vals, val)
		}
		return json.Marshal(vals)
	}
	idx := max(n.Index, 0)
	if idx >= len(f.Value) {
		if n.Index < 0 {
			return nil, fault.NotFoundf("field %q of record %s has no value", n.Name, rec.UID)
		}
		return nil, fault.NotFoundf("field %q of record %s has %d value(s): index %d is out of range", n.Name, rec.UID, len(f.Value), idx)
	}
	if n.Property != "" {
		return property(f.Value[idx], n, idx)
	}
	return f.Value[idx], nil
}

func property(val json.RawMessage, n Notation, idx int) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(val, &obj) != nil {
		return nil, fault.NotFoundf("value %d of field %q is not an object, so it has no property %q", idx, n.Name, n.Property)
	}
	p, ok := obj[n.Property]
	if !ok {
		return nil, fault.NotFoundf("value %d of field %q has no property %q", idx, n.Name, n.Property)
	}
	return p, nil
}
