package ui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/store"
)

// auditPageSize is how many events one page of the audit trail shows.
const auditPageSize = 50

// auditTypes are the event types the audit page's filter offers.
var auditTypes = []string{
	audit.RotationRequested, audit.RotationOnDemandOK, audit.RotationOnDemandFail, audit.RotationScheduledOK,
	audit.RotationScheduledFail, audit.RotationNeedsAttention, audit.RotationCreated, audit.RotationUpdated,
	audit.RotationDisabled, audit.RotationDrift, audit.ScriptAdded, audit.ScriptDeleted,
	audit.RotationResourceUpdated, audit.RotationResourceKept,
	audit.RecordCreated, audit.RecordUpdated, audit.RecordDeleted, audit.RecordSecretRead,
	audit.ServiceUserCreated, audit.ServiceUserUpdated, audit.APIKeyRotated, audit.APIKeyDeleted,
}

// timeInput is the layout of an <input type="datetime-local">, read as UTC.
const timeInput = "2006-01-02T15:04"

type auditRow struct {
	audit.Event
	Details string // the details as JSON (they never hold a secret)
}

type auditData struct {
	Rows                                   []auditRow
	Type, Record, Actor, Since, Until      string
	Types                                  []string
	Older, Newest                          string // links to the next (older) page and to the newest; "" when none
	FolderLimited, CanVerify, FilterActive bool
}

// parseWhen reads a filter's time: a datetime-local value (UTC) or RFC 3339.
func parseWhen(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(timeInput, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fault.Invalidf("%s must be a date and time such as 2026-12-03T14:00 (UTC), not %q", name, v)
}

// auditTrail lists the team's events, newest first, as GET …/audit_events lets the caller
// see them: security_admin only, and a caller limited to folders sees only the events of the
// records in them.
func (h *handler) auditTrail(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.SecurityAdmin); err != nil {
		return err
	}
	q := r.URL.Query()
	d := auditData{Type: q.Get("type"), Record: strings.TrimSpace(q.Get("record")), Actor: strings.TrimSpace(q.Get("actor")),
		Since: q.Get("since"), Until: q.Get("until"), Types: auditTypes,
		FolderLimited: len(s.P.Folders) > 0, CanVerify: len(s.P.Folders) == 0}
	f := store.AuditFilter{Folders: s.P.Folders, Type: d.Type, Actor: d.Actor, Limit: auditPageSize + 1}
	if d.Type != "" && !isAuditType(d.Type) {
		return fault.Invalidf("type must be one of %s, not %q", strings.Join(auditTypes, ", "), d.Type)
	}
	var err error
	if f.Since, err = parseWhen("since", d.Since); err != nil {
		return err
	}
	if f.Until, err = parseWhen("until", d.Until); err != nil {
		return err
	}
	if v := q.Get("before"); v != "" {
		if f.Before, err = strconv.ParseInt(v, 10, 64); err != nil || f.Before < 1 {
			return fault.Invalidf("before must be an event sequence number, not %q", v)
		}
	}
	if d.Record != "" {
		// A title or uid of a record the caller can see (a title several share is refused, as
		// the API refuses it); otherwise the text is taken as the uid of a record that may
		// since have been deleted.
		f.RecordUID = d.Record
		if uid, err := h.Vault.Lookup(r.Context(), scope(s.P), d.Record); err == nil {
			f.RecordUID = uid
		} else if fault.KindOf(err) != fault.NotFound {
			return err
		}
	}
	events, err := h.Audit.Page(r.Context(), s.P.TeamID, f)
	if err != nil {
		return err
	}
	keep := url.Values{}
	for k, v := range map[string]string{"type": d.Type, "record": d.Record, "actor": d.Actor, "since": d.Since, "until": d.Until} {
		if v != "" {
			keep.Set(k, v)
		}
	}
	d.FilterActive = len(keep) > 0
	if len(events) > auditPageSize {
		events = events[:auditPageSize]
		older := url.Values{}
		for k, v := range keep {
			older[k] = v
		}
		older.Set("before", strconv.FormatInt(events[len(events)-1].Seq, 10))
		d.Older = "/ui/audit?" + older.Encode()
	}
	if f.Before > 0 {
		d.Newest = "/ui/audit"
		if len(keep) > 0 {
			d.Newest += "?" + keep.Encode()
		}
	}
	for _, e := range events {
		row := auditRow{Event: e}
		if len(e.Details) > 0 {
			raw, _ := json.Marshal(e.Details)
			row.Details = string(raw)
		}
		d.Rows = append(d.Rows, row)
	}
	h.render(w, r, http.StatusOK, "audit", s, d)
	return nil
}

func isAuditType(t string) bool {
	for _, a := range auditTypes {
		if a == t {
			return true
		}
	}
	return false
}

// errFolderLimited is the API's answer to a caller limited to folders who asks to verify.
var errFolderLimited = &fault.Error{Kind: fault.Forbidden, Code: "folder_limited",
	Message: "Verifying the chain checks every event of the team, and you are limited to folders: ask a security_admin without a folder limit."}

// auditVerify checks the team's hash chain (chain=team, the default) or the team's part of
// the vault-wide chain (chain=vault), as GET …/audit/verify does, and shows the report.
func (h *handler) auditVerify(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.SecurityAdmin); err != nil {
		return err
	}
	if len(s.P.Folders) > 0 {
		return errFolderLimited
	}
	verify := h.Audit.VerifyTeam
	switch v := r.URL.Query().Get("chain"); v {
	case "", audit.ChainTeam:
	case audit.ChainVault:
		verify = h.Audit.VerifyVault
	default:
		return fault.Invalidf("chain must be %s or %s, not %q", audit.ChainTeam, audit.ChainVault, v)
	}
	rep, err := verify(r.Context(), s.P.TeamID, audit.VerifyOptions{})
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "auditverify", s, rep)
	return nil
}

