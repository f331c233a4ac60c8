package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/vault"
)

// OldKeyGrace is how long a user's older API keys keep working after a key rotation.
const OldKeyGrace = 48 * time.Hour

// User is a service user as the API shows it.
type User struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	TeamName  string     `json:"team_name"`
	Status    string     `json:"status"`
	UserType  string     `json:"user_type"`
	Roles     []Role     `json:"roles"`
	Folders   []string   `json:"folders"`
	Details   any        `json:"details"`
	DeletedAt *time.Time `json:"deleted_at"`
}

// Key is an API key as listed: never its secret.
type Key struct {
	ID        string     `json:"id"`
	IssuedAt  time.Time  `json:"issued_at"`
	ExpiresAt time.Time  `json:"expires_at"` // the zero time when the key does not expire (as OPA shows it)
	LastUsed  *time.Time `json:"last_used"`
}

// NewKey is a freshly issued key with the only copy of its secret.
type NewKey struct {
	Key
	Secret secret.Secret `json:"-"`
}

// UserFilter selects service users to list.
type UserFilter struct {
	Contains   string
	StartsWith string
	Status     string
	Count      int
	Offset     int
}

// UserChange is a partial update of a service user; nil fields are left alone.
type UserChange struct {
	Status  *string
	Roles   *[]Role
	Folders *[]string
}

var statuses = []string{StatusActive, StatusDisabled, StatusDeleted}

func userRoles(u store.ServiceUser) []Role {
	roles := make([]Role, len(u.Roles))
	for i, r := range u.Roles {
		roles[i] = Role(r)
	}
	return roles
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(s string) bool { return !slices.Contains(b, s) }) &&
		!slices.ContainsFunc(b, func(s string) bool { return !slices.Contains(a, s) })
}

func userView(u store.ServiceUser, team string) User {
	roles := userRoles(u)
	return User{ID: u.ID, Name: u.Name, TeamName: team, Status: u.Status, UserType: "service",
		Roles: roles, Folders: nonNilStrings(u.Folders), DeletedAt: u.DeletedAt}
}

func keyView(k store.APIKey) Key {
	out := Key{ID: k.ID, IssuedAt: k.IssuedAt, LastUsed: k.LastUsed}
	if k.ExpiresAt != nil {
		out.ExpiresAt = *k.ExpiresAt
	}
	return out
}

// ValidateUserName checks a service user name: 1 to 255 printable characters, none of / \ ? # %.
func ValidateUserName(name string) error {
	if name == "." || name == ".." {
		return fault.Invalidf("a service user cannot be named %q", name)
	}
	if name == "" || len(name) > 255 || strings.TrimSpace(name) != name {
		return fault.Invalidf("a service user name has 1 to 255 characters and no leading or trailing space")
	}
	if strings.ContainsAny(name, `/\?#%`) || strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return fault.Invalidf("a service user name cannot contain / \\ ? # %% or control characters")
	}
	return nil
}

// ParseRoles checks role names.
func ParseRoles(names []string) ([]Role, error) {
	out := make([]Role, 0, len(names))
	for _, n := range names {
		if !slices.Contains(AllRoles, Role(n)) {
			return nil, fault.Invalidf("unknown role %q: use %s", n, strings.Join(roleStrings(AllRoles), ", "))
		}
		if !slices.Contains(out, Role(n)) {
			out = append(out, Role(n))
		}
	}
	return out, nil
}

func validateFolders(folders []string) error {
	for _, f := range folders {
		if f == "" {
			return fault.Invalidf("an empty folder grant: leave folders empty to grant all")
		}
		if err := vault.ValidateFolder(f); err != nil {
			return err
		}
	}
	return nil
}

// grantWithin reports whether roles and folders lie within p's own grant: every role is one p
// holds, and every folder is in or below one of p's folders. No folders means every folder,
// which lies within p's grant only when p has no folder limit either. When they do not, the
// error says which role or folder is beyond p's.
func grantWithin(p *Principal, roles []Role, folders []string) (string, bool) {
	for _, r := range roles {
		if !p.Has(r) {
			return fmt.Sprintf("role %s, which you do not hold", r), false
		}
	}
	if len(p.Folders) == 0 {
		return "", true
	}
	if len(folders) == 0 {
		return fmt.Sprintf("every folder, while yours are limited to %s", strings.Join(p.Folders, ", ")), false
	}
	for _, f := range folders {
		if !vault.InFolders(f, p.Folders) {
			return fmt.Sprintf("folder %s, which is outside yours (%s)", f, strings.Join(p.Folders, ", ")), false
		}
	}
	return "", true
}

