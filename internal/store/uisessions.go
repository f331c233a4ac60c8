package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The web UI's sessions are transient: a copied vault starts with none, and everyone signs in
// again. Registered here, beside the table's queries, rather than in copy.go's list.
func init() { copySkipped = append(copySkipped, "ui_sessions") }

// UISession is a signed-in web UI session. Only the SHA-256 of its random id is stored; it
// stands for the bearer token minted at sign-in, through which it is resolved on every request.
type UISession struct {
	IDHash    []byte
	TokenID   string
	KeyID     string
	TeamID    int64
	CSRFToken string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// CreateUISession inserts a session and drops the expired sessions of its team.
func (t *Tx) CreateUISession(ctx context.Context, s UISession) error {
	if _, err := t.tx.ExecContext(ctx, `DELETE FROM ui_sessions WHERE team_id = $1 AND expires_at <= $2`,
		s.TeamID, nanos(s.CreatedAt)); err != nil {
		return fmt.Errorf("drop expired ui sessions: %w", err)
	}
	return t.insert(ctx, "ui session",
		`INSERT INTO ui_sessions (id_hash, token_id, key_id, team_id, csrf_token, created_at, expires_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		s.IDHash, s.TokenID, s.KeyID, s.TeamID, s.CSRFToken, nanos(s.CreatedAt), nanos(s.ExpiresAt))
}

// UISession returns the session whose id hashes to idHash (ErrNotFound when there is none).
func (r Reader) UISession(ctx context.Context, idHash []byte) (UISession, error) {
	s := UISession{IDHash: idHash}
	var created, expires int64
	err := r.q.QueryRowContext(ctx,
		`SELECT token_id, key_id, team_id, csrf_token, created_at, expires_at FROM ui_sessions WHERE id_hash = $1`,
		idHash).Scan(&s.TokenID, &s.KeyID, &s.TeamID, &s.CSRFToken, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return UISession{}, ErrNotFound
	}
	if err != nil {
		return UISession{}, fmt.Errorf("read ui session: %w", err)
	}
	s.CreatedAt, s.ExpiresAt = fromNanos(created), fromNanos(expires)
	return s, nil
}

// DeleteUISession deletes a session and the token it stands for (ErrNotFound when there is
// no such session).
func (t *Tx) DeleteUISession(ctx context.Context, idHash []byte) error {
	s, err := t.UISession(ctx, idHash)
	if err != nil {
		return err
	}
	if err := affectedOne(t.tx.ExecContext(ctx, `DELETE FROM ui_sessions WHERE id_hash = $1`, idHash)); err != nil {
		return fmt.Errorf("delete ui session: %w", err)
	}
	if _, err := t.tx.ExecContext(ctx, `DELETE FROM tokens WHERE id = $1`, s.TokenID); err != nil {
		return fmt.Errorf("delete the ui session's token: %w", err)
	}
	return nil
}
