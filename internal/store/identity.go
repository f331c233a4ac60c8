package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Team is a tenant; nothing of one team is visible to another.
type Team struct {
	ID        int64
	Name      string
	CreatedAt time.Time
}

// ServiceUser is a machine identity of a team.
type ServiceUser struct {
	ID        string
	TeamID    int64
	Name      string
	Status    string
	Roles     []string
	Folders   []string
	CreatedAt time.Time
	DeletedAt *time.Time
}

// APIKey is a service user's key; only a keyed hash of its secret is stored.
type APIKey struct {
	ID         string
	UserID     string
	SecretHash []byte
	IssuedAt   time.Time
	ExpiresAt  *time.Time
	LastUsed   *time.Time
}

// Token is a bearer token minted from an API key; only a keyed hash of it is stored.
type Token struct {
	ID        string
	KeyID     string
	Hash      []byte
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// TokenGrant is a token with the key, user and team behind it.
type TokenGrant struct {
	Token Token
	Key   APIKey
	User  ServiceUser
	Team  Team
}

// SaveKeyring stores the wrapped master key of a term.
func (t *Tx) SaveKeyring(ctx context.Context, term uint32, wrappedJSON []byte, now time.Time) error {
	return t.insert(ctx, "keyring term",
		`INSERT INTO keyring (term, wrapped, created_at) VALUES ($1, $2, $3)`,
		int64(term), string(wrappedJSON), nanos(now))
}

// LatestKeyring returns the wrapped master key of the newest term.
func (r Reader) LatestKeyring(ctx context.Context) ([]byte, error) {
	var s string
	err := r.q.QueryRowContext(ctx, `SELECT wrapped FROM keyring ORDER BY term DESC LIMIT 1`).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return []byte(s), err
}

// CreateTeam inserts a team and returns it with its id.
func (t *Tx) CreateTeam(ctx context.Context, name string, now time.Time) (Team, error) {
	team := Team{Name: name, CreatedAt: now.UTC()}
	q := `INSERT INTO teams (name, created_at) VALUES ($1, $2) RETURNING id`
	if t.d.postgres { // see Tx.insert
		q = `INSERT INTO teams (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING id`
	}
	err := t.tx.QueryRowContext(ctx, q, name, nanos(now)).Scan(&team.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return team, fmt.Errorf("team %s already exists: %w", name, ErrConflict)
	}
	return team, wrapConflict(err, "team "+name)
}

// TeamByName returns a team.
func (r Reader) TeamByName(ctx context.Context, name string) (Team, error) {
	var team Team
	var created int64
	err := r.q.QueryRowContext(ctx, `SELECT id, name, created_at FROM teams WHERE name = $1`, name).
		Scan(&team.ID, &team.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Team{}, ErrNotFound
	}
	team.CreatedAt = fromNanos(created)
	return team, err
}

// TeamByID returns a team.
func (r Reader) TeamByID(ctx context.Context, id int64) (Team, error) {
	var team Team
	var created int64
	err := r.q.QueryRowContext(ctx, `SELECT id, name, created_at FROM teams WHERE id = $1`, id).
		Scan(&team.ID, &team.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Team{}, ErrNotFound
	}
	team.CreatedAt = fromNanos(created)
	return team, err
}

// CreateServiceUser inserts a service user.
func (t *Tx) CreateServiceUser(ctx context.Context, u ServiceUser) error {
	roles, _ := json.Marshal(nonNil(u.Roles))
	folders, _ := json.Marshal(nonNil(u.Folders))
	return t.insert(ctx, "service user "+u.Name,
		`INSERT INTO service_users (id, team_id, name, status, roles, folders, created_at, deleted_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		u.ID, u.TeamID, u.Name, u.Status, string(roles), string(folders), nanos(u.CreatedAt), nullNanos(u.DeletedAt))
}

// CreateAPIKey inserts an API key.
func (t *Tx) CreateAPIKey(ctx context.Context, k APIKey) error {
	return t.insert(ctx, "api key",
		`INSERT INTO api_keys (id, service_user_id, secret_hash, issued_at, expires_at, last_used)
		 VALUES ($1, $2, $3, $4, $5, $6)`,
		k.ID, k.UserID, k.SecretHash, nanos(k.IssuedAt), nullNanos(k.ExpiresAt), nullNanos(k.LastUsed))
}

const userColumns = `u.id, u.team_id, u.name, u.status, u.roles, u.folders, u.created_at, u.deleted_at`

func scanUser(u *ServiceUser, roles, folders *string, created *int64, deleted *sql.NullInt64) []any {
	return []any{&u.ID, &u.TeamID, &u.Name, &u.Status, roles, folders, created, deleted}
}

func finishUser(u *ServiceUser, roles, folders string, created int64, deleted sql.NullInt64) error {
	u.CreatedAt, u.DeletedAt = fromNanos(created), fromNullNanos(deleted)
	if err := json.Unmarshal([]byte(roles), &u.Roles); err != nil {
		return fmt.Errorf("service user %s roles: %w", u.ID, err)
	}
	if err := json.Unmarshal([]byte(folders), &u.Folders); err != nil {
		return fmt.Errorf("service user %s folders: %w", u.ID, err)
	}
	return nil
}

// APIKeyWithUser returns a key, its user and the user's team, for a key id within a team.
func (r Reader) APIKeyWithUser(ctx context.Context, teamName, keyID string) (APIKey, ServiceUser, Team, error) {
	var (
		k                       APIKey
		u                       ServiceUser
		team                    Team
		roles, folders          string
		issued, uCreated        int64
		expires, used, uDeleted sql.NullInt64
	)
	dest := append([]any{&k.ID, &k.SecretHash, &issued, &expires, &used},
		scanUser(&u, &roles, &folders, &uCreated, &uDeleted)...)
	dest = append(dest, &team.Name)
	err := r.q.QueryRowContext(ctx,
		`SELECT k.id, k.secret_hash, k.issued_at, k.expires_at, k.last_used, `+userColumns+`, t.name
		   FROM api_keys k JOIN service_users u ON u.id = k.service_user_id JOIN teams t ON t.id = u.team_id
		  WHERE k.id = $1 AND t.name = $2`, keyID, teamName).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return APIKey{}, ServiceUser{}, Team{}, ErrNotFound
	}
	if err != nil {
		return APIKey{}, ServiceUser{}, Team{}, err
	}
	k.UserID, k.IssuedAt, k.ExpiresAt, k.LastUsed = u.ID, fromNanos(issued), fromNullNanos(expires), fromNullNanos(used)
	team.ID = u.TeamID
	return k, u, team, finishUser(&u, roles, folders, uCreated, uDeleted)
}

// CreateToken inserts a token, marks its key used and drops the key's expired tokens.
func (t *Tx) CreateToken(ctx context.Context, tok Token) error {
	if _, err := t.tx.ExecContext(ctx, `DELETE FROM tokens WHERE key_id = $1 AND expires_at <= $2`,
		tok.KeyID, nanos(tok.IssuedAt)); err != nil {
		return err
	}
	if _, err := t.tx.ExecContext(ctx, `UPDATE api_keys SET last_used = $1 WHERE id = $2`,
		nanos(tok.IssuedAt), tok.KeyID); err != nil {
		return err
	}
	return t.insert(ctx, "token",
		`INSERT INTO tokens (id, key_id, hash, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		tok.ID, tok.KeyID, tok.Hash, nanos(tok.IssuedAt), nanos(tok.ExpiresAt))
}

// TokenGrant returns a token with its key, user and team.
func (r Reader) TokenGrant(ctx context.Context, tokenID string) (TokenGrant, error) {
	var (
		g                      TokenGrant
		roles, folders         string
		tIssued, tExp, kIssued int64
		uCreated, teamCreated  int64
		kExp, kUsed, uDeleted  sql.NullInt64
	)
	dest := []any{&g.Token.ID, &g.Token.KeyID, &g.Token.Hash, &tIssued, &tExp,
		&kIssued, &kExp, &kUsed}
	dest = append(dest, scanUser(&g.User, &roles, &folders, &uCreated, &uDeleted)...)
	dest = append(dest, &g.Team.Name, &teamCreated)
	err := r.q.QueryRowContext(ctx,
		`SELECT t.id, t.key_id, t.hash, t.issued_at, t.expires_at, k.issued_at, k.expires_at, k.last_used, `+
			userColumns+`, tm.name, tm.created_at
		   FROM tokens t JOIN api_keys k ON k.id = t.key_id
		   JOIN service_users u ON u.id = k.service_user_id JOIN teams tm ON tm.id = u.team_id
		  WHERE t.id = $1`, tokenID).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return TokenGrant{}, ErrNotFound
	}
	if err != nil {
		return TokenGrant{}, err
	}
	g.Token.IssuedAt, g.Token.ExpiresAt = fromNanos(tIssued), fromNanos(tExp)
	g.Key = APIKey{ID: g.Token.KeyID, UserID: g.User.ID, IssuedAt: fromNanos(kIssued),
		ExpiresAt: fromNullNanos(kExp), LastUsed: fromNullNanos(kUsed)}
	g.Team.ID, g.Team.CreatedAt = g.User.TeamID, fromNanos(teamCreated)
	return g, finishUser(&g.User, roles, folders, uCreated, uDeleted)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
