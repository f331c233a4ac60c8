// Package vault holds keyturn's records: Keeper-style typed fields, sealed at rest under a
// per-record data key, password versions, and Keeper notation.
package vault

import (
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keyturn/keyturn/internal/fault"
)

// Types are the record types keyturn accepts.
var Types = []string{"login", "pamUser", "pamConfiguration", "pamMachine", "pamDatabase", "pamDirectory", "general"}

// FieldTypes are the field types a record's fields and custom fields may have: Keeper's
// standard field types, as Keeper Commander and the Secrets Manager SDKs know them. A field's
// label is free text; its type must be one of these.
var FieldTypes = []string{
	"login", "password", "url", "email", "text", "multiline", "secret", "note", "pinCode",
	"oneTimeCode", "otp", "keyPair", "privateKey", "passkey", "securityQuestion",
	"name", "phone", "address", "birthDate", "date", "expirationDate", "company",
	"accountNumber", "licenseNumber", "paymentCard", "bankAccount",
	"host", "pamHostname", "pamResources", "pamSettings", "trafficEncryptionSeed",
	"databaseType", "directoryType", "schedule", "script",
	"checkbox", "dropdown", "isSSIDHidden", "wifiEncryption",
	"fileRef", "addressRef", "cardRef", "recordRef",
}

// requiredFields lists, per record type, the field types a record must carry with a value.
var requiredFields = map[string][]string{
	"pamUser": {"login"},
}

// Limits on record contents.
const (
	MaxTitle  = 256
	MaxFolder = 512
	MaxLabel  = 128
	MaxFields = 256
	MaxNotes  = 64 << 10
)

// Field is one typed field: a type such as login or password, an optional label, and a list of
// JSON values (usually one string; objects for types such as host).
type Field struct {
	Type  string            `json:"type"`
	Label string            `json:"label,omitempty"`
	Value []json.RawMessage `json:"value"`
}

