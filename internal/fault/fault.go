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
}

func (e *Error) Error() string {
	if e.Err != nil && e.Kind == Internal {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

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
