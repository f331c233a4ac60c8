package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/rotation"
)

// MaxWait is the longest ?wait= a rotate request may ask for.
const MaxWait = 5 * time.Minute

func (s *server) putRotation(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var in rotation.Settings
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	out, err := s.Engine.SetSettings(r.Context(), scope(p), r.PathValue("uid"), in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *server) getRotation(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	uid := r.PathValue("uid")
	info, err := s.Engine.Info(r.Context(), scope(p), uid)
	if err != nil {
		return err
	}
	// record_uid says which record the path named, which may have been by its title.
	return writeJSON(w, http.StatusOK, rotationInfo{RecordUID: uid, Info: info})
}

// rotationInfo is a record's rotation settings and state, as GET …/rotation answers them.
type rotationInfo struct {
	RecordUID string `json:"record_uid"`
	rotation.Info
}

type rotateResponse struct {
	RotationID string `json:"rotation_id"`
	Status     string `json:"status"`
}

func (s *server) rotate(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	wait, err := parseWait(r.URL.Query())
	if err != nil {
		return err
	}
	sc := scope(p)
	run, created, err := s.Engine.Rotate(r.Context(), sc, r.PathValue("uid"), rotation.TriggerOnDemand)
	if err != nil {
		return err
	}
	if wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		waited, err := s.Engine.Wait(ctx, sc, run.ID)
		cancel()
		if err != nil && ctx.Err() != nil && r.Context().Err() == nil {
			// The wait ran out during one of its reads, not the run: it goes on, so answer
			// with what it is now, as for a run that outlasts the wait.
			waited, err = s.Engine.Get(r.Context(), sc, run.ID)
		}
		if err != nil {
			return err
		}
		run = waited
		if run.Terminal() {
			return writeJSON(w, http.StatusOK, run)
		}
	}
	status := http.StatusAccepted
	if !created {
		status = http.StatusOK // the record's active run: there is never a second one
	}
	return writeJSON(w, status, rotateResponse{RotationID: run.ID, Status: run.Status})
}

// parseWait reads rotate's ?wait=: a Go duration (30s, 1m30s, 500ms) from 0 (do not wait)
// to MaxWait. Anything else is a 400 that says what was wrong.
func parseWait(q url.Values) (time.Duration, error) {
	if !q.Has("wait") {
		return 0, nil
	}
	v := q.Get("wait")
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, fault.Invalidf("wait must be a duration such as 30s or 2m (at most %s), not %q", MaxWait, v)
	case d < 0:
		return 0, fault.Invalidf("wait must not be negative, not %q", v)
	case d > MaxWait:
		return 0, fault.Invalidf("wait must be at most %s, not %q", MaxWait, v)
	}
	return d, nil
}

func (s *server) getRun(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	run, err := s.Engine.Get(r.Context(), scope(p), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, run)
}

func (s *server) listRuns(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q := r.URL.Query()
	count, offset, err := listPage(q)
	if err != nil {
		return err
	}
	runs, more, err := s.Engine.List(r.Context(), scope(p), rotation.RunFilter{
		RecordUID: q.Get("record_uid"), Status: q.Get("status"), Count: count, Offset: offset})
	if err != nil {
		return err
	}
	if more {
		setNextLink(w, r, count, offset)
	}
	return writeJSON(w, http.StatusOK, list[rotation.Run]{List: runs})
}

type scriptRequest struct {
	Name           string   `json:"name"`
	ContentBase64  string   `json:"content_base64"`
	Command        string   `json:"command"`
	CredentialUIDs []string `json:"credential_uids"`
	TimeoutS       int      `json:"timeout_s"`
}

func (s *server) addScript(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var in scriptRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	content, err := base64.StdEncoding.DecodeString(in.ContentBase64)
	if err != nil {
		return fault.Invalidf("content_base64 is not valid base64 (standard alphabet)")
	}
	info, err := s.Engine.AddScript(r.Context(), scope(p), r.PathValue("uid"), rotation.ScriptInput{
		Name: in.Name, Content: content, Command: in.Command, CredentialUIDs: in.CredentialUIDs,
		Timeout: time.Duration(in.TimeoutS) * time.Second,
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, info)
}

func (s *server) listScripts(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	scripts, err := s.Engine.Scripts(r.Context(), scope(p), r.PathValue("uid"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list[rotation.ScriptInfo]{List: scripts})
}

func (s *server) deleteScript(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if err := s.Engine.DeleteScript(r.Context(), scope(p), r.PathValue("uid"), r.PathValue("script_id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) scriptParams(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	reveal, err := boolParam(r, "reveal")
	if err != nil {
		return err
	}
	params, err := s.Engine.ScriptParams(r.Context(), scope(p), r.PathValue("uid"), reveal)
	if err != nil {
		return err
	}
	if reveal {
		if err := s.audit(p, audit.RecordSecretRead, r.PathValue("uid"), map[string]any{"via": "script_params"}); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, json.RawMessage(params))
}

func (s *server) auditEvents(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q := r.URL.Query()
	after, limit := int64(0), 100
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fault.Invalidf("after must be an event sequence number, not %q", v)
		}
		after = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return fault.Invalidf("limit must be a number from 1 to 1000, not %q", v)
		}
		limit = n
	}
	events, err := s.Audit.ListWithin(r.Context(), p.TeamID, p.Folders, after, limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"list": events})
}

// errFolderLimited: verifying the chain walks every event of the team, and reports breaks
// next to events a caller limited to folders may not see, so such a caller may not verify.
var errFolderLimited = &fault.Error{Kind: fault.Forbidden, Code: "folder_limited",
	Message: "audit verify checks every event of the team, and you are limited to folders: ask a security_admin without a folder limit"}

// verifyAudit checks the team's hash chain end to end (chain=team, the default), or the team's
// part of the vault-wide chain (chain=vault). The answer is 200 whether the chain holds or
// not: {"chain","ok":true,"events","head"} or {"chain","ok":false,"events","first_broken"}.
func (s *server) verifyAudit(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if len(p.Folders) > 0 {
		return errFolderLimited
	}
	verify := s.Audit.VerifyTeam
	switch v := r.URL.Query().Get("chain"); v {
	case "", audit.ChainTeam:
	case audit.ChainVault:
		verify = s.Audit.VerifyVault
	default:
		return fault.Invalidf("chain must be %s or %s, not %q", audit.ChainTeam, audit.ChainVault, v)
	}
	var o audit.VerifyOptions
	if v := r.URL.Query().Get("head"); v != "" {
		head, err := audit.ParseLink(v)
		if err != nil {
			return fault.Invalidf("head: %v", err)
		}
		o.Head = &head
	}
	rep, err := verify(r.Context(), p.TeamID, o)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}

func boolParam(r *http.Request, name string) (bool, error) {
	switch v := r.URL.Query().Get(name); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, fault.Invalidf("%s must be true or false, not %q", name, v)
	}
}