type userRow struct {
	auth.User
	Keys       []auth.Key
	KeysHidden string // why the keys are not listed ("" when they are)
	Self       bool
}

type usersData struct {
	Rows []userRow
	More bool
}

// maxUsers bounds the service users one page lists.
const maxUsers = 200

// serviceUsers lists the team's service users and their keys, for a resource_admin, as the
// API's service-user routes do (a user whose grant is wider than the caller's has its keys
// withheld, as GET …/keys refuses them).
func (h *handler) serviceUsers(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.ResourceAdmin); err != nil {
		return err
	}
	users, more, err := h.Auth.ListUsers(r.Context(), s.P, auth.UserFilter{Count: maxUsers})
	if err != nil {
		return err
	}
	d := usersData{More: more}
	for _, u := range users {
		row := userRow{User: u, Self: u.Name == s.P.UserName}
		if u.Status != auth.StatusDeleted {
			row.Keys, err = h.Auth.ListKeys(r.Context(), s.P, u.Name)
			if fe, ok := fault.As(err); ok && fe.Kind == fault.Forbidden {
				row.KeysHidden, err = fe.Message, nil
			}
			if err != nil {
				return err
			}
		}
		d.Rows = append(d.Rows, row)
	}
	h.render(w, r, http.StatusOK, "serviceusers", s, d)
	return nil
}

// confirmData is a confirmation page for an action on a service user.
type confirmData struct {
	Title, Message, Action, Button, ButtonID, Status string
}

// userConfirm asks before an action on a service user: issue a key (action=new-key), delete
// one (action=delete-key, key=ID), or set the user's status (action=status, status=…).
func (h *handler) userConfirm(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.ResourceAdmin); err != nil {
		return err
	}
	name := r.PathValue("name")
	u, err := h.Auth.GetUser(r.Context(), s.P, name)
	if err != nil {
		return err
	}
	base := "/ui/service-users/" + url.PathEscape(u.Name)
	q := r.URL.Query()
	var d confirmData
	switch q.Get("action") {
	case "new-key":
		d = confirmData{Title: "Issue a new key for " + u.Name + "?", Action: base + "/keys", Button: "Issue the key", ButtonID: "new-key-confirm",
			Message: "The new key's secret is shown once, on the next page. The user's older keys stop working in " +
				strconv.Itoa(int(auth.OldKeyGrace.Hours())) + " hours."}
	case "delete-key":
		key := q.Get("key")
		if key == "" {
			return fault.Invalidf("key must name the key to delete")
		}
		d = confirmData{Title: "Delete key " + key + " of " + u.Name + "?", Action: base + "/keys/" + url.PathEscape(key) + "/delete",
			Button: "Delete the key", ButtonID: "delete-key-confirm",
			Message: "The key and every token and session signed in with it stop working at once."}
	case "status":
		st := q.Get("status")
		switch st {
		case auth.StatusDisabled:
			d = confirmData{Title: "Disable " + u.Name + "?", Button: "Disable", ButtonID: "disable-confirm",
				Message: "Its keys, tokens and sessions stop working at once, until it is enabled again."}
		case auth.StatusActive:
			d = confirmData{Title: "Enable " + u.Name + "?", Button: "Enable", ButtonID: "enable-confirm",
				Message: "Its unexpired keys work again."}
		default:
			return fault.Invalidf("status must be %s or %s, not %q", auth.StatusActive, auth.StatusDisabled, st)
		}
		d.Action, d.Status = base+"/status", st
	default:
		return fault.Invalidf("action must be new-key, delete-key or status")
	}
	h.render(w, r, http.StatusOK, "userconfirm", s, d)
	return nil
}

type newKeyData struct {
	User   string
	Key    auth.Key
	Secret string
}

// newKey issues a key for a service user, as POST …/service_users/{name}/keys does, and shows
// its secret on this response only: it is not stored, logged or audited, and no later page
// shows it.
func (h *handler) newKey(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.ResourceAdmin); err != nil {
		return err
	}
	name := r.PathValue("name")
	k, err := h.Auth.RotateKeys(r.Context(), s.P, name)
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "newkey", s, newKeyData{User: name, Key: k.Key, Secret: k.Secret.Reveal()})
	return nil
}

// deleteKey deletes a key, as DELETE …/service_users/{name}/keys/{key_id} does.
func (h *handler) deleteKey(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.ResourceAdmin); err != nil {
		return err
	}
	if err := h.Auth.DeleteKey(r.Context(), s.P, r.PathValue("name"), r.PathValue("key")); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/service-users", http.StatusSeeOther)
	return nil
}

// setUserStatus disables or enables a service user, as PUT …/service_users/{name} with a
// status does.
func (h *handler) setUserStatus(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.ResourceAdmin); err != nil {
		return err
	}
	st := r.PostForm.Get("status")
	if st != auth.StatusActive && st != auth.StatusDisabled {
		return fault.Invalidf("status must be %s or %s, not %q", auth.StatusActive, auth.StatusDisabled, st)
	}
	if _, err := h.Auth.UpdateUser(r.Context(), s.P, r.PathValue("name"), auth.UserChange{Status: &st}); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/service-users", http.StatusSeeOther)
	return nil
}
