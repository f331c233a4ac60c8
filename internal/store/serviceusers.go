package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// UserFilter selects the service users of a team. Empty strings match everything.
type UserFilter struct {
	TeamID     int64
	Contains   string // case-insensitive substring of the name
	StartsWith string // case-sensitive name prefix
	Status     string
	Limit      int
	Offset     int
}

// ListServiceUsers returns a team's service users ordered by name.
func (r Reader) ListServiceUsers(ctx context.Context, f UserFilter) ([]ServiceUser, error) {
	q := `SELECT ` + userColumns + ` FROM service_users u WHERE u.team_id = $1`
	args := []any{f.TeamID}
	if f.Contains != "" {
		args = append(args, "%"+likeEscape(strings.ToLower(f.Contains))+"%")
		q += ` AND lower(u.name) LIKE $` + strconv.Itoa(len(args)) + ` ESCAPE '\'`
	}
	if f.StartsWith != "" {
		args = append(args, f.StartsWith)
		q += ` AND substr(u.name, 1, length($` + strconv.Itoa(len(args)) + `)) = $` + strconv.Itoa(len(args))
	}
	if f.Status != "" {
		args = append(args, f.Status)
		q += ` AND u.status = $` + strconv.Itoa(len(args))
	}
	args = append(args, f.Limit, f.Offset)
	q += ` ORDER BY u.name LIMIT $` + strconv.Itoa(len(args)-1) + ` OFFSET $` + strconv.Itoa(len(args))
	rows, err := r.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ServiceUser
	for rows.Next() {
		u, err := scanServiceUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func scanServiceUser(row interface{ Scan(...any) error }) (ServiceUser, error) {
	var (
		u              ServiceUser
		roles, folders string
		created        int64
		deleted        sql.NullInt64
	)
	if err := row.Scan(scanUser(&u, &roles, &folders, &created, &deleted)...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return ServiceUser{}, ErrNotFound
		}
		return ServiceUser{}, err
	}
	return u, finishUser(&u, roles, folders, created, deleted)
}

// ServiceUserByName returns a team's service user.
func (r Reader) ServiceUserByName(ctx context.Context, teamID int64, name string) (ServiceUser, error) {
	return scanServiceUser(r.q.QueryRowContext(ctx,
		`SELECT `+userColumns+` FROM service_users u WHERE u.team_id = $1 AND u.name = $2`, teamID, name))
}

// UpdateServiceUser stores a user's status, roles, folders and deletion time.
func (t *Tx) UpdateServiceUser(ctx context.Context, u ServiceUser) error {
	roles, _ := json.Marshal(nonNil(u.Roles))
	folders, _ := json.Marshal(nonNil(u.Folders))
	return affectedOne(t.tx.ExecContext(ctx,
		`UPDATE service_users SET status = $1, roles = $2, folders = $3, deleted_at = $4 WHERE id = $5 AND team_id = $6`,
		u.Status, string(roles), string(folders), nullNanos(u.DeletedAt), u.ID, u.TeamID))
}

// APIKeys returns a user's API keys, oldest first.
func (r Reader) APIKeys(ctx context.Context, userID string) ([]APIKey, error) {
	rows, err := r.q.QueryContext(ctx,
		`SELECT id, service_user_id, secret_hash, issued_at, expires_at, last_used FROM api_keys
		  WHERE service_user_id = $1 ORDER BY issued_at, id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		var k APIKey
		var issued int64
		var expires, used sql.NullInt64
		if err := rows.Scan(&k.ID, &k.UserID, &k.SecretHash, &issued, &expires, &used); err != nil {
			return nil, err
		}
		k.IssuedAt, k.ExpiresAt, k.LastUsed = fromNanos(issued), fromNullNanos(expires), fromNullNanos(used)
		out = append(out, k)
	}
	return out, rows.Err()
}

// ExpireAPIKeys sets the expiry of a user's keys to at, unless they expire earlier already.
func (t *Tx) ExpireAPIKeys(ctx context.Context, userID string, at time.Time) error {
	_, err := t.tx.ExecContext(ctx,
		`UPDATE api_keys SET expires_at = $1 WHERE service_user_id = $2 AND (expires_at IS NULL OR expires_at > $1)`,
		nanos(at), userID)
	return err
}

// DeleteAPIKey deletes a user's key and, with it, every token minted from it.
func (t *Tx) DeleteAPIKey(ctx context.Context, userID, keyID string) error {
	return affectedOne(t.tx.ExecContext(ctx, `DELETE FROM api_keys WHERE id = $1 AND service_user_id = $2`, keyID, userID))
}
