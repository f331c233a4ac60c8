package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/fault"
)

// statusOf is the one place where an error kind becomes an HTTP status.
var statusOf = map[fault.Kind]int{
	fault.Internal:        http.StatusInternalServerError,
	fault.Invalid:         http.StatusBadRequest,
	fault.NotFound:        http.StatusNotFound,
	fault.Conflict:        http.StatusConflict,
	fault.Unauthenticated: http.StatusUnauthorized,
	fault.Forbidden:       http.StatusForbidden,
	fault.TooLarge:        http.StatusRequestEntityTooLarge,
	fault.RateLimited:     http.StatusTooManyRequests,
	fault.Unavailable:     http.StatusServiceUnavailable,

	fault.MethodNotAllowed: http.StatusMethodNotAllowed,
}

var (
	errNoToken   = &fault.Error{Kind: fault.Unauthenticated, Code: "unauthorized", Message: "missing bearer token: send Authorization: Bearer <token> from POST /v1/teams/{team}/service_token"}
	errWrongTeam = &fault.Error{Kind: fault.Unauthenticated, Code: "unauthorized", Message: "invalid or expired credentials"}
	errNotReady  = &fault.Error{Kind: fault.Unavailable, Code: "not_ready", Message: "the service is not ready"}
	// errAuditFailed: the audit trail cannot be written, so nothing the request would have
	// revealed is; a change it made stands.
	errAuditFailed = &fault.Error{Kind: fault.Unavailable, Code: "audit_unavailable",
		Message: "the audit trail could not be written; nothing is revealed until it can be"}
	errPanic = errors.New("handler panicked")
)

func forbidden(roles []auth.Role) error {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	return fault.New(fault.Forbidden, "forbidden", "this needs one of the roles: %s", strings.Join(names, ", "))
}

func methodNotAllowed(r *http.Request, allow []string) error {
	return fault.New(fault.MethodNotAllowed, "method_not_allowed", "%s %s: this resource takes %s", r.Method, r.URL.Path, strings.Join(allow, ", "))
}

func notFoundRoute(r *http.Request) error {
	return fault.New(fault.NotFound, "no_such_route", "no route %s %s", r.Method, r.URL.Path)
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError renders err as {"code","message"} with its status. Internal errors are logged
// and shown only as "internal error".
func writeError(w http.ResponseWriter, log *slog.Logger, err error) {
	fe, ok := fault.As(err)
	if !ok || fe.Kind == fault.Internal {
		log.Error("internal error", "err", err)
		fe = &fault.Error{Kind: fault.Internal, Code: "internal", Message: "internal error"}
	}
	if fe.Kind == fault.Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyturn"`)
	}
	if fe.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(fe.RetryAfter.Seconds()))))
	}
	_ = writeJSON(w, statusOf[fe.Kind], errorBody{Code: fe.Code, Message: fe.Message})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	return nil
}

// decodeJSON reads one JSON object from the body into v, refusing unknown fields.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF { // dec.More would miss a stray '}' or ']'
		return fault.New(fault.Invalid, "malformed_json", "the body holds more than one JSON value")
	}
	return nil
}

// jsonError turns a decoding error into a client error that says what is wrong.
func jsonError(err error) error {
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return fault.New(fault.TooLarge, "body_too_large", "the request body is larger than %d bytes", tooLarge.Limit)
	case errors.As(err, &syntax):
		return fault.New(fault.Invalid, "malformed_json", "malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the body"
		}
		return fault.New(fault.Invalid, "malformed_json", "%s must be a JSON %s, not %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.EOF):
		return fault.New(fault.Invalid, "malformed_json", "the request body is empty: send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fault.New(fault.Invalid, "malformed_json", "malformed JSON: the body ends too early")
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return fault.New(fault.Invalid, "unknown_field", "%s", strings.TrimPrefix(err.Error(), "json: "))
	default:
		return fault.New(fault.Invalid, "malformed_json", "malformed JSON: %v", err)
	}
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "array"
	case "struct", "map":
		return "object"
	case "int64", "int":
		return "integer"
	case "float64":
		return "number"
	}
	return k
}
