package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

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

// UISignInLink is a one-time sign-in link of the web UI: only the SHA-256 of its random token
// is stored, and it opens one session for one API key before it expires.
type UISignInLink struct {
	TokenHash []byte
	KeyID     string
	TeamID    int64
	CreatedAt time.Time
	ExpiresAt time.Time
}

// CreateUISignInLink inserts a link and drops the expired links.
func (t *Tx) CreateUISignInLink(ctx context.Context, l UISignInLink) error {
	if _, err := t.tx.ExecContext(ctx, `DELETE FROM ui_signin_links WHERE expires_at <= $1`, nanos(l.CreatedAt)); err != nil {
		return fmt.Errorf("drop expired ui sign-in links: %w", err)
	}
	return t.insert(ctx, "ui sign-in link",
		`INSERT INTO ui_signin_links (token_hash, key_id, team_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		l.TokenHash, l.KeyID, l.TeamID, nanos(l.CreatedAt), nanos(l.ExpiresAt))
}

// ConsumeUISignInLink deletes the link whose token hashes to tokenHash and returns it, in one
// statement, so that of two uses at once only one gets it (ErrNotFound when there is none,
// or it was used). The caller checks its expiry.
func (t *Tx) ConsumeUISignInLink(ctx context.Context, tokenHash []byte) (UISignInLink, error) {
	l := UISignInLink{TokenHash: tokenHash}
	var created, expires int64
	err := t.tx.QueryRowContext(ctx, `DELETE FROM ui_signin_links WHERE token_hash = $1
		RETURNING key_id, team_id, created_at, expires_at`, tokenHash).Scan(&l.KeyID, &l.TeamID, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return UISignInLink{}, ErrNotFound
	}
	if err != nil {
		return UISignInLink{}, fmt.Errorf("use ui sign-in link: %w", err)
	}
	l.CreatedAt, l.ExpiresAt = fromNanos(created), fromNanos(expires)
	return l, nil
}
