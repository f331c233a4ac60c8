// Package fault holds the error type every layer returns when the caller did something wrong
// or something is missing; the HTTP layer and the CLI each map its Kind in exactly one place.
package fault

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error by what the caller can do about it.
type Kind int

// The kinds. Internal is the zero value so that an unclassified error is never a client error.
const (
	Internal         Kind = iota // a bug or an unexpected failure; the message is not shown to clients
	Invalid                      // malformed or unacceptable input
	NotFound                     // the thing does not exist (or the caller may not know it does)
	Conflict                     // the request conflicts with the current state, e.g. a stale revision
	Unauthenticated              // missing, wrong or expired credentials
	Forbidden                    // authenticated, but not allowed
	TooLarge                     // the request body is too large
	RateLimited                  // too many requests; retry later
	Unavailable                  // the service is not ready
	MethodNotAllowed             // the resource exists but does not take this method
)

// Error is a classified error with a stable snake_case code and a human message that is safe
// to show to the caller (it never contains a secret).
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Err     error // the underlying cause, for logs; may be nil

	RetryAfter time.Duration // for RateLimited: when the caller may try again

	sentinel *Sentinel // the class it was made from (Sentinel.New), for errors.Is
}

func (e *Error) Error() string {
	if e.Err != nil && e.Kind == Internal {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the Sentinel e was made from, so that errors.Is(err, pkg.ErrX)
// holds for every error made by pkg.ErrX.New.
func (e *Error) Is(target error) bool { return e.sentinel != nil && target == error(e.sentinel) }

// Sentinel is a class of error that callers branch on with errors.Is, never by comparing
// codes. It fixes the kind and code its errors show, so a sentinel maps to its API code where
// it is declared, and its kind to an HTTP status or exit code where every kind does.
type Sentinel struct {
	kind Kind
	code string
}

// NewSentinel returns a class of errors of the given kind and code.
func NewSentinel(kind Kind, code string) *Sentinel { return &Sentinel{kind: kind, code: code} }

func (s *Sentinel) Error() string { return s.code }

// Code is the stable code the sentinel's errors show.
func (s *Sentinel) Code() string { return s.code }

// New returns an Error of the sentinel's kind and code with a formatted message (safe to show:
// never a secret); errors.Is(err, s) holds for it and for any error wrapping it.
func (s *Sentinel) New(format string, args ...any) *Error {
	return &Error{Kind: s.kind, Code: s.code, Message: fmt.Sprintf(format, args...), sentinel: s}
}

// New returns an Error of the given kind and code with a formatted message.
func New(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalidf returns an Invalid error with code "invalid_request".
func Invalidf(format string, args ...any) *Error {
	return New(Invalid, "invalid_request", format, args...)
}

// NotFoundf returns a NotFound error with code "not_found".
func NotFoundf(format string, args ...any) *Error {
	return New(NotFound, "not_found", format, args...)
}

// As returns the *Error in err's chain, if there is one.
func As(err error) (*Error, bool) {
	var fe *Error
	if errors.As(err, &fe) {
		return fe, true
	}
	return nil, false
}

// KindOf returns the Kind of the first *Error in err's chain, or Internal.
func KindOf(err error) Kind {
	if fe, ok := As(err); ok {
		return fe.Kind
	}
	return Internal
}
