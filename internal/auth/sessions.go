package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/fault"

	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
)

// Session is a freshly opened web UI session: ID goes into the browser's cookie and nowhere
// else; CSRFToken goes into every form the session's pages hold.
type Session struct {
	ID        secret.Secret
	CSRFToken string
	Principal *Principal
}

// SignIn exchanges an API key for a web UI session. It is IssueToken (the same checks, the
// same failed-exchange limiter, the same one answer to any wrong team, key id or secret)
// followed by a session that stands for the token minted: the session lives as long as the
// token and dies with it, its key or its user.
func (s *Service) SignIn(ctx context.Context, team, keyID string, keySecret secret.Secret, client string) (Session, error) {
	tok, err := s.IssueToken(ctx, team, keyID, keySecret, client)
	if err != nil {
		return Session{}, err
	}
	return s.openSession(ctx, tok)
}

// openSession opens a session that stands for a token just minted.
func (s *Service) openSession(ctx context.Context, tok Token) (Session, error) {
	tokenID, ok := tokenIDOf(tok.Bearer)
	if !ok {
		return Session{}, fmt.Errorf("sign in: the token minted has no id")
	}
	g, err := s.db.TokenGrant(ctx, tokenID)
	if err != nil {
		return Session{}, fmt.Errorf("sign in: read the token minted: %w", err)
	}
	id, csrf := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(id)
	_, _ = rand.Read(csrf)
	sid := secret.FromString(base64.RawURLEncoding.EncodeToString(id))
	clear(id)
	sess := store.UISession{IDHash: SessionIDHash(sid), TokenID: tokenID, KeyID: g.Key.ID, TeamID: g.Team.ID,
		CSRFToken: base64.RawURLEncoding.EncodeToString(csrf), CreatedAt: s.now().UTC(), ExpiresAt: g.Token.ExpiresAt}
	if err := s.db.Tx(ctx, func(tx *store.Tx) error { return tx.CreateUISession(ctx, sess) }); err != nil {
		return Session{}, fmt.Errorf("sign in: %w", err)
	}
	return Session{ID: sid, CSRFToken: sess.CSRFToken, Principal: principalOf(g)}, nil
}

// AuthenticateSession resolves a web UI session id to its caller and the session's CSRF
// token. It reads the session's token through the same lookup as Authenticate, every time
// (nothing is cached), so an expired token, a deleted or expired key, or a user no longer
// ACTIVE ends the session at once, on every node.
func (s *Service) AuthenticateSession(ctx context.Context, id secret.Secret) (*Principal, string, error) {
	if id.IsZero() {
		return nil, "", errBadCredentials
	}
	sess, err := s.db.UISession(ctx, SessionIDHash(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", errBadCredentials
	}
	if err != nil {
		return nil, "", fmt.Errorf("authenticate session: %w", err)
	}
	g, err := s.db.TokenGrant(ctx, sess.TokenID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", errBadCredentials
	}
	if err != nil {
		return nil, "", fmt.Errorf("authenticate session: %w", err)
	}
	now := s.now()
	if !now.Before(sess.ExpiresAt) || !now.Before(g.Token.ExpiresAt) || g.User.Status != StatusActive ||
		(g.Key.ExpiresAt != nil && !now.Before(*g.Key.ExpiresAt)) || g.Team.ID != sess.TeamID {
		return nil, "", errBadCredentials
	}
	return principalOf(g), sess.CSRFToken, nil
}

// SignOut ends a web UI session and the token it stands for. Ending one that does not exist
// (any more) is not an error.
func (s *Service) SignOut(ctx context.Context, id secret.Secret) error {
	err := s.db.Tx(ctx, func(tx *store.Tx) error { return tx.DeleteUISession(ctx, SessionIDHash(id)) })
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("sign out: %w", err)
	}
	return nil
}

// SessionIDHash is what the database stores of a session id: its SHA-256.
func SessionIDHash(id secret.Secret) []byte {
	h := sha256.Sum256(id.Bytes())
	return h[:]
}

