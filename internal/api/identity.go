package api

import (
	"net"
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

// clientAddr is the caller's IP address (proxy headers are not trusted).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *server) serviceToken(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var in tokenRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.KeyID == "" || in.KeySecret == "" {
		return fault.New(fault.Invalid, "missing_required_field", "key_id and key_secret are required")
	}
	tok, err := s.Auth.IssueToken(r.Context(), r.PathValue("team"), in.KeyID, secret.FromString(in.KeySecret), clientAddr(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, tokenResponse{
		BearerToken: tok.Bearer.Reveal(), ExpiresAt: tok.ExpiresAt.Format(timeFormat), TeamName: tok.TeamName,
	})
}

func (s *server) listServiceUsers(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q := r.URL.Query()
	count, offset, err := listPage(q)
	if err != nil {
		return err
	}
	users, more, err := s.Auth.ListUsers(r.Context(), p, auth.UserFilter{
		Contains: q.Get("contains"), StartsWith: q.Get("starts_with"), Status: q.Get("status"),
		Count: count, Offset: offset,
	})
	if err != nil {
		return err
	}
	if more {
		setNextLink(w, r, count, offset)
	}
	return writeJSON(w, http.StatusOK, list[auth.User]{List: users})
}

type userInput struct {
	Name    string    `json:"name"`
	Status  *string   `json:"status"`
	Roles   *[]string `json:"roles"`
	Folders *[]string `json:"folders"`
}

func (in userInput) roles() (*[]auth.Role, error) {
	if in.Roles == nil {
		return nil, nil
	}
	roles, err := auth.ParseRoles(*in.Roles)
	return &roles, err
}

func (s *server) createServiceUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var in userInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Name == "" {
		return fault.New(fault.Invalid, "missing_required_field", "name is required")
	}
	if in.Status != nil && *in.Status != auth.StatusActive {
		return fault.Invalidf("a new service user is ACTIVE; set another status with PUT")
	}
	roles, err := in.roles()
	if err != nil {
		return err
	}
	var folders []string
	if in.Folders != nil {
		folders = *in.Folders
	}
	var rs []auth.Role
	if roles != nil {
		rs = *roles
	}
	u, err := s.Auth.CreateUser(r.Context(), p, in.Name, rs, folders)
	if err != nil {
		return err
	}
	w.Header().Set("Location", r.URL.Path+"/"+u.Name)
	return writeJSON(w, http.StatusCreated, u)
}

func (s *server) getServiceUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	u, err := s.Auth.GetUser(r.Context(), p, r.PathValue("user_name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, u)
}

func (s *server) updateServiceUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var in userInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	name := r.PathValue("user_name")
	if in.Name != "" && in.Name != name {
		return fault.Invalidf("service users cannot be renamed (name %q differs from %q in the path)", in.Name, name)
	}
	roles, err := in.roles()
	if err != nil {
		return err
	}
	if in.Status == nil && roles == nil && in.Folders == nil {
		return fault.New(fault.Invalid, "missing_required_field", "give at least one of status, roles or folders")
	}
	u, err := s.Auth.UpdateUser(r.Context(), p, name, auth.UserChange{Status: in.Status, Roles: roles, Folders: in.Folders})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, u)
}

func (s *server) listKeys(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	keys, err := s.Auth.ListKeys(r.Context(), p, r.PathValue("user_name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list[auth.Key]{List: keys})
}

type newKeyResponse struct {
	auth.Key
	Secret string `json:"secret"`
}

func (s *server) rotateKeys(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	k, err := s.Auth.RotateKeys(r.Context(), p, r.PathValue("user_name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, newKeyResponse{Key: k.Key, Secret: k.Secret.Reveal()})
}

func (s *server) deleteKey(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if err := s.Auth.DeleteKey(r.Context(), p, r.PathValue("user_name"), r.PathValue("key_id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
