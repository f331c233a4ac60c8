package emulator

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Okta error codes the emulator sends, with the status each one goes with (okta.md §1.8).
const (
	ErrValidation       = "E0000001" // 400 Api validation failed: {field}
	ErrMalformedBody    = "E0000003" // 400 The request body was not well-formed.
	ErrAuthnFailed      = "E0000004" // 401 Authentication failed
	ErrInvalidSession   = "E0000005" // 403 Invalid session (no or unknown Authorization scheme)
	ErrNoPermission     = "E0000006" // 403 You do not have permission to perform the requested action
	ErrNotFound         = "E0000007" // 404 Not found: Resource not found: {x} (User)
	ErrInternal         = "E0000009" // 500 Internal Server Error
	ErrInvalidToken     = "E0000011" // 401 Invalid token provided
	ErrCredentialUpdate = "E0000014" // 403 Update of credentials failed
	ErrMethodNotAllowed = "E0000022" // 405 The endpoint does not support the provided HTTP method
	ErrInvalidSearch    = "E0000031" // 400 Invalid search criteria.
	ErrRateLimited      = "E0000047" // 429 API call exceeded rate limit due to too many requests.
)

// oktaErrorCause is one entry of errorCauses.
type oktaErrorCause struct {
	ErrorSummary string `json:"errorSummary"`
}

// oktaError is Okta's error envelope: errorLink repeats the code, errorId is per response,
// errorCauses is always present.
type oktaError struct {
	ErrorCode    string           `json:"errorCode"`
	ErrorSummary string           `json:"errorSummary"`
	ErrorLink    string           `json:"errorLink"`
	ErrorID      string           `json:"errorId"`
	ErrorCauses  []oktaErrorCause `json:"errorCauses"`
}

// writeOktaError sends an Okta error with the given status, code, summary and causes.
func writeOktaError(w http.ResponseWriter, status int, code, summary string, causes ...string) {
	e := oktaError{ErrorCode: code, ErrorSummary: summary, ErrorLink: code, ErrorID: errorID(), ErrorCauses: []oktaErrorCause{}}
	for _, c := range causes {
		e.ErrorCauses = append(e.ErrorCauses, oktaErrorCause{ErrorSummary: c})
	}
	writeJSON(w, status, e)
}

func malformedBody(w http.ResponseWriter) {
	writeOktaError(w, http.StatusBadRequest, ErrMalformedBody, "The request body was not well-formed.")
}

func userNotFound(w http.ResponseWriter, what string) {
	writeOktaError(w, http.StatusNotFound, ErrNotFound, "Not found: Resource not found: "+what+" (User)")
}

func validationFailed(w http.ResponseWriter, field string, causes ...string) {
	writeOktaError(w, http.StatusBadRequest, ErrValidation, "Api validation failed: "+field, causes...)
}

func credentialUpdateFailed(w http.ResponseWriter, causes ...string) {
	writeOktaError(w, http.StatusForbidden, ErrCredentialUpdate, "Update of credentials failed", causes...)
}

// writeJSON marshals v without HTML escaping (as Okta does) and sends it with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// randomString returns n characters of the URL-safe base64 alphabet from crypto/rand.
func randomString(n int) string {
	b := make([]byte, (n*6+7)/8)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomAlnum returns n random letters and digits, the alphabet of Okta ids.
func randomAlnum(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b)
}

// errorID is an Okta errorId: "oae" and 22 characters.
func errorID() string { return "oae" + randomString(22) }

// requestID is an X-Okta-Request-Id value (27 characters, as Okta's).
func requestID() string { return randomString(27) }

// oktaTime renders Okta timestamps: ISO 8601 UTC with milliseconds, or null when zero.
type oktaTime time.Time

// MarshalJSON implements json.Marshaler.
func (t oktaTime) MarshalJSON() ([]byte, error) {
	if time.Time(t).IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + formatOktaTime(time.Time(t)) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *oktaTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = oktaTime{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(oktaTimeLayout, s)
	*t = oktaTime(v)
	return err
}

const oktaTimeLayout = "2006-01-02T15:04:05.000Z"

func formatOktaTime(t time.Time) string { return t.UTC().Format(oktaTimeLayout) }

// opaTime renders OPA timestamps: RFC 3339 UTC with second precision; the zero time is
// "0001-01-01T00:00:00Z" (OPA's "never").
type opaTime time.Time

// MarshalJSON implements json.Marshaler.
func (t opaTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Truncate(time.Second).Format(time.RFC3339) + `"`), nil
}

// opaNullTime is an opaTime that renders null when zero (last_used, deleted_at).
type opaNullTime time.Time

// MarshalJSON implements json.Marshaler.
func (t opaNullTime) MarshalJSON() ([]byte, error) {
	if time.Time(t).IsZero() {
		return []byte("null"), nil
	}
	return opaTime(t).MarshalJSON()
}
