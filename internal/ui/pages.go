package ui

import (
	"bytes"
	"encoding/json"
	"html/template"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/schedule"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/vault"
)

// pageNames are the templates under templates/, each parsed with layout.html.
var pageNames = []string{"signin", "records", "record", "confirm", "run", "attention", "error",
	"audit", "auditverify", "serviceusers", "userconfirm", "newkey"}

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"when": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				if v.IsZero() {
					return "—"
				}
				return v.UTC().Format("2006-01-02 15:04:05 UTC")
			case *time.Time:
				if v == nil || v.IsZero() {
					return "—"
				}
				return v.UTC().Format("2006-01-02 15:04:05 UTC")
			}
			return "—"
		},
		"label": func(s string) string { return strings.ReplaceAll(s, "_", " ") },
		"inc":   func(i int) int { return i + 1 },
	}
	out := make(map[string]*template.Template, len(pageNames))
	for _, n := range pageNames {
		out[n] = template.Must(template.New(n).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html"))
	}
	return out
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	if _, err := h.session(r); err == nil {
		http.Redirect(w, r, "/ui/records", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
}

type signInData struct {
	Team, KeyID, Next, Error string
}

func (h *handler) signInForm(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "signin", nil, signInData{Team: r.URL.Query().Get("team"), Next: safeNext(r.URL.Query().Get("next"))})
}

// safeNext keeps a post-sign-in destination only when it is a page of the UI.
func safeNext(next string) string {
	if strings.HasPrefix(next, Prefix) && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return ""
}

// signIn exchanges an API key for a session, through the same check and failed-exchange
// limiter as POST /v1/teams/{team}/service_token.
func (h *handler) signIn(w http.ResponseWriter, r *http.Request) {
	if !h.readPost(w, r) {
		return
	}
	in := signInData{Team: strings.TrimSpace(r.PostForm.Get("team")), KeyID: strings.TrimSpace(r.PostForm.Get("key_id")),
		Next: safeNext(r.PostForm.Get("next"))}
	sec := r.PostForm.Get("key_secret")
	if in.Team == "" || in.KeyID == "" || sec == "" {
		in.Error = "Enter the team, the key id and the key secret."
		h.render(w, r, http.StatusBadRequest, "signin", nil, in)
		return
	}
	sess, err := h.Auth.SignIn(r.Context(), in.Team, in.KeyID, secret.FromString(sec), clientAddr(r))
	if err != nil {
		fe, ok := fault.As(err)
		if !ok || fe.Kind == fault.Internal {
			h.fail(w, r, nil, err)
			return
		}
		in.Error = fe.Message
		if fe.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(fe.RetryAfter.Seconds()))))
		}
		if fe.Kind == fault.Unauthenticated {
			in.Error = "The team, key id or secret is wrong, or the key has expired."
		}
		h.render(w, r, statusOf[fe.Kind], "signin", nil, in)
		return
	}
	h.setSessionCookie(w, r, sess.ID, sess.Principal.ExpiresAt)
	next := in.Next
	if next == "" {
		next = "/ui/records"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signInOnce opens a session from a one-time sign-in link (keyturn sandbox prints one): the
// link's token is used up whatever happens, and only its hash was stored. A link that does not
// open a session leads to the sign-in form.
func (h *handler) signInOnce(w http.ResponseWriter, r *http.Request) {
	sess, err := h.Auth.SignInOnce(r.Context(), secret.FromString(r.URL.Query().Get("token")))
	if err != nil {
		fe, ok := fault.As(err)
		if !ok || fe.Kind == fault.Internal {
			h.fail(w, r, nil, err)
			return
		}
		h.render(w, r, statusOf[fe.Kind], "signin", nil, signInData{Error: fe.Message})
		return
	}
	h.setSessionCookie(w, r, sess.ID, sess.Principal.ExpiresAt)
	http.Redirect(w, r, "/ui/records", http.StatusSeeOther)
}

// clientAddr is the caller's IP address, as the API's token exchange counts it.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *handler) signOut(w http.ResponseWriter, r *http.Request, _ *session) error {
	c, err := r.Cookie(CookieName)
	if err == nil {
		if err := h.Auth.SignOut(r.Context(), secret.FromString(c.Value)); err != nil {
			return err
		}
	}
	h.clearSessionCookie(w, r)
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
	return nil
}

// Badges: a managed record's rotation status.
const (
	badgeOK             = "ok"
	badgeFailed         = "failed"
	badgeNeedsAttention = "needs_attention"
	badgeDrifted        = "drifted"
	badgePaused         = "paused"
	badgeRotating       = "rotating"
	badgeNever          = "never_rotated"
)

