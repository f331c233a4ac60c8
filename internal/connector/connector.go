// Package connector defines what keyturn asks of a target system: change a password and check
// one. Connectors get plain inputs and never see the vault; implementations live in the
// sub-packages (okta, opa, rest, ssh, mysql, postgresql, ldap), and the rotation engine receives them by name.
package connector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/keyturn/keyturn/internal/secret"
)

// Account names the credential a connector acts on and the target that holds it.
type Account struct {
	Login  string // the account whose password rotates (a pamUser's login)
	Target Target
}

// Target is the system that owns the account, as the rotation's resource record describes it.
type Target struct {
	URL         string
	AdminLogin  string
	AdminSecret secret.Secret
	Fields      map[string]string        // fields and custom fields by label (or type): the pamUser's custom fields over the resource's
	Secrets     map[string]secret.Secret // the resource's secret custom fields by label (e.g. an OAuth private key)
}

// Rotator changes an account's password from old to new.
type Rotator interface {
	Rotate(ctx context.Context, acct Account, old, new secret.Secret) error
}

// Verifier checks whether the target accepts a password for the account. It returns nil when
// it does, an error wrapping ErrRejected when it does not, and any other error when it could
// not tell.
type Verifier interface {
	Verify(ctx context.Context, acct Account, password secret.Secret) error
}

// Connector rotates and verifies.
type Connector interface {
	Rotator
	Verifier
}

// Issuer is implemented by targets that make the new credential themselves, such as an API
// key service: the engine saves what Issue returns as pending before anything else.
type Issuer interface {
	Issue(ctx context.Context, acct Account, current secret.Secret) (Issued, error)
}

// Issued is a credential a target made: its secret, and custom fields that identify it (such
// as an API key's key_id), which the record takes when the credential becomes current.
type Issued struct {
	Secret secret.Secret
	Fields map[string]string
}

// Finalizer is implemented by targets that must retire the old credential once the new one
// is verified (deleting older API keys); it runs before the new credential becomes current and
// must be safe to repeat.
type Finalizer interface {
	Finalize(ctx context.Context, acct Account, issued Issued) error
}

// VerifyToggle is implemented by connectors whose checks a record can turn off; when
// CanVerify is false the engine treats the rotation as having no verifier.
type VerifyToggle interface {
	CanVerify(acct Account) bool
}

// Reconciler is implemented by connectors that can set a password without knowing the current
// one (an admin reset), when the record allows it; a heartbeat that finds the credential
// changed behind keyturn's back then repairs it with a rotation.
type Reconciler interface {
	CanReconcile(acct Account) bool
}

// SelfRotator is implemented by connectors that may rotate the resource's own admin account
// when the resource allows it. IsSelf reports whether a Rotate of acct would change the admin's
// own password: the login is the admin's, compared as the target compares them, and
// self-rotation is allowed. The engine then writes the new password to the resource record
// too, in the commit that makes it the account's current one.
type SelfRotator interface {
	IsSelf(acct Account) bool
}

// ErrRejected is wrapped by Verify's error when the target refuses the password.
var ErrRejected = errors.New("the target refused the password")

// ErrNotChanged is wrapped by a Rotate error that proves the change never took effect: the
// connector failed before it sent the change request (a user lookup, a token, a setting), or
// the target refused that request before acting on it (authentication). Any other Rotate error
// (a timeout, a reset, an answer to the change request) may have changed the target, and the
// engine asks the target which password it holds before it decides anything.
var ErrNotChanged = errors.New("the target was not changed")

// NotChanged marks err (nil stays nil) as one that proves the target was not changed; see
// ErrNotChanged. The result still unwraps to err, so its classification is kept.
func NotChanged(err error) error {
	if err == nil {
		return nil
	}
	return notChanged{err}
}

// IsNotChanged reports whether err proves that the target was not changed.
func IsNotChanged(err error) bool { return errors.Is(err, ErrNotChanged) }

type notChanged struct{ err error }

func (e notChanged) Error() string   { return e.err.Error() }
func (e notChanged) Unwrap() []error { return []error{e.err, ErrNotChanged} }

// Error is a classified connector error. Transient errors (network, 5xx, 429) are retried with
// backoff; permanent ones (bad credentials, policy violation, other 4xx) end the run.
type Error struct {
	Transient bool
	Code      string    // snake_case, e.g. "rate_limited", "password_policy"
	Message   string    // safe to show: never a secret
	RetryAt   time.Time // for rate limits: not before this time (zero if unknown)
	Err       error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Err)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Transient returns a transient error.
func Transient(code, message string, err error) *Error {
	return &Error{Transient: true, Code: code, Message: message, Err: err}
}

// Permanent returns a permanent error.
func Permanent(code, message string, err error) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// IsTransient reports whether err is worth retrying. Errors that are not classified are
// treated as transient only when they are context deadline errors of a single call.
func IsTransient(err error) bool {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Transient
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// NewHTTPClient returns the HTTP client connectors use by default: a 30 s timeout and a
// keep-alive pool large enough that many concurrent rotations against one target reuse their
// connections instead of opening (and leaving in TIME_WAIT) a new one per call.
func NewHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}
