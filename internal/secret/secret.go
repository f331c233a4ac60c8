// Package secret holds Secret, a value that redacts itself wherever it is printed, logged or
// marshalled, so that a password or key reaching a log line or an error message is harmless.
package secret

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// Redacted is what a Secret shows instead of its value.
const Redacted = "[REDACTED]"

// Secret is a sensitive byte string. Its zero value is the empty secret.
type Secret struct {
	b []byte
}

// New returns a Secret holding a copy of b.
func New(b []byte) Secret { return Secret{b: append([]byte(nil), b...)} }

// FromString returns a Secret holding s.
func FromString(s string) Secret { return Secret{b: []byte(s)} }

// Reveal returns the value as a string. Call it only where the value must leave the process.
func (s Secret) Reveal() string { return string(s.b) }

// Bytes returns the value. The caller must not keep or modify it.
func (s Secret) Bytes() []byte { return s.b }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return len(s.b) == 0 }

// Equal compares two secrets in constant time.
func (s Secret) Equal(o Secret) bool { return subtle.ConstantTimeCompare(s.b, o.b) == 1 }

// Clear overwrites the value in place, on a best-effort basis.
func (s Secret) Clear() { clear(s.b) }

// String implements fmt.Stringer.
func (s Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return Redacted }

// Format implements fmt.Formatter so that every verb prints the redaction.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON implements json.Marshaler; use Reveal to put the value in a response on purpose.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
