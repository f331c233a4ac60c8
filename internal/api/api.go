// Package api is keyturn's HTTP API: JSON handlers over the vault and auth services, with
// authentication and role checks declared on every route.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/vault"
)

// MaxBodyBytes is the largest request body accepted.
const MaxBodyBytes = 1 << 20

// MaxTokenBodyBytes is the largest body of a token exchange: a key id and a secret need far
// less, and nothing bigger reaches the failure limiter.
const MaxTokenBodyBytes = 8 << 10

// Deps are what the API serves.
type Deps struct {
	Vault  *vault.Vault
	Auth   *auth.Service
	Engine *rotation.Engine
	Audit  *audit.Log
	Ready  func(context.Context) error // nil when the service can take requests; a fault.Unavailable error names what is wrong
	Logger *slog.Logger
	Meter  Meter // may be nil
}

// Meter records requests and serves the metrics.
type Meter interface {
	Request(route string, code int, took time.Duration)
	Handler() http.Handler
}

// handler serves one route for an authenticated principal (nil on public routes).
type handler func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error

// route declares a path, who may call it, and its handler. A route is public only when it
// says so; otherwise a valid bearer token of the path's team is required, and, when roles is
// not empty, one of those roles.
type route struct {
	method  string
	path    string
	public  bool
	roles   []auth.Role
	maxBody int64 // the largest body accepted; 0: MaxBodyBytes
	h       handler
	doc     op // for the OpenAPI document
}

type server struct {
	Deps
}

// anyRole marks routes open to every authenticated caller of the team.
var anyRole []auth.Role

// New returns the API's HTTP handler.
func New(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{Deps: d}
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.method+" "+rt.path, s.wrap(rt))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// The path may be a route that takes other methods: 405 with Allow, not 404.
		var allow []string
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); m != r.Method && pattern != "/" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, d.Logger, methodNotAllowed(r, allow))
			return
		}
		writeError(w, d.Logger, notFoundRoute(r))
	})
	return s.logRequests(mux)
}