// tokenIDOf returns the id part of a bearer token (kt1.<id>.<random>).
func tokenIDOf(bearer secret.Secret) (string, bool) {
	rest, ok := strings.CutPrefix(bearer.Reveal(), tokenPrefix)
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, ".")
	return id, ok && id != ""
}

// SignInLinkTTL is how long a one-time sign-in link stays usable.
const SignInLinkTTL = 15 * time.Minute

// errBadSignInLink is the one answer to a sign-in link that is unknown, used, expired, or
// whose key or user no longer signs in.
var errBadSignInLink = &fault.Error{Kind: fault.Unauthenticated, Code: "signin_link_invalid",
	Message: "This sign-in link is not valid: it was used already, it expired, or its key no longer signs in. Sign in with an API key."}

// CreateSignInLink checks an API key with its secret, as IssueToken does, and returns the
// token of a one-time sign-in link for it and when it expires: the token opens one web UI
// session for that key (SignInOnce) within SignInLinkTTL. Only its SHA-256 is stored.
func (s *Service) CreateSignInLink(ctx context.Context, team, keyID string, keySecret secret.Secret) (secret.Secret, time.Time, error) {
	if _, err := parseKeyID(keyID); err != nil {
		return secret.Secret{}, time.Time{}, err
	}
	now := s.now().UTC()
	key, user, t, err := s.db.APIKeyWithUser(ctx, team, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return secret.Secret{}, time.Time{}, errBadCredentials
	}
	if err != nil {
		return secret.Secret{}, time.Time{}, fmt.Errorf("create sign-in link: %w", err)
	}
	if !hmac.Equal(key.SecretHash, s.keyHash(keyID, keySecret)) || user.Status != StatusActive ||
		(key.ExpiresAt != nil && !now.Before(*key.ExpiresAt)) {
		return secret.Secret{}, time.Time{}, errBadCredentials
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	tok := secret.FromString(base64.RawURLEncoding.EncodeToString(raw))
	clear(raw)
	l := store.UISignInLink{TokenHash: SessionIDHash(tok), KeyID: key.ID, TeamID: t.ID, CreatedAt: now, ExpiresAt: now.Add(SignInLinkTTL)}
	if err := s.db.Tx(ctx, func(tx *store.Tx) error { return tx.CreateUISignInLink(ctx, l) }); err != nil {
		return secret.Secret{}, time.Time{}, fmt.Errorf("create sign-in link: %w", err)
	}
	return tok, l.ExpiresAt, nil
}

// SignInOnce uses a one-time sign-in link: the link is deleted whatever follows, and, when it
// had not expired and its key and user still sign in, a web UI session for its key is opened,
// as SignIn opens one.
func (s *Service) SignInOnce(ctx context.Context, link secret.Secret) (Session, error) {
	if link.IsZero() {
		return Session{}, errBadSignInLink
	}
	var l store.UISignInLink
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		var err error
		l, err = tx.ConsumeUISignInLink(ctx, SessionIDHash(link))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return Session{}, errBadSignInLink
	}
	if err != nil {
		return Session{}, fmt.Errorf("sign in with a link: %w", err)
	}
	now := s.now()
	if !now.Before(l.ExpiresAt) {
		return Session{}, errBadSignInLink
	}
	team, err := s.db.TeamByID(ctx, l.TeamID)
	if err != nil {
		return Session{}, fmt.Errorf("sign in with a link: %w", err)
	}
	key, user, _, err := s.db.APIKeyWithUser(ctx, team.Name, l.KeyID)
	if errors.Is(err, store.ErrNotFound) {
		return Session{}, errBadSignInLink
	}
	if err != nil {
		return Session{}, fmt.Errorf("sign in with a link: %w", err)
	}
	if user.Status != StatusActive || (key.ExpiresAt != nil && !now.Before(*key.ExpiresAt)) {
		return Session{}, errBadSignInLink
	}
	tok, err := s.mintToken(ctx, key, team.Name, now)
	if err != nil {
		return Session{}, err
	}
	return s.openSession(ctx, tok)
}