var badges = []string{badgeOK, badgeFailed, badgeNeedsAttention, badgeDrifted, badgePaused, badgeRotating, badgeNever}

// badgeOf is the one status shown for a record's rotation, the most pressing first.
func badgeOf(info rotation.Info) string {
	switch {
	case info.State == rotation.StatusQueued || info.State == rotation.StatusRunning:
		return badgeRotating
	case info.State == rotation.StatusNeedsAttention:
		return badgeNeedsAttention
	case info.State == rotation.StatusFailed:
		return badgeFailed
	case info.Drift != nil && info.Drift.State == rotation.DriftDrifted:
		return badgeDrifted
	case info.Paused:
		return badgePaused
	case info.State == rotation.StatusSucceeded:
		return badgeOK
	}
	return badgeNever
}

// rotationView is a managed record's rotation, as the pages show it.
type rotationView struct {
	Info         rotation.Info
	Badge        string
	Schedule     string
	LastRun      *rotation.Run
	LastRotation *time.Time
}

// rotationOf reads a record's rotation; nil when it has no rotation settings.
func (h *handler) rotationOf(r *http.Request, p *auth.Principal, uid string) (*rotationView, error) {
	info, err := h.Engine.Info(r.Context(), scope(p), uid)
	if fault.KindOf(err) == fault.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v := &rotationView{Info: info, Badge: badgeOf(info), Schedule: describeSchedule(info.Schedule)}
	if info.LastRotationID != "" {
		run, err := h.Engine.Get(r.Context(), scope(p), info.LastRotationID)
		if err != nil && fault.KindOf(err) != fault.NotFound {
			return nil, err
		}
		if err == nil {
			v.LastRun = &run
			v.LastRotation = run.FinishedAt
		}
	}
	return v, nil
}

// describeSchedule says a schedule in words ("every day at 03:00 (Europe/Berlin)").
func describeSchedule(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return "no schedule: on demand only"
	}
	s, err := schedule.Load(raw)
	if err != nil {
		return "a schedule keyturn cannot read"
	}
	return s.String()
}

type recordRow struct {
	vault.Summary
	Rotation *rotationView
}

type recordsData struct {
	Rows                   []recordRow
	Folder, Type, Status   string
	Types, Statuses        []string
	ShowRotation, Truncate bool
}

// maxListed bounds the records one page lists.
const maxListed = 500

func (h *handler) records(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	d := recordsData{Folder: q.Get("folder"), Type: q.Get("type"), Status: q.Get("status"), Types: vault.Types, Statuses: badges,
		ShowRotation: hasAny(s.P, auth.PAMAdmin, auth.SecurityAdmin)}
	if err := vault.ValidateFolder(d.Folder); err != nil {
		return err
	}
	if d.Status != "" && !slices.Contains(badges, d.Status) && d.Status != "unmanaged" {
		return fault.Invalidf("status must be one of %s or unmanaged, not %q", strings.Join(badges, ", "), d.Status)
	}
	if d.Status != "" && !d.ShowRotation {
		return need(s.P, auth.PAMAdmin, auth.SecurityAdmin)
	}
	items, more, err := h.Vault.List(r.Context(), scope(s.P), vault.ListOptions{Type: d.Type, Folder: d.Folder, Count: maxListed})
	if err != nil {
		return err
	}
	d.Truncate = more
	for _, it := range items {
		row := recordRow{Summary: it}
		if d.ShowRotation {
			if row.Rotation, err = h.rotationOf(r, s.P, it.UID); err != nil {
				return err
			}
		}
		if d.Status != "" {
			badge := "unmanaged"
			if row.Rotation != nil {
				badge = row.Rotation.Badge
			}
			if badge != d.Status {
				continue
			}
		}
		d.Rows = append(d.Rows, row)
	}
	h.render(w, r, http.StatusOK, "records", s, d)
	return nil
}

// fieldView is a record's field as a page shows it: its value only when it is not secret,
// or when revealed.
type fieldView struct {
	Type, Label string
	Values      []string
	Masked      bool
}

// plainFields are the field types whose values are not secrets and are shown.
var plainFields = []string{"login", "url", "email", "host"}

type recordData struct {
	Meta       vault.Summary
	Fields     []fieldView
	ShowFields bool
	CanReveal  bool
	Revealed   bool
	Notes      string
	Rotation   *rotationView
	ShowRot    bool
	CanRotate  bool
	Versions   []vault.PasswordVersion
	Runs       []rotation.Run
	Scripts    []rotation.ScriptInfo
	Params     string // what the scripts receive on stdin, secrets masked; "" when none
}