func (s *server) routes() []route {
	pamOrReader := []auth.Role{auth.PAMAdmin, auth.SecretsReader}
	pam := []auth.Role{auth.PAMAdmin}
	identityReaders := []auth.Role{auth.PAMAdmin, auth.ResourceAdmin, auth.SecurityAdmin}
	resource := []auth.Role{auth.ResourceAdmin}
	pamOrSecurity := []auth.Role{auth.PAMAdmin, auth.SecurityAdmin}
	security := []auth.Role{auth.SecurityAdmin}
	return []route{
		{method: "GET", path: "/healthz", public: true, h: s.healthz, doc: op{summary: "Liveness: the process answers", status: 200}},
		{method: "GET", path: "/readyz", public: true, h: s.readyz, doc: op{summary: "Readiness: the database answers and the keys are unsealed", status: 200}},
		{method: "GET", path: "/openapi.json", public: true, h: s.openapi, doc: op{summary: "This OpenAPI 3 document", status: 200}},
		{method: "GET", path: "/metrics", public: true, h: s.metrics, doc: op{summary: "Prometheus metrics (text format)", status: 200, text: true}},
		{method: "POST", path: "/v1/teams/{team}/service_token", public: true, maxBody: MaxTokenBodyBytes, h: s.serviceToken, doc: op{summary: "Exchange an API key for a bearer token (400 invalid_key_id when key_id is not a UUID; 413 beyond 8 KiB; 429 with Retry-After after 10 failures of the key id from the caller's address in a minute)", in: "TokenRequest", out: "TokenResponse", status: 200}},

		{method: "GET", path: "/v1/teams/{team}/service_users", roles: identityReaders, h: s.listServiceUsers, doc: op{summary: "List service users", out: "ServiceUser", list: true, status: 200, query: []string{"contains", "starts_with", "status", "count", "offset"}}},
		{method: "POST", path: "/v1/teams/{team}/service_users", roles: resource, h: s.createServiceUser, doc: op{summary: "Create a service user (403 grant_exceeds_own for roles or folders beyond the caller's)", in: "ServiceUserInput", out: "ServiceUser", status: 201}},
		{method: "GET", path: "/v1/teams/{team}/service_users/{user_name}", roles: identityReaders, h: s.getServiceUser, doc: op{summary: "Get a service user", out: "ServiceUser", status: 200}},
		{method: "PUT", path: "/v1/teams/{team}/service_users/{user_name}", roles: resource, h: s.updateServiceUser, doc: op{summary: "Change a service user's status, roles or folders (403 service_user_out_of_grant when its grant is wider than the caller's, grant_exceeds_own, cannot_change_self)", in: "ServiceUserInput", out: "ServiceUser", status: 200}},
		{method: "GET", path: "/v1/teams/{team}/service_users/{user_name}/keys", roles: resource, h: s.listKeys, doc: op{summary: "List a service user's API keys, never their secrets (403 service_user_out_of_grant when its grant is wider than the caller's)", out: "Key", list: true, status: 200}},
		{method: "POST", path: "/v1/teams/{team}/service_users/{user_name}/keys", roles: resource, h: s.rotateKeys, doc: op{summary: "Issue a new API key; older keys expire in 48 h (403 service_user_out_of_grant when its grant is wider than the caller's)", out: "NewKey", status: 200}},
		{method: "DELETE", path: "/v1/teams/{team}/service_users/{user_name}/keys/{key_id}", roles: resource, h: s.deleteKey, doc: op{summary: "Delete an API key and every token minted from it (403 service_user_out_of_grant when its grant is wider than the caller's)", status: 204}},

		{method: "POST", path: "/v1/teams/{team}/records", roles: pam, h: s.createRecord, doc: op{summary: "Create a record", in: "RecordInput", out: "Record", status: 201}},
		{method: "GET", path: "/v1/teams/{team}/records", roles: anyRole, h: s.listRecords, doc: op{summary: "List records (metadata only)", out: "RecordSummary", list: true, status: 200, query: []string{"type", "folder", "title", "count", "offset"}}},
		{method: "GET", path: "/v1/teams/{team}/records/{uid}", roles: pamOrReader, h: s.getRecord, doc: op{summary: "Get a record with its values (audited)", out: "Record", status: 200}},
		{method: "PUT", path: "/v1/teams/{team}/records/{uid}", roles: pam, h: s.updateRecord, doc: op{summary: "Replace a record (revision required; 409 when stale)", in: "RecordInput", out: "Record", status: 200}},
		{method: "DELETE", path: "/v1/teams/{team}/records/{uid}", roles: pam, h: s.deleteRecord, doc: op{summary: "Delete a record", status: 204}},
		{method: "GET", path: "/v1/teams/{team}/records/{uid}/versions", roles: pam, h: s.recordVersions, doc: op{summary: "List a record's password versions (values with reveal=true, audited)", out: "PasswordVersion", list: true, status: 200, query: []string{"reveal"}}},
		{method: "GET", path: "/v1/teams/{team}/notation", roles: pamOrReader, h: s.notation, doc: op{summary: "Resolve Keeper notation (audited)", out: "NotationValue", status: 200, query: []string{"ref"}}},

		{method: "POST", path: "/v1/teams/{team}/records/{uid}/scripts", roles: pam, h: s.addScript, doc: op{summary: "Attach a PAM script", in: "ScriptInput", out: "Script", status: 201}},
		{method: "GET", path: "/v1/teams/{team}/records/{uid}/scripts", roles: pam, h: s.listScripts, doc: op{summary: "List a record's PAM scripts in the order they run", out: "Script", list: true, status: 200}},
		{method: "DELETE", path: "/v1/teams/{team}/records/{uid}/scripts/{script_id}", roles: pam, h: s.deleteScript, doc: op{summary: "Detach a PAM script", status: 204}},
		{method: "GET", path: "/v1/teams/{team}/records/{uid}/script_params", roles: pam, h: s.scriptParams, doc: op{summary: "The params a script would receive (secrets masked unless reveal=true)", out: "ScriptParams", status: 200, query: []string{"reveal"}}},
		{method: "PUT", path: "/v1/teams/{team}/records/{uid}/rotation", roles: pam, h: s.putRotation, doc: op{summary: "Set a pamUser's rotation settings (409 when the revision given is not the stored one)", in: "RotationSettings", out: "RotationSettings", status: 200}},
		{method: "GET", path: "/v1/teams/{team}/records/{uid}/rotation", roles: pamOrSecurity, h: s.getRotation, doc: op{summary: "Rotation settings with state, next run and drift", out: "RotationInfo", status: 200}},
		{method: "POST", path: "/v1/teams/{team}/records/{uid}/rotate", roles: pam, h: s.rotate, doc: op{summary: "Rotate now (202; 200 with the active run, or with the finished run when wait ends it)", out: "RotateAccepted", status: 202, query: []string{"wait"}}},
		{method: "GET", path: "/v1/teams/{team}/rotations/{id}", roles: pamOrSecurity, h: s.getRun, doc: op{summary: "Get a rotation run with its (redacted) exec log", out: "Run", status: 200}},
		{method: "GET", path: "/v1/teams/{team}/rotations", roles: pamOrSecurity, h: s.listRuns, doc: op{summary: "List rotation runs, newest first", out: "Run", list: true, status: 200, query: []string{"record_uid", "status", "count", "offset"}}},
		{method: "GET", path: "/v1/teams/{team}/audit_events", roles: security, h: s.auditEvents, doc: op{summary: "Audit events after a sequence number; a caller limited to folders sees only the events of records in them", out: "AuditEvent", list: true, status: 200, query: []string{"after", "limit"}}},
		{method: "GET", path: "/v1/teams/{team}/audit/verify", roles: security, h: s.verifyAudit, doc: op{summary: "Check the team's audit hash chain end to end (chain=team, the default: the team's own chain, team_seq 1, 2, 3, …; chain=vault: the team's events along the vault-wide chain through every team's): ok with the event count and head, or the first broken link (seq, team_seq) and why (hash_mismatch: altered; sequence_gap: removed; link_mismatch: inserted or reordered; tail_truncated, head_missing: the newest events removed). head=SEQ:ID checks that an earlier head is still there. 403 folder_limited for a caller limited to folders", out: "AuditVerification", status: 200, query: []string{"chain", "head"}}},
	}
}