// Record is a vault record with its values in clear.
type Record struct {
	UID       string    `json:"uid"`
	Type      string    `json:"type"`
	Title     string    `json:"title"`
	Folder    string    `json:"folder"`
	Fields    []Field   `json:"fields"`
	Custom    []Field   `json:"custom"`
	Notes     string    `json:"notes"`
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// LogValue implements slog.LogValuer: a record in a log line shows no value.
func (r Record) LogValue() slog.Value {
	return slog.GroupValue(slog.String("uid", r.UID), slog.String("type", r.Type), slog.Int64("revision", r.Revision))
}

// Summary is a record's metadata, as listed: no field values.
type Summary struct {
	UID       string    `json:"uid"`
	Type      string    `json:"type"`
	Title     string    `json:"title"`
	Folder    string    `json:"folder"`
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// content is the part of a record that is sealed.
type content struct {
	Fields []Field `json:"fields"`
	Custom []Field `json:"custom"`
	Notes  string  `json:"notes"`
}

// Validate checks a record's type, title, folder and fields, and normalises empty lists.
func (r *Record) Validate() error {
	if !slices.Contains(Types, r.Type) {
		if r.Type == "" {
			return fault.Invalidf("type is required (one of %s)", strings.Join(Types, ", "))
		}
		return fault.New(fault.Invalid, "unknown_record_type", "unknown record type %q: use one of %s", r.Type, strings.Join(Types, ", "))
	}
	if strings.TrimSpace(r.Title) == "" {
		return fault.Invalidf("title is required")
	}
	if err := checkText("title", r.Title, MaxTitle); err != nil {
		return err
	}
	if err := ValidateFolder(r.Folder); err != nil {
		return err
	}
	if len(r.Fields)+len(r.Custom) > MaxFields {
		return fault.Invalidf("a record holds at most %d fields", MaxFields)
	}
	if len(r.Notes) > MaxNotes {
		return fault.Invalidf("notes are longer than %d bytes", MaxNotes)
	}
	for _, group := range []struct {
		name   string
		fields []Field
	}{{"fields", r.Fields}, {"custom", r.Custom}} {
		for i := range group.fields {
			if err := checkField(group.name, i, &group.fields[i]); err != nil {
				return err
			}
		}
	}
	for _, typ := range requiredFields[r.Type] {
		f := r.field(typ)
		if f == nil || len(f.Value) == 0 || string(f.Value[0]) == `""` {
			return fault.New(fault.Invalid, "missing_required_field", "a %s record needs a %q field with a value", r.Type, typ)
		}
	}
	if r.Fields == nil {
		r.Fields = []Field{}
	}
	if r.Custom == nil {
		r.Custom = []Field{}
	}
	return nil
}

func checkField(group string, i int, f *Field) error {
	if !slices.Contains(FieldTypes, f.Type) {
		if f.Type == "" {
			return fault.Invalidf("%s[%d]: type is required (one of %s)", group, i, strings.Join(FieldTypes, ", "))
		}
		return fault.Invalidf("%s[%d]: unknown field type %q: use one of %s (the label is free text)", group, i, f.Type, strings.Join(FieldTypes, ", "))
	}
	if err := checkText(group+"["+strconv.Itoa(i)+"].label", f.Label, MaxLabel); err != nil {
		return err
	}
	if f.Value == nil {
		f.Value = []json.RawMessage{}
	}
	for j, v := range f.Value {
		if !json.Valid(v) {
			return fault.Invalidf("%s[%d].value[%d] is not valid JSON", group, i, j)
		}
		if f.Type == "password" && (len(v) == 0 || v[0] != '"') {
			return fault.Invalidf("%s[%d]: a password value must be a string", group, i)
		}
	}
	return nil
}

func checkText(name, s string, limit int) error {
	if len(s) > limit {
		return fault.Invalidf("%s is longer than %d bytes", name, limit)
	}
	if i := strings.IndexFunc(s, invisible); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fault.Invalidf("%s contains the invisible character U+%04X (a control, format or bidirectional override character): remove it", name, r)
	}
	return nil
}

// invisible reports whether r is a character refused in titles, folders and labels because it
// is invisible or changes how the text around it is shown: control characters, line and
// paragraph separators, and format characters such as the bidirectional overrides (U+202A..E,
// U+2066..9), zero-width spaces and the byte order mark. The zero-width joiner and non-joiner
// (U+200D, U+200C) are allowed: emoji sequences and several scripts need them.
func invisible(r rune) bool {
	switch {
	case r == '\u200c' || r == '\u200d':
		return false
	case unicode.IsControl(r), unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp):
		return true
	}
	return false
}

// ValidateFolder checks a folder path such as "Shared/Okta": segments separated by single
// slashes, none empty, "." or "..". The empty folder is the root.
func ValidateFolder(folder string) error {
	if folder == "" {
		return nil
	}
	if err := checkText("folder", folder, MaxFolder); err != nil {
		return err
	}
	for _, seg := range strings.Split(folder, "/") {
		if strings.TrimSpace(seg) == "" || seg == "." || seg == ".." {
			return fault.Invalidf("folder %q is not a path like Shared/Okta (empty, \".\" or \"..\" segment, or a leading or trailing slash)", folder)
		}
	}
	return nil
}

// InFolders reports whether folder is one of the grants or below one; no grants means all.
func InFolders(folder string, grants []string) bool {
	if len(grants) == 0 {
		return true
	}
	for _, g := range grants {
		if folder == g || strings.HasPrefix(folder, g+"/") {
			return true
		}
	}
	return false
}

// field returns the first standard field of a type.
func (r *Record) field(typ string) *Field {
	for i := range r.Fields {
		if r.Fields[i].Type == typ {
			return &r.Fields[i]
		}
	}
	return nil
}

// Password returns the record's password (the first value of its first password field) and
// whether it has one.
func (r *Record) Password() (string, bool) {
	f := r.field("password")
	if f == nil || len(f.Value) == 0 {
		return "", false
	}
	var s string
	if json.Unmarshal(f.Value[0], &s) != nil || s == "" {
		return "", false
	}
	return s, true
}