func (h *handler) lookup(r *http.Request, p *auth.Principal) (string, error) {
	return h.Vault.Lookup(r.Context(), scope(p), r.PathValue("uid"))
}

func (h *handler) record(w http.ResponseWriter, r *http.Request, s *session) error {
	d, err := h.recordData(r, s.P, false)
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "record", s, d)
	return nil
}

// reveal shows a record with its secret values, once: the response to this POST, audited as
// the API audits reading a record's values (record_secret_read), before anything is shown.
func (h *handler) reveal(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.PAMAdmin, auth.SecretsReader); err != nil {
		return err
	}
	d, err := h.recordData(r, s.P, true)
	if err != nil {
		return err
	}
	if h.Audit != nil {
		if err := h.Audit.Record(s.P.TeamID, scope(s.P).Event(audit.RecordSecretRead, d.Meta.UID,
			map[string]any{"via": "ui", "revision": d.Meta.Revision})); err != nil {
			h.Logger.Error("audit event refused", "type", audit.RecordSecretRead, "record", d.Meta.UID, "err", err)
			return &fault.Error{Kind: fault.Unavailable, Code: "audit_unavailable",
				Message: "The audit trail could not be written, so nothing is revealed until it can be."}
		}
	}
	h.render(w, r, http.StatusOK, "record", s, d)
	return nil
}

func (h *handler) recordData(r *http.Request, p *auth.Principal, reveal bool) (recordData, error) {
	uid, err := h.lookup(r, p)
	if err != nil {
		return recordData{}, err
	}
	meta, err := h.Vault.Meta(r.Context(), scope(p), uid)
	if err != nil {
		return recordData{}, err
	}
	d := recordData{Meta: meta, Revealed: reveal,
		ShowFields: hasAny(p, auth.PAMAdmin, auth.SecretsReader), ShowRot: hasAny(p, auth.PAMAdmin, auth.SecurityAdmin),
		CanRotate: p.Has(auth.PAMAdmin)}
	d.CanReveal = d.ShowFields
	if d.ShowFields {
		rec, err := h.Vault.Get(r.Context(), scope(p), uid)
		if err != nil {
			return recordData{}, err
		}
		for _, group := range [][]vault.Field{rec.Fields, rec.Custom} {
			for _, f := range group {
				d.Fields = append(d.Fields, viewField(f, reveal))
			}
		}
		if reveal {
			d.Notes = rec.Notes
		}
	}
	if d.ShowRot {
		if d.Rotation, err = h.rotationOf(r, p, uid); err != nil {
			return recordData{}, err
		}
		if d.Runs, _, err = h.Engine.List(r.Context(), scope(p), rotation.RunFilter{RecordUID: uid, Count: 10}); err != nil {
			return recordData{}, err
		}
	}
	if p.Has(auth.PAMAdmin) {
		if d.Versions, err = h.Vault.Versions(r.Context(), scope(p), uid); err != nil {
			return recordData{}, err
		}
		for i := range d.Versions {
			d.Versions[i].Value = secret.Secret{} // the page shows states, never values
		}
		if d.Rotation != nil {
			if d.Scripts, err = h.Engine.Scripts(r.Context(), scope(p), uid); err != nil {
				return recordData{}, err
			}
		}
		if len(d.Scripts) > 0 && meta.Type == "pamUser" {
			raw, err := h.Engine.ScriptParams(r.Context(), scope(p), uid, false)
			if err != nil {
				return recordData{}, err
			}
			var buf bytes.Buffer
			if json.Indent(&buf, raw, "", "  ") == nil {
				d.Params = buf.String()
			}
		}
	}
	return d, nil
}

// viewField masks a field's values unless its type is plainly not secret or reveal is set.
func viewField(f vault.Field, reveal bool) fieldView {
	v := fieldView{Type: f.Type, Label: f.Label, Masked: !reveal && !slices.Contains(plainFields, f.Type)}
	for _, raw := range f.Value {
		if v.Masked {
			v.Values = append(v.Values, "••••••••")
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			v.Values = append(v.Values, s)
		} else {
			v.Values = append(v.Values, string(raw))
		}
	}
	return v
}

func (h *handler) rotateConfirm(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.PAMAdmin); err != nil {
		return err
	}
	uid, err := h.lookup(r, s.P)
	if err != nil {
		return err
	}
	meta, err := h.Vault.Meta(r.Context(), scope(s.P), uid)
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "confirm", s, meta)
	return nil
}