// Route describes a route and who may call it.
type Route struct {
	Method string
	Path   string
	Public bool        // no token needed
	Roles  []auth.Role // any one of them is needed; empty = any authenticated caller of the team
}

// Routes lists every route the API serves.
func Routes() []Route {
	var out []Route
	for _, rt := range (&server{}).routes() {
		out = append(out, Route{Method: rt.method, Path: rt.path, Public: rt.public, Roles: rt.roles})
	}
	return out
}

// wrap applies the route's declared access rule, the body limit and error rendering, and
// counts the request under its route pattern.
func (s *server) wrap(rt route) http.Handler {
	pattern := rt.method + " " + rt.path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Meter != nil {
			start, rec := time.Now(), &statusRecorder{ResponseWriter: w, status: http.StatusOK}
			w = rec
			defer func() { s.Meter.Request(pattern, rec.status, time.Since(start)) }()
		}
		limit := rt.maxBody
		if limit <= 0 {
			limit = MaxBodyBytes
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		var p *auth.Principal
		if !rt.public {
			var err error
			if p, err = s.authorize(r, rt.roles); err != nil {
				writeError(w, s.Logger, err)
				return
			}
		}
		if rt.recordPath() {
			// {uid} takes a record's uid or its exact title: one resolver for every route.
			uid, err := s.Vault.Lookup(r.Context(), scope(p), r.PathValue("uid"))
			if err != nil {
				writeError(w, s.Logger, err)
				return
			}
			r.SetPathValue("uid", uid)
		}
		if err := rt.h(w, r, p); err != nil {
			writeError(w, s.Logger, err)
		}
	})
}

// recordPath reports whether the route names a record: its {uid} is a uid or a title.
func (rt route) recordPath() bool { return !rt.public && strings.Contains(rt.path, "{uid}") }

// authorize checks the bearer token, that it belongs to the path's team, and the roles.
func (s *server) authorize(r *http.Request, roles []auth.Role) (*auth.Principal, error) {
	bearer, ok := bearerToken(r)
	if !ok {
		return nil, errNoToken
	}
	p, err := s.Auth.Authenticate(r.Context(), bearer)
	if err != nil {
		return nil, err
	}
	if p.TeamName != r.PathValue("team") {
		return nil, errWrongTeam
	}
	if len(roles) == 0 {
		return p, nil
	}
	for _, role := range roles {
		if p.Has(role) {
			return p, nil
		}
	}
	return nil, forbidden(roles)
}

func bearerToken(r *http.Request) (secret.Secret, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return secret.Secret{}, false
	}
	return secret.FromString(h[len(prefix):]), true
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) metrics(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if s.Meter == nil {
		return fault.NotFoundf("metrics are not enabled")
	}
	s.Meter.Handler().ServeHTTP(w, r)
	return nil
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if s.Ready != nil {
		if err := s.Ready(r.Context()); err != nil {
			s.Logger.Warn("not ready", "err", err)
			var fe *fault.Error
			if errors.As(err, &fe) && fe.Kind == fault.Unavailable {
				return &fault.Error{Kind: fe.Kind, Code: fe.Code, Message: fe.Message}
			}
			return errNotReady
		}
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "database": "reachable", "keys": "unsealed"})
}

// audit records what a caller did, after it was done; the actor is the service user and the
// key it used. Details never hold a secret. It fails while the audit trail cannot be written,
// and a handler then answers 503 instead of revealing anything.
func (s *server) audit(p *auth.Principal, typ, recordUID string, details map[string]any) error {
	if s.Audit == nil {
		return nil
	}
	err := s.Audit.Record(p.TeamID, scope(p).Event(typ, recordUID, details))
	if err != nil {
		s.Logger.Error("audit event refused", "type", typ, "record", recordUID, "err", err)
		return errAuditFailed
	}
	return nil
}

// statusRecorder remembers the status code for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// logRequests logs each request (method, path without query, status, duration) and turns a
// panic into a 500.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.Error("panic", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeError(rec, s.Logger, errPanic)
			}
			if s.Logger.Enabled(r.Context(), slog.LevelDebug) {
				s.Logger.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
					"duration_ms", float64(time.Since(start).Microseconds())/1000)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}