// checkGrant refuses to give roles or folders beyond p's own.
func checkGrant(p *Principal, roles []Role, folders []string) error {
	if beyond, ok := grantWithin(p, roles, folders); !ok {
		return fault.New(fault.Forbidden, "grant_exceeds_own", "you cannot grant %s", beyond)
	}
	return nil
}

// checkTarget refuses to let p act on a service user whose grant is wider than p's: changing
// it or issuing, listing or deleting its keys would hand p what p was not given.
func checkTarget(p *Principal, u store.ServiceUser) error {
	if beyond, ok := grantWithin(p, userRoles(u), u.Folders); !ok {
		return fault.New(fault.Forbidden, "service_user_out_of_grant",
			"service user %q holds %s: only someone whose grant covers it can change it or its keys", u.Name, beyond)
	}
	return nil
}

// ListUsers returns the caller's team's service users and whether more remain.
func (s *Service) ListUsers(ctx context.Context, p *Principal, f UserFilter) ([]User, bool, error) {
	if f.Status != "" && !slices.Contains(statuses, f.Status) {
		return nil, false, fault.Invalidf("status must be one of %s, not %q", strings.Join(statuses, ", "), f.Status)
	}
	if f.Count <= 0 {
		f.Count = 100
	}
	rows, err := s.db.ListServiceUsers(ctx, store.UserFilter{TeamID: p.TeamID, Contains: f.Contains,
		StartsWith: f.StartsWith, Status: f.Status, Limit: f.Count + 1, Offset: f.Offset})
	if err != nil {
		return nil, false, fmt.Errorf("list service users: %w", err)
	}
	more := len(rows) > f.Count
	rows = rows[:min(len(rows), f.Count)]
	out := make([]User, len(rows))
	for i, u := range rows {
		out[i] = userView(u, p.TeamName)
	}
	return out, more, nil
}

// journal records an identity change p made, in its transaction.
func (s *Service) journal(ctx context.Context, tx *store.Tx, p *Principal, typ string, details map[string]any) error {
	if s.events == nil {
		return nil
	}
	details["key_id"] = p.KeyID
	return s.events.Append(ctx, tx, p.TeamID, audit.Event{Type: typ, Actor: p.UserName, Details: details})
}

// CreateUser creates an ACTIVE service user without keys.
func (s *Service) CreateUser(ctx context.Context, p *Principal, name string, roles []Role, folders []string) (User, error) {
	if err := ValidateUserName(name); err != nil {
		return User{}, err
	}
	if err := validateFolders(folders); err != nil {
		return User{}, err
	}
	if err := checkGrant(p, roles, folders); err != nil {
		return User{}, err
	}
	u := store.ServiceUser{ID: uuid.NewString(), TeamID: p.TeamID, Name: name, Status: StatusActive,
		Roles: roleStrings(roles), Folders: nonNilStrings(folders), CreatedAt: s.now().UTC()}
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		if err := tx.CreateServiceUser(ctx, u); err != nil {
			return err
		}
		return s.journal(ctx, tx, p, audit.ServiceUserCreated, map[string]any{"service_user": u.Name, "roles": u.Roles, "folders": u.Folders})
	})
	if errors.Is(err, store.ErrConflict) {
		return User{}, fault.New(fault.Conflict, "service_user_exists", "a service user named %q already exists", name)
	}
	if err != nil {
		return User{}, fmt.Errorf("create service user: %w", err)
	}
	return userView(u, p.TeamName), nil
}

// GetUser returns one of the caller's team's service users.
func (s *Service) GetUser(ctx context.Context, p *Principal, name string) (User, error) {
	u, err := s.user(ctx, s.db.Reader, p, name)
	if err != nil {
		return User{}, err
	}
	return userView(u, p.TeamName), nil
}

func (s *Service) user(ctx context.Context, r store.Reader, p *Principal, name string) (store.ServiceUser, error) {
	u, err := r.ServiceUserByName(ctx, p.TeamID, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.ServiceUser{}, fault.NotFoundf("no service user %q", name)
	}
	if err != nil {
		return store.ServiceUser{}, fmt.Errorf("service user %s: %w", name, err)
	}
	return u, nil
}

