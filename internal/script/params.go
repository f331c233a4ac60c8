// Package script runs KeeperPAM post-rotation scripts unchanged: it builds the stdin line of
// Keeper's protocol (base64 of a JSON object whose records key is base64 of a JSON array), runs
// a script in a private directory with a minimal environment, a timeout that kills its whole
// process group and capped output, and redacts every secret from what the script printed.
package script

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"

	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/vault"
)

// Masked is what Decoded shows instead of a secret value when it is not asked to reveal.
const Masked = "********"

// secretTypes are the field types whose values are secrets.
var secretTypes = []string{"password", "secret", "pinCode", "oneTimeCode", "keyPair"}

// skippedTypes are the field types left out of a record's dictionary.
var skippedTypes = []string{"script", "fileRef"}

// Params are the inputs of one script run: the records it sees and the passwords.
//
// The records array holds the configuration, the resource, the credentials in order, then the
// pamUser; a record (by UID) that would appear twice appears once, at its first place. Each
// record is a JSON object: uid, title, then one key per field and custom field, in order, named
// by its label, or its type when it has none; a name already taken (uid and title included)
// gets a number: password, password2, password3. The value is the field's value when it has
// one, an array when it has several, "" when it has none. Fields of types script and fileRef
// are left out. In the pamUser's object the first standard password field holds the old
// password (the new one is only in newPassword); a pamUser without one gets a password key.
type Params struct {
	Configuration *vault.Record  // the pamConfiguration record; may be nil
	Resource      *vault.Record  // the resource (pamMachine, pamDatabase, pamDirectory, login); may be nil
	Credentials   []vault.Record // the script's credential records ("Additional Credentials"), in order
	User          vault.Record   // the pamUser record being rotated
	NewPassword   secret.Secret  // the new password
	OldPassword   secret.Secret  // the password before the rotation
}

// entry is one key of a record's dictionary.
type entry struct {
	key    string
	value  []byte // compact JSON
	secret bool   // the field's type is secret-like (or it holds the old password)
	empty  bool   // the field has no value
	texts  []string
}

// dict is one record's dictionary, in the order the script sees its keys.
type dict []entry

// Line returns the stdin line of Keeper's protocol, without its newline: base64 (std) of the
// JSON object {providerRecordUid, resourceRecordUid, userRecordUid, newPassword, oldPassword,
// user, records}, where records is base64 (std) of the JSON array of record dictionaries.
func (p Params) Line() (secret.Secret, error) {
	dicts, err := p.dicts()
	if err != nil {
		return secret.Secret{}, err
	}
	arr := encodeDicts(dicts, false, nil)
	obj := p.object(jsonString(base64.StdEncoding.EncodeToString(arr)), false)
	clear(arr)
	line := make([]byte, base64.StdEncoding.EncodedLen(len(obj)))
	base64.StdEncoding.Encode(line, obj)
	clear(obj)
	s := secret.New(line)
	clear(line)
	return s, nil
}

// Decoded returns what a script reads on stdin, layer by layer (for `keyturn script params
// UID`), as compact JSON {"stdin", "params", "records"}:
//   - stdin is the line itself: base64 of params (Line);
//   - params is that line decoded, the object the script gets, keys in the order it receives
//     them; its records is a string, base64 of the records array, as the script receives it;
//   - records is params.records decoded: the array of record dictionaries.
//
// Unless reveal is set, newPassword, oldPassword and the non-empty values of secret-like fields
// are shown as Masked in all three: fields of types password, secret, pinCode, oneTimeCode and
// keyPair, and any field whose value equals one of those secrets or a password. With reveal,
// stdin is exactly Line().
func (p Params) Decoded(reveal bool) (json.RawMessage, error) {
	dicts, err := p.dicts()
	if err != nil {
		return nil, err
	}
	var known map[string]bool
	if !reveal {
		known = map[string]bool{}
		for _, s := range SecretsOf(p) {
			known[s.Reveal()] = true
		}
	}
	records := encodeDicts(dicts, !reveal, known)
	obj := p.object(jsonString(base64.StdEncoding.EncodeToString(records)), !reveal)
	var b bytes.Buffer
	b.WriteString(`{"stdin":`)
	b.Write(jsonString(base64.StdEncoding.EncodeToString(obj)))
	b.WriteString(`,"params":`)
	b.Write(obj)
	b.WriteString(`,"records":`)
	b.Write(records)
	b.WriteString(`}`)
	return b.Bytes(), nil
}