// rotate starts a rotation now, as POST …/records/{uid}/rotate does, and shows its run.
func (h *handler) rotate(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.PAMAdmin); err != nil {
		return err
	}
	uid, err := h.lookup(r, s.P)
	if err != nil {
		return err
	}
	run, _, err := h.Engine.Rotate(r.Context(), scope(s.P), uid, rotation.TriggerOnDemand)
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/runs/"+run.ID, http.StatusSeeOther)
	return nil
}

// pause stops a record's scheduled rotations, or starts them again (paused=false), as
// "keyturn rotation pause|resume" does: a read-modify-write of the settings, refused (409)
// when they changed since the page showed them (the form's revision).
func (h *handler) pause(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.PAMAdmin); err != nil {
		return err
	}
	var pause bool
	switch v := r.PostForm.Get("paused"); v {
	case "true":
		pause = true
	case "false":
	default:
		return fault.Invalidf("paused must be true or false, not %q", v)
	}
	rev, err := strconv.ParseInt(r.PostForm.Get("revision"), 10, 64)
	if err != nil || rev < 1 {
		return fault.Invalidf("revision must be the settings' revision the page showed")
	}
	uid, err := h.lookup(r, s.P)
	if err != nil {
		return err
	}
	info, err := h.Engine.Info(r.Context(), scope(s.P), uid)
	if err != nil {
		return err
	}
	set := info.Settings
	set.Paused, set.NextRunAt, set.Revision = pause, nil, rev
	if _, err := h.Engine.SetSettings(r.Context(), scope(s.P), uid, set); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/records/"+uid, http.StatusSeeOther)
	return nil
}

type runData struct {
	Run      rotation.Run
	Record   *vault.Summary
	Timeline []timelineStep
	Advice   string
}

type timelineStep struct {
	What string
	At   *time.Time
}

func (h *handler) run(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.PAMAdmin, auth.SecurityAdmin); err != nil {
		return err
	}
	run, err := h.Engine.Get(r.Context(), scope(s.P), r.PathValue("id"))
	if err != nil {
		return err
	}
	d := runData{Run: run, Advice: adviceFor(run)}
	if meta, err := h.Vault.Meta(r.Context(), scope(s.P), run.RecordUID); err == nil {
		d.Record = &meta
	}
	for i, st := range run.States {
		what := label(st.State)
		if i == 0 {
			what += " (" + label(run.Trigger) + ")"
		}
		d.Timeline = append(d.Timeline, timelineStep{What: what, At: &st.At})
	}
	if !run.Terminal() {
		d.Timeline = append(d.Timeline, timelineStep{What: "running…"})
	}
	h.render(w, r, http.StatusOK, "run", s, d)
	return nil
}

func label(s string) string { return strings.ReplaceAll(s, "_", " ") }

// adviceFor says what a person should do about a run that did not succeed.
func adviceFor(run rotation.Run) string {
	switch run.Status {
	case rotation.StatusNeedsAttention:
		return "keyturn could not confirm which password the target holds. Both the current and the pending " +
			"password are kept in the vault. Read the log below, check the account on the target, then rotate again."
	case rotation.StatusFailed:
		return "The rotation failed and the target kept its password; the vault's current password is still valid. " +
			"Read the error and the log, fix the cause (settings, scripts, the target's reachability), then rotate again."
	}
	return ""
}

type attentionRow struct {
	Run    rotation.Run
	Record *vault.Summary
	Advice string
}

// attention lists the runs that need a person: every needs_attention run, and failed runs
// that are still their record's latest.
func (h *handler) attention(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := need(s.P, auth.PAMAdmin, auth.SecurityAdmin); err != nil {
		return err
	}
	var rows []attentionRow
	for _, status := range []string{rotation.StatusNeedsAttention, rotation.StatusFailed} {
		runs, _, err := h.Engine.List(r.Context(), scope(s.P), rotation.RunFilter{Status: status, Count: 200})
		if err != nil {
			return err
		}
		for _, run := range runs {
			row := attentionRow{Run: run, Advice: adviceFor(run)}
			if meta, err := h.Vault.Meta(r.Context(), scope(s.P), run.RecordUID); err == nil {
				row.Record = &meta
			}
			if status == rotation.StatusFailed {
				info, err := h.Engine.Info(r.Context(), scope(s.P), run.RecordUID)
				if err != nil && fault.KindOf(err) != fault.NotFound {
					return err
				}
				if err != nil || info.LastRotationID != run.ID {
					continue
				}
			}
			rows = append(rows, row)
		}
	}
	h.render(w, r, http.StatusOK, "attention", s, rows)
	return nil
}
