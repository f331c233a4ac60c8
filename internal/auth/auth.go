// Package auth holds keyturn's identities: teams, service users, their API keys, and the
// short-lived bearer tokens minted from those keys. Secrets and tokens are stored only as
// keyed hashes.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/keyring"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
)

// Role is a permission a service user holds.
type Role string

// The roles of ARCHITECTURE.md §4.
const (
	ResourceAdmin Role = "resource_admin" // manages identities
	PAMAdmin      Role = "pam_admin"      // manages records, scripts, rotation
	SecurityAdmin Role = "security_admin" // reads audit and metadata
	SecretsReader Role = "secrets_reader" // reads record values in granted folders
)

// AllRoles lists every role.
var AllRoles = []Role{ResourceAdmin, PAMAdmin, SecurityAdmin, SecretsReader}

// Service user statuses.
const (
	StatusActive   = "ACTIVE"
	StatusDisabled = "DISABLED"
	StatusDeleted  = "DELETED"
)

// AdminUserName is the name of the service user created with each team.
const AdminUserName = "admin"

// DefaultTokenTTL is how long a bearer token lives.
const DefaultTokenTTL = time.Hour

const tokenPrefix = "kt1."

var teamNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

// errBadCredentials is the one answer to any wrong key id, secret, team or token, so that
// the response never tells which part was wrong.
var errBadCredentials = &fault.Error{Kind: fault.Unauthenticated, Code: "unauthorized", Message: "invalid or expired credentials"}

// Principal is the authenticated caller of a request.
type Principal struct {
	TeamID    int64
	TeamName  string
	UserID    string
	UserName  string
	KeyID     string
	Roles     []Role
	Folders   []string
	ExpiresAt time.Time
}

// Has reports whether the principal holds a role.
func (p *Principal) Has(r Role) bool { return slices.Contains(p.Roles, r) }

// Credentials are the only copy of a new API key, as `keyturn init` prints them.
type Credentials struct {
	TeamName    string        `json:"team_name"`
	ServiceUser string        `json:"service_user"`
	KeyID       string        `json:"key_id"`
	KeySecret   secret.Secret `json:"-"`
}

// Token is a freshly minted bearer token.
type Token struct {
	Bearer    secret.Secret
	ExpiresAt time.Time
	TeamName  string
}

// Options configure a Service; zero values take the defaults.
type Options struct {
	TokenTTL      time.Duration // lifetime of bearer tokens (DefaultTokenTTL)
	FailureLimit  int           // failed token exchanges allowed per key id and address (DefaultFailureLimit)
	FailureWindow time.Duration // the window those failures are counted in (DefaultFailureWindow)
	// KeyFailureLimit failed exchanges of one key id from every address within KeyFailureWindow
	// leave an address that failed for it one try per FailureWindow (DefaultKeyFailureLimit,
	// DefaultKeyFailureWindow).
	KeyFailureLimit  int
	KeyFailureWindow time.Duration
	// LimiterEntries bounds each of the limiter's tables (DefaultLimiterEntries). On PostgreSQL,
	// where the tables are shared, each node cuts them back every 1,000 attempts it lets through
	// (every LimiterEntries/10 when that is fewer).
	LimiterEntries int
	Now            func() time.Time // the clock (time.Now)
	Journal        Journal          // where identity changes are audited (nil: nowhere)
}

// Journal records an event in the transaction of the change it describes. audit.Log is one.
type Journal interface {
	Append(ctx context.Context, tx *store.Tx, teamID int64, e audit.Event) error
}

// Service issues and checks credentials.
type Service struct {
	db       *store.DB
	keys     *keyring.Keyring
	now      func() time.Time
	tokenTTL time.Duration
	failures failureCounter
	events   Journal
	dummy    []byte // compared against when a key id is unknown, to even out timing
}

