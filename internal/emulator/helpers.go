package emulator

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Helpers for tests and the sandbox: they act on the org directly, without HTTP, rate limits,
// faults or password policy.

// NewUser describes a user for CreateUser.
type NewUser struct {
	Login     string         // required; also the email when Email is empty
	Email     string         // "" means Login
	FirstName string         // "" means "Test"
	LastName  string         // "" means "User"
	Password  string         // "" creates a user without a password
	Status    string         // "" means ACTIVE (PROVISIONED without a password)
	Profile   map[string]any // extra profile attributes
}

// UserInfo is a snapshot of a user, for assertions.
type UserInfo struct {
	ID              string    // 00u…
	Login           string    // profile.login
	Status          string    // ACTIVE, LOCKED_OUT, …
	HasPassword     bool      // whether the user has a password credential
	PasswordChanged time.Time // zero when never set
	LastUpdated     time.Time // as in the user object
	FailedLogins    int       // consecutive failed /api/v1/authn attempts
}

// CreateUser adds a user and returns its id.
func (e *Emulator) CreateUser(nu NewUser) (string, error) {
	if nu.Login == "" {
		return "", errors.New("emulator: login is required")
	}
	if nu.Email == "" {
		nu.Email = nu.Login
	}
	if nu.FirstName == "" {
		nu.FirstName = "Test"
	}
	if nu.LastName == "" {
		nu.LastName = "User"
	}
	status := nu.Status
	if status == "" {
		status = StatusActive
		if nu.Password == "" {
			status = StatusProvisioned
		}
	}
	if !validStatus[status] {
		return "", fmt.Errorf("emulator: unknown status %q", status)
	}
	now := e.clock()
	u := &user{status: status, created: now, statusChanged: now, lastUpdated: now,
		profile: newProfile(nu.FirstName, nu.LastName, nu.Login, nu.Email)}
	for k, v := range nu.Profile {
		u.profile[k] = v
	}
	if status != StatusStaged {
		u.activated = now
	}
	if status == StatusLockedOut {
		u.lockedAt = now
	}
	if nu.Password != "" {
		u.setPassword(nu.Password, now, e.policy.HistoryCount)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.byLogin[strings.ToLower(nu.Login)] != nil {
		return "", fmt.Errorf("emulator: login %q exists", nu.Login)
	}
	e.insertLocked(u)
	return u.id, nil
}

// User returns a snapshot of the user with this id or login.
func (e *Emulator) User(idOrLogin string) (UserInfo, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	u := e.lookupLocked(idOrLogin)
	if u == nil {
		return UserInfo{}, false
	}
	return UserInfo{ID: u.id, Login: u.login(), Status: u.status, HasPassword: u.hasPassword,
		PasswordChanged: u.passwordChanged, LastUpdated: u.lastUpdated, FailedLogins: u.failed}, true
}

// UserID returns the id of the user with this login.
func (e *Emulator) UserID(login string) (string, bool) {
	info, ok := e.User(login)
	return info.ID, ok
}

// Password returns the current password of the user with this id or login, to check what a
// rotation did.
func (e *Emulator) Password(idOrLogin string) (string, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	u := e.lookupLocked(idOrLogin)
	if u == nil || !u.hasPassword {
		return "", false
	}
	return u.password, true
}

// PasswordChanges returns how many times the API changed the password of the user with this
// id or login (change_password and admin set; not SetPassword), to count what rotations did.
func (e *Emulator) PasswordChanges(idOrLogin string) (int64, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	u := e.lookupLocked(idOrLogin)
	if u == nil {
		return 0, false
	}
	return u.changes, true
}

// SetPassword changes a user's password behind the gateway's back (no policy checks; the
// old password goes into the history; the status is left alone).
func (e *Emulator) SetPassword(idOrLogin, password string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.lookupLocked(idOrLogin)
	if u == nil {
		return ErrNoSuchUser
	}
	u.setPassword(password, e.clock(), e.policy.HistoryCount)
	return nil
}

// SetUserStatus sets a user's status directly (e.g. PASSWORD_EXPIRED, LOCKED_OUT, RECOVERY).
func (e *Emulator) SetUserStatus(idOrLogin, status string) error {
	if !validStatus[status] {
		return fmt.Errorf("emulator: unknown status %q", status)
	}
	now := e.clock()
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.lookupLocked(idOrLogin)
	if u == nil {
		return ErrNoSuchUser
	}
	u.setStatus(status, now)
	if status == StatusLockedOut {
		u.lockedAt = now
	}
	return nil
}

// PasswordPolicy returns the policy the emulator enforces.
func (e *Emulator) PasswordPolicy() PasswordPolicy { return e.policy }