// object encodes the params object with records (already JSON) as the value of records.
func (p Params) object(records []byte, mask bool) []byte {
	var b bytes.Buffer
	uid := func(r *vault.Record) string {
		if r == nil {
			return ""
		}
		return r.UID
	}
	pw := func(s secret.Secret) []byte {
		if mask && !s.IsZero() {
			return jsonString(Masked)
		}
		return jsonString(s.Reveal())
	}
	b.WriteString(`{"providerRecordUid":`)
	b.Write(jsonString(uid(p.Configuration)))
	b.WriteString(`,"resourceRecordUid":`)
	b.Write(jsonString(uid(p.Resource)))
	b.WriteString(`,"userRecordUid":`)
	b.Write(jsonString(p.User.UID))
	b.WriteString(`,"newPassword":`)
	b.Write(pw(p.NewPassword))
	b.WriteString(`,"oldPassword":`)
	b.Write(pw(p.OldPassword))
	b.WriteString(`,"user":`)
	b.Write(jsonString(login(&p.User)))
	b.WriteString(`,"records":`)
	b.Write(records)
	b.WriteString(`}`)
	return b.Bytes()
}

// listed is one record of records; user marks the pamUser.
type listed struct {
	rec  *vault.Record
	user bool
}

// ordered returns the records the script sees, in order, each once (at its first place).
func (p *Params) ordered() []listed {
	var out []listed
	seen := map[string]int{}
	add := func(r *vault.Record, user bool) {
		if r == nil {
			return
		}
		if r.UID != "" {
			if i, ok := seen[r.UID]; ok {
				if user { // the pamUser's content, at the first place
					out[i] = listed{r, true}
				}
				return
			}
			seen[r.UID] = len(out)
		}
		out = append(out, listed{r, user})
	}
	add(p.Configuration, false)
	add(p.Resource, false)
	for i := range p.Credentials {
		add(&p.Credentials[i], false)
	}
	add(&p.User, true)
	return out
}