// New returns a Service.
func New(db *store.DB, keys *keyring.Keyring, opt Options) *Service {
	if opt.TokenTTL <= 0 {
		opt.TokenTTL = DefaultTokenTTL
	}
	if opt.FailureLimit <= 0 {
		opt.FailureLimit = DefaultFailureLimit
	}
	if opt.FailureWindow <= 0 {
		opt.FailureWindow = DefaultFailureWindow
	}
	if opt.KeyFailureLimit <= 0 {
		opt.KeyFailureLimit = DefaultKeyFailureLimit
	}
	if opt.KeyFailureWindow <= 0 {
		opt.KeyFailureWindow = DefaultKeyFailureWindow
	}
	if opt.LimiterEntries <= 0 {
		opt.LimiterEntries = DefaultLimiterEntries
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	l := limits{pairLimit: opt.FailureLimit, pairWindow: opt.FailureWindow,
		keyLimit: opt.KeyFailureLimit, keyWindow: opt.KeyFailureWindow, entries: opt.LimiterEntries}
	// On PostgreSQL every node counts the same failures; SQLite's one server keeps them in memory.
	var failures failureCounter = memoryCounter{newFailureLimiter(l)}
	if db.Dialect() == "postgres" {
		failures = &sharedLimiter{limits: l, db: db}
	}
	return &Service{db: db, keys: keys, now: opt.Now, tokenTTL: opt.TokenTTL,
		failures: failures, events: opt.Journal, dummy: keys.Hash("api-key", nil)}
}

// CreateTeam creates a team with an admin service user holding every role, and returns the
// admin's first API key.
func (s *Service) CreateTeam(ctx context.Context, name string) (Credentials, error) {
	if err := ValidateTeamName(name); err != nil {
		return Credentials{}, err
	}
	now := s.now().UTC()
	user := store.ServiceUser{ID: uuid.NewString(), Name: AdminUserName, Status: StatusActive,
		Roles: roleStrings(AllRoles), Folders: []string{}, CreatedAt: now}
	key, creds := s.newKey(user.ID, now)
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		team, err := tx.CreateTeam(ctx, name, now)
		if err != nil {
			return err
		}
		user.TeamID = team.ID
		if err := tx.CreateServiceUser(ctx, user); err != nil {
			return err
		}
		return tx.CreateAPIKey(ctx, key)
	})
	if errors.Is(err, store.ErrConflict) {
		return Credentials{}, fault.New(fault.Conflict, "team_exists", "team %q already exists", name)
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("create team %s: %w", name, err)
	}
	creds.TeamName, creds.ServiceUser = name, user.Name
	return creds, nil
}

