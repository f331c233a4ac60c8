// Package ui is keyturn's web UI: server-rendered pages under /ui/ for the people who own the
// credentials. A person signs in with an API key and gets a server-side session; every page
// and action applies the same roles and folder grants as the API, every POST carries the
// session's CSRF token and passes an Origin check, and no secret is on a page unless revealed
// on request, which is audited.
package ui

import (
	"bytes"
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/vault"
)

// Prefix is the path the UI is served under.
const Prefix = "/ui/"

// CookieName is the session cookie's name; it holds the session's random id only.
const CookieName = "keyturn_ui"

// CSRFField is the name of the hidden form field that carries the session's CSRF token.
const CSRFField = "csrf_token"

// maxFormBytes bounds a form's body: the UI's forms are a few short fields.
const maxFormBytes = 64 << 10

// ContentSecurityPolicy is sent with every /ui/ response: no inline script or style, no
// framing, forms post only to keyturn itself.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

// ReferrerPolicy is "same-origin", not "no-referrer": under no-referrer a browser sends
// "Origin: null" with every form POST (Fetch, "append a request Origin header"), and the
// Origin check would refuse the UI's own forms. same-origin sends nothing to other sites.
const ReferrerPolicy = "same-origin"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Deps are the services the UI shows and acts through.
type Deps struct {
	Vault  *vault.Vault
	Auth   *auth.Service
	Engine *rotation.Engine
	Audit  *audit.Log
	Logger *slog.Logger
}

// Options configure the UI.
type Options struct {
	// Secure says browsers reach keyturn over https through a TLS proxy: the session cookie is
	// Secure, and a POST's Origin must be https. A request that came over TLS is treated so
	// whatever Secure says.
	Secure bool
}

type handler struct {
	Deps
	opt   Options
	pages map[string]*template.Template
}

// New returns the UI's handler, to be mounted at Prefix.
func New(d Deps, o Options) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{Deps: d, opt: o, pages: parsePages()}
	static, _ := fs.Sub(staticFS, "static")
	mux := http.NewServeMux()
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /ui/{$}", h.index)
	mux.HandleFunc("GET /ui/signin", h.signInForm)
	mux.HandleFunc("POST /ui/signin", h.signIn)
	mux.HandleFunc("GET /ui/signin/once", h.signInOnce)
	mux.Handle("POST /ui/signout", h.page(h.signOut))
	mux.Handle("GET /ui/records", h.page(h.records))
	mux.Handle("GET /ui/records/{uid}", h.page(h.record))
	mux.Handle("POST /ui/records/{uid}/reveal", h.page(h.reveal))
	mux.Handle("GET /ui/records/{uid}/rotate", h.page(h.rotateConfirm))
	mux.Handle("POST /ui/records/{uid}/rotate", h.page(h.rotate))
	mux.Handle("POST /ui/records/{uid}/pause", h.page(h.pause))
	mux.Handle("GET /ui/runs/{id}", h.page(h.run))
	mux.Handle("GET /ui/attention", h.page(h.attention))
	mux.Handle("GET /ui/audit", h.page(h.auditTrail))
	mux.Handle("GET /ui/audit/verify", h.page(h.auditVerify))
	mux.Handle("GET /ui/service-users", h.page(h.serviceUsers))
	mux.Handle("GET /ui/service-users/{name}/confirm", h.page(h.userConfirm))
	mux.Handle("POST /ui/service-users/{name}/keys", h.page(h.newKey))
	mux.Handle("POST /ui/service-users/{name}/keys/{key}/delete", h.page(h.deleteKey))
	mux.Handle("POST /ui/service-users/{name}/status", h.page(h.setUserStatus))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, nil, fault.NotFoundf("there is no page %s", r.URL.Path))
	})
	return h.secure(mux)
}

// secure sets the security headers on every response and turns a panic into an error page.
func (h *handler) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", ContentSecurityPolicy)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", ReferrerPolicy)
		hd.Set("Cache-Control", "no-store")
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				h.Logger.Error("ui panic", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				h.fail(w, r, nil, errors.New("ui handler panicked"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// session is the signed-in caller of a request.
type session struct {
	P    *auth.Principal
	CSRF string
}

// pageFunc serves a page for a signed-in caller.
type pageFunc func(w http.ResponseWriter, r *http.Request, s *session) error

// errSignedOut: no session, or one that has ended.
var errSignedOut = &fault.Error{Kind: fault.Unauthenticated, Code: "signed_out",
	Message: "You are not signed in, or your session has ended. Sign in again."}

// errForeignOrigin: a POST that did not come from keyturn's own pages.
var errForeignOrigin = &fault.Error{Kind: fault.Forbidden, Code: "foreign_origin",
	Message: "This form was not sent from keyturn's own pages (its Origin is another site's, or missing), so it was refused. Nothing was changed."}

// errBadCSRF: a POST without the session's CSRF token.
var errBadCSRF = &fault.Error{Kind: fault.Forbidden, Code: "csrf_token_invalid",
	Message: "This form did not carry your session's security token (it may be from an older page or another site), so it was refused. Nothing was changed. Reload the page and try again."}

// readPost checks a POST's origin and reads its form (bounded), answering the refusal itself
// and returning false when either fails.
func (h *handler) readPost(w http.ResponseWriter, r *http.Request) bool {
	if !h.sameOrigin(r) {
		h.fail(w, r, nil, errForeignOrigin)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, nil, fault.Invalidf("the form could not be read"))
		return false
	}
	return true
}

// page resolves the session (through the database, every time), and for a POST checks the
// Origin and the CSRF token before the handler runs.
func (h *handler) page(f pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		post := r.Method == http.MethodPost
		if post && !h.readPost(w, r) {
			return
		}
		s, err := h.session(r)
		if err != nil {
			if !post && fault.KindOf(err) == fault.Unauthenticated {
				http.Redirect(w, r, "/ui/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			h.fail(w, r, nil, err)
			return
		}
		if post && subtle.ConstantTimeCompare([]byte(r.PostForm.Get(CSRFField)), []byte(s.CSRF)) != 1 {
			h.fail(w, r, s, errBadCSRF)
			return
		}
		if err := f(w, r, s); err != nil {
			h.fail(w, r, s, err)
		}
	})
}

// session resolves the request's cookie to its caller.
func (h *handler) session(r *http.Request) (*session, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil, errSignedOut
	}
	p, csrf, err := h.Auth.AuthenticateSession(r.Context(), secret.FromString(c.Value))
	if err != nil {
		if fault.KindOf(err) == fault.Unauthenticated {
			return nil, errSignedOut
		}
		return nil, err
	}
	return &session{P: p, CSRF: csrf}, nil
}

// sameOrigin reports whether a POST came from a page of this server: its Origin header, or,
// when there is none, its Referer's origin, is the request's own scheme://host.
func (h *handler) sameOrigin(r *http.Request) bool {
	scheme := "http"
	if h.secureRequest(r) {
		scheme = "https"
	}
	want := scheme + "://" + r.Host
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		return o == want
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return false
	}
	u, err := url.Parse(ref)
	return err == nil && u.Scheme+"://"+u.Host == want
}