// UpdateUser changes a service user's status, roles or folders. Nobody can disable or delete
// themselves or change their own roles or folders, change a user whose grant is wider than
// theirs, or grant roles or folders beyond their own; a DELETED user cannot be changed.
func (s *Service) UpdateUser(ctx context.Context, p *Principal, name string, c UserChange) (User, error) {
	if c.Status != nil && !slices.Contains(statuses, *c.Status) {
		return User{}, fault.Invalidf("status must be one of %s, not %q", strings.Join(statuses, ", "), *c.Status)
	}
	if c.Folders != nil {
		if err := validateFolders(*c.Folders); err != nil {
			return User{}, err
		}
	}
	var out store.ServiceUser
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		u, err := s.user(ctx, tx.Reader, p, name)
		if err != nil {
			return err
		}
		if u.Status == StatusDeleted {
			return fault.New(fault.Conflict, "service_user_deleted", "service user %q is deleted and cannot be changed", name)
		}
		self := u.ID == p.UserID
		if err := checkTarget(p, u); err != nil {
			return err
		}
		if c.Status != nil {
			if self && *c.Status != StatusActive {
				return fault.New(fault.Forbidden, "cannot_change_self", "you cannot disable or delete yourself")
			}
			u.Status = *c.Status
			if u.Status == StatusDeleted {
				now := s.now().UTC()
				u.DeletedAt = &now
			}
		}
		if c.Roles != nil {
			if self && !sameSet(roleStrings(*c.Roles), u.Roles) {
				return fault.New(fault.Forbidden, "cannot_change_self", "you cannot change your own roles")
			}
			u.Roles = roleStrings(*c.Roles)
		}
		if c.Folders != nil {
			if self && !sameSet(*c.Folders, u.Folders) {
				return fault.New(fault.Forbidden, "cannot_change_self", "you cannot change your own folders")
			}
			u.Folders = nonNilStrings(*c.Folders)
		}
		if err := checkGrant(p, userRoles(u), u.Folders); err != nil {
			return err
		}
		out = u
		if err := tx.UpdateServiceUser(ctx, u); err != nil {
			return err
		}
		return s.journal(ctx, tx, p, audit.ServiceUserUpdated,
			map[string]any{"service_user": u.Name, "status": u.Status, "roles": u.Roles, "folders": u.Folders})
	})
	if err != nil {
		return User{}, fmt.Errorf("update service user %s: %w", name, err)
	}
	return userView(out, p.TeamName), nil
}

// ListKeys returns a service user's API keys, without secrets.
func (s *Service) ListKeys(ctx context.Context, p *Principal, name string) ([]Key, error) {
	u, err := s.user(ctx, s.db.Reader, p, name)
	if err != nil {
		return nil, err
	}
	if err := checkTarget(p, u); err != nil {
		return nil, err
	}
	keys, err := s.db.APIKeys(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", name, err)
	}
	out := make([]Key, len(keys))
	for i, k := range keys {
		out[i] = keyView(k)
	}
	return out, nil
}

// RotateKeys issues a new key to a service user and makes every older key expire in
// OldKeyGrace (or earlier, if it already did). The result holds the only copy of the secret.
func (s *Service) RotateKeys(ctx context.Context, p *Principal, name string) (NewKey, error) {
	var out NewKey
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		u, err := s.user(ctx, tx.Reader, p, name)
		if err != nil {
			return err
		}
		if err := checkTarget(p, u); err != nil {
			return err
		}
		if u.Status != StatusActive {
			return fault.New(fault.Conflict, "service_user_inactive", "service user %q is %s: activate it before issuing keys", name, u.Status)
		}
		now := s.now().UTC()
		if err := tx.ExpireAPIKeys(ctx, u.ID, now.Add(OldKeyGrace)); err != nil {
			return err
		}
		key, creds := s.newKey(u.ID, now)
		if err := tx.CreateAPIKey(ctx, key); err != nil {
			return err
		}
		out = NewKey{Key: keyView(key), Secret: creds.KeySecret}
		return s.journal(ctx, tx, p, audit.APIKeyRotated, map[string]any{"service_user": name, "new_key_id": key.ID})
	})
	if err != nil {
		return NewKey{}, fmt.Errorf("rotate keys of %s: %w", name, err)
	}
	return out, nil
}

// DeleteKey deletes a service user's key; every token minted from it stops working at once.
func (s *Service) DeleteKey(ctx context.Context, p *Principal, name, keyID string) error {
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		u, err := s.user(ctx, tx.Reader, p, name)
		if err != nil {
			return err
		}
		if err := checkTarget(p, u); err != nil {
			return err
		}
		if err := tx.DeleteAPIKey(ctx, u.ID, keyID); errors.Is(err, store.ErrNotFound) {
			return fault.NotFoundf("service user %q has no key %q", name, keyID)
		} else if err != nil {
			return err
		}
		return s.journal(ctx, tx, p, audit.APIKeyDeleted, map[string]any{"service_user": name, "deleted_key_id": keyID})
	})
	if err != nil {
		return fmt.Errorf("delete key of %s: %w", name, err)
	}
	return nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