// ValidateTeamName checks a team name: 1 to 63 letters, digits, '.', '_' or '-'.
func ValidateTeamName(name string) error {
	if !teamNameRE.MatchString(name) {
		return fault.Invalidf("team name %q: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// newKey makes an API key for a user: a UUID id and 32 random bytes of secret, base64.
func (s *Service) newKey(userID string, now time.Time) (store.APIKey, Credentials) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	sec := secret.FromString(base64.StdEncoding.EncodeToString(raw))
	clear(raw)
	id := uuid.NewString()
	return store.APIKey{ID: id, UserID: userID, SecretHash: s.keyHash(id, sec), IssuedAt: now},
		Credentials{KeyID: id, KeySecret: sec}
}

func (s *Service) keyHash(keyID string, sec secret.Secret) []byte {
	return s.keys.Hash("api-key/"+keyID, sec.Bytes())
}

// IssueToken exchanges an API key for a bearer token of the key's team. client is the
// caller's network address. A key id that is not a UUID is refused as invalid before anything
// else. Every wrong team, key id or secret gets the same error; after too many of them for the
// key id from the client's address, every attempt of that key id from that address is refused
// until the window ends (see DefaultFailureLimit and DefaultKeyFailureLimit). Failures from
// other addresses never refuse a correct secret from an address that has not failed. On
// PostgreSQL the failures are counted in the database, so the limits hold across every node.
func (s *Service) IssueToken(ctx context.Context, team, keyID string, keySecret secret.Secret, client string) (Token, error) {
	id, err := parseKeyID(keyID)
	if err != nil {
		return Token{}, err
	}
	now := s.now().UTC()
	wait, err := s.failures.Attempt(ctx, id, client, now)
	if err != nil {
		return Token{}, fmt.Errorf("issue token: %w", err)
	}
	if wait > 0 {
		return Token{}, &fault.Error{Kind: fault.RateLimited, Code: "too_many_attempts", RetryAfter: wait,
			Message: fmt.Sprintf("too many failed attempts: try again in %s", wait.Round(time.Second))}
	}
	tok, err := s.issueToken(ctx, team, id.String(), keySecret, now)
	// When the outcome cannot be recorded, the attempt stays counted as a failure: the safe
	// side, and no reason to withhold a token already issued.
	switch {
	case err == nil:
		_ = s.failures.Succeeded(ctx, id, client, now)
	case !errors.Is(err, errBadCredentials):
		_ = s.failures.Forgive(ctx, id, client, now)
	}
	return tok, err
}

// errBadKeyID refuses a key id that keyturn cannot have issued, before it is looked up or
// counted; it does not echo the id, which may be anything.
var errBadKeyID = &fault.Error{Kind: fault.Invalid, Code: "invalid_key_id",
	Message: "key_id must be the id of an API key: a UUID such as 0b5a8f1e-3c6d-4e2a-9f70-1d2c3b4a5e6f"}

// parseKeyID parses an API key id: a UUID in its 36-character form, as newKey issues them
// (in either case).
func parseKeyID(keyID string) (uuid.UUID, error) {
	if len(keyID) != 36 {
		return uuid.UUID{}, errBadKeyID
	}
	id, err := uuid.Parse(keyID)
	if err != nil {
		return uuid.UUID{}, errBadKeyID
	}
	return id, nil
}

func (s *Service) issueToken(ctx context.Context, team, keyID string, keySecret secret.Secret, now time.Time) (Token, error) {
	key, user, _, err := s.db.APIKeyWithUser(ctx, team, keyID)
	if errors.Is(err, store.ErrNotFound) {
		hmac.Equal(s.dummy, s.keyHash(keyID, keySecret))
		return Token{}, errBadCredentials
	}
	if err != nil {
		return Token{}, fmt.Errorf("issue token: %w", err)
	}
	if !hmac.Equal(key.SecretHash, s.keyHash(keyID, keySecret)) ||
		user.Status != StatusActive || (key.ExpiresAt != nil && !now.Before(*key.ExpiresAt)) {
		return Token{}, errBadCredentials
	}
	return s.mintToken(ctx, key, team, now)
}

// mintToken issues a bearer token for a key whose caller was checked.
func (s *Service) mintToken(ctx context.Context, key store.APIKey, team string, now time.Time) (Token, error) {
	idBytes := make([]byte, 12)
	_, _ = rand.Read(idBytes)
	id := hex.EncodeToString(idBytes)
	bearer := secret.FromString(tokenPrefix + id + "." + rand.Text() + rand.Text())
	expires := now.Add(s.tokenTTL)
	if key.ExpiresAt != nil && key.ExpiresAt.Before(expires) {
		expires = *key.ExpiresAt
	}
	tok := store.Token{ID: id, KeyID: key.ID, Hash: s.keys.Hash("token", bearer.Bytes()), IssuedAt: now, ExpiresAt: expires}
	if err := s.db.Tx(ctx, func(tx *store.Tx) error { return tx.CreateToken(ctx, tok) }); err != nil {
		return Token{}, fmt.Errorf("issue token: %w", err)
	}
	return Token{Bearer: bearer, ExpiresAt: expires, TeamName: team}, nil
}

// Authenticate checks a bearer token and returns who it belongs to. The token must be
// unexpired, its key not deleted or expired, and its user ACTIVE.
func (s *Service) Authenticate(ctx context.Context, bearer secret.Secret) (*Principal, error) {
	rest, ok := strings.CutPrefix(bearer.Reveal(), tokenPrefix)
	if !ok {
		return nil, errBadCredentials
	}
	id, _, ok := strings.Cut(rest, ".")
	if !ok || id == "" {
		return nil, errBadCredentials
	}
	g, err := s.db.TokenGrant(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errBadCredentials
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	now := s.now()
	if !hmac.Equal(g.Token.Hash, s.keys.Hash("token", bearer.Bytes())) || !now.Before(g.Token.ExpiresAt) ||
		g.User.Status != StatusActive || (g.Key.ExpiresAt != nil && !now.Before(*g.Key.ExpiresAt)) {
		return nil, errBadCredentials
	}
	return principalOf(g), nil
}

// principalOf is the caller a token grant stands for.
func principalOf(g store.TokenGrant) *Principal {
	roles := make([]Role, len(g.User.Roles))
	for i, r := range g.User.Roles {
		roles[i] = Role(r)
	}
	return &Principal{TeamID: g.Team.ID, TeamName: g.Team.Name, UserID: g.User.ID, UserName: g.User.Name,
		KeyID: g.Key.ID, Roles: roles, Folders: g.User.Folders, ExpiresAt: g.Token.ExpiresAt}
}

func roleStrings(rs []Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}