// secureRequest reports whether the browser reached keyturn over https: the connection is TLS,
// or Options.Secure says a TLS proxy fronts it.
func (h *handler) secureRequest(r *http.Request) bool { return r.TLS != nil || h.opt.Secure }

// setSessionCookie gives the browser its session id.
func (h *handler) setSessionCookie(w http.ResponseWriter, r *http.Request, id secret.Secret, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id.Reveal(), Path: Prefix, Expires: expires,
		HttpOnly: true, Secure: h.secureRequest(r), SameSite: http.SameSiteStrictMode})
}

// clearSessionCookie tells the browser to forget its session id.
func (h *handler) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, Secure: h.secureRequest(r), SameSite: http.SameSiteStrictMode})
}

// statusOf maps an error kind to the page's HTTP status.
var statusOf = map[fault.Kind]int{
	fault.Internal: http.StatusInternalServerError, fault.Invalid: http.StatusBadRequest,
	fault.NotFound: http.StatusNotFound, fault.Conflict: http.StatusConflict,
	fault.Unauthenticated: http.StatusUnauthorized, fault.Forbidden: http.StatusForbidden,
	fault.TooLarge: http.StatusRequestEntityTooLarge, fault.RateLimited: http.StatusTooManyRequests,
	fault.Unavailable: http.StatusServiceUnavailable, fault.MethodNotAllowed: http.StatusMethodNotAllowed,
}

var titleOf = map[fault.Kind]string{
	fault.Internal: "Something went wrong", fault.Invalid: "That request is not valid",
	fault.NotFound: "Not found", fault.Conflict: "Conflict", fault.Unauthenticated: "Please sign in",
	fault.Forbidden: "Not allowed", fault.TooLarge: "Too large", fault.RateLimited: "Too many attempts",
	fault.Unavailable: "Unavailable", fault.MethodNotAllowed: "Not allowed",
}

// fail renders err as a page a person can read. Internal errors are logged and shown only as
// "something went wrong"; no stack trace or cause reaches the page.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	fe, ok := fault.As(err)
	if !ok || fe.Kind == fault.Internal {
		h.Logger.Error("ui internal error", "path", r.URL.Path, "err", err)
		fe = &fault.Error{Kind: fault.Internal, Code: "internal",
			Message: "keyturn could not complete this request. The error has been logged; try again, or ask an administrator."}
	}
	if fe.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(fe.RetryAfter.Seconds()))))
	}
	status := statusOf[fe.Kind]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	h.render(w, r, status, "error", s, map[string]any{"Title": titleOf[fe.Kind], "Status": status,
		"Code": fe.Code, "Message": fe.Message, "SignIn": fe.Kind == fault.Unauthenticated})
}

// view is what every page template gets.
type view struct {
	S    *session
	Data any
	Path string
}

// render executes a page into a buffer first, so that a template error becomes an error page
// rather than half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, data any) {
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", view{S: s, Data: data, Path: r.URL.Path}); err != nil {
		h.Logger.Error("ui template", "page", name, "err", err)
		if name != "error" {
			h.fail(w, r, s, err)
			return
		}
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// need refuses a caller that holds none of the roles, as the API does.
func need(p *auth.Principal, roles ...auth.Role) error {
	for _, r := range roles {
		if p.Has(r) {
			return nil
		}
	}
	names := ""
	for i, r := range roles {
		if i > 0 {
			names += ", "
		}
		names += string(r)
	}
	return fault.New(fault.Forbidden, "forbidden", "This needs one of the roles: %s.", names)
}

func hasAny(p *auth.Principal, roles ...auth.Role) bool { return need(p, roles...) == nil }

// scope is what the caller may see: the same as the API's.
func scope(p *auth.Principal) vault.Scope {
	return vault.Scope{TeamID: p.TeamID, Folders: p.Folders, Actor: p.UserName, KeyID: p.KeyID}
}