// dicts builds the dictionary of every record in records.
func (p *Params) dicts() ([]dict, error) {
	recs := p.ordered()
	out := make([]dict, 0, len(recs))
	for _, l := range recs {
		d, err := recordDict(l.rec, l.user, p.OldPassword)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// recordDict builds one record's dictionary: uid, title, then one key per field and custom
// field. For the pamUser (isUser), the first password field holds the old password; a pamUser
// without a password field gets a password key after its standard fields.
func recordDict(r *vault.Record, isUser bool, old secret.Secret) (dict, error) {
	used := map[string]bool{"uid": true, "title": true}
	d := dict{
		{key: "uid", value: jsonString(r.UID), texts: []string{r.UID}},
		{key: "title", value: jsonString(r.Title), texts: []string{r.Title}},
	}
	keyFor := func(base string) string {
		k := base
		for n := 2; used[k]; n++ {
			k = base + strconv.Itoa(n)
		}
		used[k] = true
		return k
	}
	replaced := !isUser
	for gi, group := range [][]vault.Field{r.Fields, r.Custom} {
		for i, f := range group {
			if slices.Contains(skippedTypes, f.Type) {
				continue
			}
			base := f.Label
			if base == "" {
				base = f.Type
			}
			e := entry{key: keyFor(base), secret: slices.Contains(secretTypes, f.Type)}
			if !replaced && gi == 0 && f.Type == "password" {
				e.value, e.texts, e.secret, e.empty = jsonString(old.Reveal()), []string{old.Reveal()}, true, old.IsZero()
				replaced = true
			} else {
				v, texts, err := fieldValue(f)
				if err != nil {
					return nil, fmt.Errorf("record %s: %s[%d] (%s): %w", r.UID, [2]string{"fields", "custom"}[gi], i, f.Type, err)
				}
				e.value, e.texts, e.empty = v, texts, string(v) == `""`
			}
			d = append(d, e)
		}
		if gi == 0 && !replaced {
			d = append(d, entry{key: keyFor("password"), value: jsonString(old.Reveal()), texts: []string{old.Reveal()}, secret: true, empty: old.IsZero()})
			replaced = true
		}
	}
	return d, nil
}

// fieldValue returns a field's value as the script sees it: the value itself when there is one,
// an array when there are several, "" when there is none; and the texts it holds.
func fieldValue(f vault.Field) ([]byte, []string, error) {
	var texts []string
	compact := make([][]byte, len(f.Value))
	for i, v := range f.Value {
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			return nil, nil, fmt.Errorf("value %d is not valid JSON", i)
		}
		compact[i] = b.Bytes()
		texts = append(texts, leaves(v)...)
	}
	switch len(compact) {
	case 0:
		return []byte(`""`), nil, nil
	case 1:
		return compact[0], texts, nil
	}
	return append(append([]byte("["), bytes.Join(compact, []byte(","))...), ']'), texts, nil
}

// encodeDicts encodes the records array. With mask, the non-empty values of secret entries and
// of entries holding a known secret are replaced by Masked.
func encodeDicts(dicts []dict, mask bool, known map[string]bool) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, d := range dicts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		for j, e := range d {
			if j > 0 {
				b.WriteByte(',')
			}
			b.Write(jsonString(e.key))
			b.WriteByte(':')
			if mask && !e.empty && j >= 2 && (e.secret || slices.ContainsFunc(e.texts, func(t string) bool { return known[t] })) {
				b.Write(jsonString(Masked))
			} else {
				b.Write(e.value)
			}
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes()
}

// SecretsOf returns the secrets a script run with p may print, for NewRedactor: the new and old
// passwords and the values of the password, secret, pinCode, oneTimeCode and keyPair fields
// (standard and custom) of every record in records — for a oneTimeCode also its TOTP seed, for a
// keyPair its private key. Empty values are left out and each value appears once. Every other
// value, however short, is kept: a secret of one or two characters will redact noisily.
func SecretsOf(p Params) []secret.Secret {
	var out []secret.Secret
	seen := map[string]bool{}
	add := func(s string) {
		if s == "" || seen[s] {
			return
		}
		seen[s] = true
		out = append(out, secret.FromString(s))
	}
	add(p.NewPassword.Reveal())
	add(p.OldPassword.Reveal())
	for _, l := range p.ordered() {
		for _, f := range slices.Concat(l.rec.Fields, l.rec.Custom) {
			if !slices.Contains(secretTypes, f.Type) {
				continue
			}
			for _, v := range f.Value {
				for _, s := range secretLeaves(f.Type, v) {
					add(s)
				}
			}
		}
	}
	return out
}

// secretLeaves returns the secret texts of one value of a secret-like field.
func secretLeaves(typ string, v json.RawMessage) []string {
	switch typ {
	case "keyPair":
		var kp struct {
			PrivateKey string `json:"privateKey"`
		}
		if json.Unmarshal(v, &kp) == nil && kp.PrivateKey != "" {
			return []string{kp.PrivateKey}
		}
	case "oneTimeCode":
		var s string
		if json.Unmarshal(v, &s) == nil {
			if u, err := url.Parse(s); err == nil {
				return []string{s, u.Query().Get("secret")}
			}
		}
	}
	return leaves(v)
}

// leaves returns the strings and numbers a JSON value holds, at any depth.
func leaves(v json.RawMessage) []string {
	var x any
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	if d.Decode(&x) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case string:
			out = append(out, x)
		case json.Number:
			out = append(out, x.String())
		case []any:
			for _, y := range x {
				walk(y)
			}
		case map[string]any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(x)
	return out
}

// login returns the pamUser's login: the first value of its first login field.
func login(r *vault.Record) string {
	for _, f := range slices.Concat(r.Fields, r.Custom) {
		if f.Type != "login" || len(f.Value) == 0 {
			continue
		}
		var s string
		if json.Unmarshal(f.Value[0], &s) == nil {
			return s
		}
		return ""
	}
	return ""
}

// jsonString encodes s as a JSON string without HTML escaping, as Python's json module does.
func jsonString(s string) []byte {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	_ = e.Encode(s)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
