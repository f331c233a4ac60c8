package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"

	"github.com/keyturn/keyturn/internal/vault"
)

// stdinValue is the field value that means "read the value from standard input".
const stdinValue = "-"

// maxStdinValue bounds a value read from standard input.
const maxStdinValue = 1 << 20

// fieldSpec is one --field type[.label]=value or --custom label=value.
type fieldSpec struct {
	flag  string // "field" or "custom", for messages
	Type  string
	Label string
	Value string
	stdin bool // the value is to be read from standard input
}

// parseFieldSpecs parses --field and --custom values. Error messages quote at most the part
// before '=', never a value.
func parseFieldSpecs(fields, custom []string) (std, cus []fieldSpec, err error) {
	for _, s := range fields {
		spec, err := parseFieldSpec("field", s)
		if err != nil {
			return nil, nil, err
		}
		std = append(std, spec)
	}
	for _, s := range custom {
		spec, err := parseFieldSpec("custom", s)
		if err != nil {
			return nil, nil, err
		}
		cus = append(cus, spec)
	}
	n := 0
	for _, sp := range append(append([]fieldSpec{}, std...), cus...) {
		if sp.stdin {
			n++
		}
	}
	if n > 1 {
		return nil, nil, Usagef("only one --field or --custom value can be read from stdin (%s)", stdinValue)
	}
	return std, cus, nil
}

func parseFieldSpec(flag, s string) (fieldSpec, error) {
	form := "type[.label]=value"
	if flag == "custom" {
		form = "label=value"
	}
	key, value, ok := strings.Cut(s, "=")
	if !ok {
		// No '=': the whole argument may be a mistyped secret, so it is not repeated.
		return fieldSpec{}, Usagef("--%s needs the form %s (the value is missing its '=')", flag, form)
	}
	spec := fieldSpec{flag: flag, Value: value, stdin: value == stdinValue}
	if flag == "custom" {
		if strings.TrimSpace(key) == "" {
			return fieldSpec{}, Usagef("--custom needs the form %s: the label is empty", form)
		}
		spec.Type, spec.Label = "text", key
	} else {
		typ, label, hasLabel := strings.Cut(key, ".")
		if !slices.Contains(vault.FieldTypes, typ) {
			if typ == "" {
				return fieldSpec{}, Usagef("--field needs the form %s: the type is empty", form)
			}
			return fieldSpec{}, Usagef("--field %q: %q is not a field type: use one of %s (the label after '.' is free text)",
				key, typ, strings.Join(vault.FieldTypes, ", "))
		}
		if hasLabel && strings.TrimSpace(label) == "" {
			return fieldSpec{}, Usagef("--field %q: the label after '.' is empty", key)
		}
		spec.Type, spec.Label = typ, label
	}
	if strings.IndexFunc(spec.Label, unicode.IsControl) >= 0 {
		return fieldSpec{}, Usagef("--%s: the label %q contains a control character", flag, spec.Label)
	}
	return spec, nil
}

// name is how messages and tables name the field: type, type.label, or a custom field's label.
func (s fieldSpec) name() string {
	if s.flag == "custom" {
		return s.Label
	}
	if s.Label != "" {
		return s.Type + "." + s.Label
	}
	return s.Type
}

// readStdinValues replaces the value of the spec marked "-" with standard input, less one
// trailing newline.
func readStdinValues(in io.Reader, specs ...[]fieldSpec) error {
	for _, group := range specs {
		for i := range group {
			sp := &group[i]
			if !sp.stdin {
				continue
			}
			if in == nil {
				return Usagef("--%s %s=-: there is no standard input to read", sp.flag, sp.name())
			}
			b, err := io.ReadAll(io.LimitReader(in, maxStdinValue+1))
			if err != nil {
				return fmt.Errorf("--%s %s=-: read standard input: %w", sp.flag, sp.name(), err)
			}
			if len(b) > maxStdinValue {
				return Usagef("--%s %s=-: standard input holds more than %d bytes", sp.flag, sp.name(), maxStdinValue)
			}
			b = bytes.TrimSuffix(b, []byte("\n"))
			b = bytes.TrimSuffix(b, []byte("\r"))
			if len(b) == 0 {
				return Usagef("--%s %s=-: standard input is empty", sp.flag, sp.name())
			}
			sp.Value = string(b)
			sp.stdin = false
		}
	}
	return nil
}

// stringValue is a field value list holding one JSON string.
func stringValue(s string) []json.RawMessage {
	b, _ := json.Marshal(s) // a string always marshals
	return []json.RawMessage{b}
}

// newFields turns specs into fields, in order.
func newFields(specs []fieldSpec) []Field {
	out := make([]Field, 0, len(specs))
	for _, sp := range specs {
		out = append(out, Field{Type: sp.Type, Label: sp.Label, Value: stringValue(sp.Value)})
	}
	return out
}

// applyFields sets each spec's value on the first field it matches that no earlier spec has
// set, or else appends a new field. A standard field matches on type, and on label when the
// spec has one; a custom field matches on label.
func applyFields(fields []Field, specs []fieldSpec) []Field {
	used := make(map[int]bool)
	for _, sp := range specs {
		at := -1
		for i, f := range fields {
			if used[i] {
				continue
			}
			var match bool
			if sp.flag == "custom" {
				match = f.Label == sp.Label
			} else {
				match = f.Type == sp.Type && (sp.Label == "" || f.Label == sp.Label)
			}
			if match {
				at = i
				break
			}
		}
		if at < 0 {
			fields = append(fields, Field{Type: sp.Type, Label: sp.Label})
			at = len(fields) - 1
		}
		fields[at].Value = stringValue(sp.Value)
		used[at] = true
	}
	return fields
}
