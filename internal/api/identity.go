package api

import (
	"net/http"
	"time"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/secret"
)

const timeFormat = time.RFC3339Nano

type tokenRequest struct {
	KeyID     string `json:"key_id"`
	KeySecret string `json:"key_secret"`
}

type tokenResponse struct {
	BearerToken string `json:"bearer_token"`
	ExpiresAt   string `json:"expires_at"`
	TeamName    string `json:"team_name"`
}

func (s *server) serviceToken(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var in tokenRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.KeyID == "" || in.KeySecret == "" {
		return fault.New(fault.Invalid, "missing_required_field", "key_id and key_secret are required")
	}
	tok, err := s.Auth.IssueToken(r.Context(), r.PathValue("team"), in.KeyID, secret.FromString(in.KeySecret))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, tokenResponse{
		BearerToken: tok.Bearer.Reveal(), ExpiresAt: tok.ExpiresAt.Format(timeFormat), TeamName: tok.TeamName,
	})
}
