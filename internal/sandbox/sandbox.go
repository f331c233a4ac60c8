// Package sandbox runs keyturn against its Okta and OPA emulator on a temporary vault: it
// seeds the scenarios of the seed documents, rotates each once, and checks every new
// credential against the emulator. It is `keyturn sandbox`, a newcomer's first run and an
// end-to-end check.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/keyturn/keyturn/examples"
	"github.com/keyturn/keyturn/internal/app"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/connector/okta"
	"github.com/keyturn/keyturn/internal/connector/rest"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/vault"
)

// Team is the sandbox's team name.
const Team = "sandbox"

// Options configure a sandbox.
type Options struct {
	Listen   string           // the API's address; default 127.0.0.1:0
	Logger   *slog.Logger     // default: discard
	Emulator emulator.Options // default: 10 users; BaseURL is always the emulator's own
	Workers  int              // rotations at once (default: the engine's)
	Rotation rotation.Options // engine options (Workers above wins when set)
}

// Sandbox is a running emulator and keyturn server over a temporary vault.
type Sandbox struct {
	Emulator *emulator.Emulator
	OrgURL   string // the emulator's base URL (Okta org and OPA)
	APIURL   string // keyturn's API
	Dir      string // the temporary data directory
	Creds    auth.Credentials
	Services *app.App

	dv        *datadir.Vault
	emuSrv    *http.Server
	apiSrv    *http.Server
	scope     vault.Scope
	scenarios []*scenario
	okta      *okta.Connector
}

// Start starts the emulator and a keyturn server on a fresh temporary vault.
func Start(ctx context.Context, o Options) (_ *Sandbox, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	s := &Sandbox{okta: okta.New(okta.Options{})}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	emuLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("emulator: %w", err)
	}
	s.OrgURL = "http://" + emuLn.Addr().String()
	eo := o.Emulator
	if eo.Users == 0 {
		eo.Users = 10
	}
	if eo.OPATeam == "" {
		eo.OPATeam = "sandbox-opa"
	}
	eo.BaseURL = s.OrgURL
	s.Emulator = emulator.New(eo)
	s.emuSrv = &http.Server{Handler: s.Emulator, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.emuSrv.Serve(emuLn) }()

	if s.Dir, err = os.MkdirTemp("", "keyturn-sandbox-"); err != nil {
		return nil, err
	}
	data := s.Dir + "/data"
	if s.Creds, err = datadir.Init(ctx, data, Team, datadir.Unseal{}); err != nil {
		return nil, err
	}
	if s.dv, err = datadir.OpenExclusive(ctx, data, datadir.Unseal{}); err != nil {
		return nil, err
	}
	team, err := s.dv.DB.TeamByName(ctx, Team)
	if err != nil {
		return nil, err
	}
	s.scope = vault.Scope{TeamID: team.ID, Actor: "sandbox"}
	ro := o.Rotation
	if ro.BackoffBase == 0 {
		ro.BackoffBase = 100 * time.Millisecond
	}
	if o.Workers != 0 {
		ro.Workers = o.Workers
	}
	s.Services = app.New(s.dv, app.Options{Logger: o.Logger, Rotation: ro})
	if err := s.Services.Start(ctx); err != nil {
		return nil, err
	}
	apiLn, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.APIURL = "http://" + apiLn.Addr().String()
	s.apiSrv = &http.Server{Handler: s.Services.Handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.apiSrv.Serve(apiLn) }()
	return s, nil
}

// SignInLink returns a one-time sign-in link to the web UI for the sandbox's admin key, and
// when it expires: the link opens one session (auth.Service.SignInOnce) and is then used up.
// Its token is the only secret in it; the database holds its hash.
func (s *Sandbox) SignInLink(ctx context.Context) (string, time.Time, error) {
	tok, expires, err := s.Services.Auth.CreateSignInLink(ctx, Team, s.Creds.KeyID, s.Creds.KeySecret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign-in link: %w", err)
	}
	return s.APIURL + "/ui/signin/once?token=" + url.QueryEscape(tok.Reveal()), expires, nil
}

// Close stops everything and removes the temporary vault.
func (s *Sandbox) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.apiSrv != nil {
		_ = s.apiSrv.Shutdown(ctx)
	}
	if s.Services != nil {
		s.Services.Stop(5 * time.Second)
	}
	if s.dv != nil {
		_ = s.dv.Close()
	}
	if s.Emulator != nil {
		s.Emulator.Close()
	}
	if s.emuSrv != nil {
		_ = s.emuSrv.Shutdown(ctx)
	}
	if s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
}

// scenario is one rotation the sandbox shows.
type scenario struct {
	Name     string
	Method   string
	Expected string
	user     string                               // the pamUser's uid
	check    func(context.Context) (bool, string) // whether the vault's current credential works on the emulator
}

// Result is the outcome of one scenario.
type Result struct {
	Name           string `json:"name"`
	Method         string `json:"method"`
	Status         string `json:"status"`
	ExpectedStatus string `json:"expected_status"`
	Verified       bool   `json:"verified"`
	RotationID     string `json:"rotation_id"`
	Detail         string `json:"detail,omitempty"`
}

// Report is what Run found.
type Report struct {
	Scenarios []Result `json:"scenarios"`
}

// OK reports whether every scenario ended as expected and its credential works.
func (r Report) OK() bool {
	for _, s := range r.Scenarios {
		if s.Status != s.ExpectedStatus || !s.Verified {
			return false
		}
	}
	return len(r.Scenarios) > 0
}

// Run rotates every scenario once, concurrently, and checks each credential afterwards.
func (s *Sandbox) Run(ctx context.Context) (Report, error) {
	type started struct {
		sc  *scenario
		run rotation.Run
	}
	var runs []started
	for _, sc := range s.scenarios {
		run, _, err := s.Services.Engine.Rotate(ctx, s.scope, sc.user, rotation.TriggerOnDemand)
		if err != nil {
			return Report{}, fmt.Errorf("rotate %s: %w", sc.Name, err)
		}
		runs = append(runs, started{sc, run})
	}
	var report Report
	for _, st := range runs {
		run, err := s.Services.Engine.Wait(ctx, s.scope, st.run.ID)
		if err != nil {
			return Report{}, fmt.Errorf("wait for %s: %w", st.sc.Name, err)
		}
		res := Result{Name: st.sc.Name, Method: st.sc.Method, Status: run.Status, ExpectedStatus: st.sc.Expected, RotationID: run.ID}
		if run.Error != nil {
			res.Detail = run.Error.Code + ": " + run.Error.Message
			if len(run.ExecLog) > 0 {
				res.Detail = joinDetail(res.Detail, "the script printed: "+oneLine(run.ExecLog[0].Stdout+" "+run.ExecLog[0].Stderr, 300))
			}
		}
		ok, why := st.sc.check(ctx)
		res.Verified = ok
		if !ok {
			res.Detail = joinDetail(res.Detail, why)
		}
		report.Scenarios = append(report.Scenarios, res)
	}
	return report, nil
}

// oneLine squeezes text onto one line of at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// Scope is the sandbox team's scope, for tests that drive the services directly.
func (s *Sandbox) Scope() vault.Scope { return s.scope }

// current returns the vault's current password of a record and one of its custom fields.
func (s *Sandbox) current(ctx context.Context, uid, customLabel string) (secret.Secret, string, error) {
	rec, err := s.Services.Vault.Get(ctx, s.scope, uid)
	if err != nil {
		return secret.Secret{}, "", err
	}
	pw, _ := rec.Password()
	var custom string
	for _, f := range rec.Custom {
		if f.Label == customLabel && len(f.Value) > 0 {
			_ = json.Unmarshal(f.Value[0], &custom)
		}
	}
	return secret.FromString(pw), custom, nil
}

// oktaCheck verifies a pamUser's current password with the emulator's Authn API.
func (s *Sandbox) oktaCheck(uid, login string) func(context.Context) (bool, string) {
	return func(ctx context.Context) (bool, string) {
		pw, _, err := s.current(ctx, uid, "")
		if err != nil {
			return false, err.Error()
		}
		acct := connector.Account{Login: login, Target: connector.Target{URL: s.OrgURL, AdminSecret: secret.FromString(s.Emulator.Token())}}
		if err := s.okta.Verify(ctx, acct, pw); err != nil {
			if errors.Is(err, connector.ErrRejected) {
				return false, "Okta refuses the vault's current password"
			}
			return false, err.Error()
		}
		return true, ""
	}
}

func field(typ, label, value string) vault.Field {
	b, _ := json.Marshal(value)
	return vault.Field{Type: typ, Label: label, Value: []json.RawMessage{b}}
}

// Seed creates the records, rotation settings and scripts of the scenarios:
//   - "Okta API Access Details", the login record holding the org URL and API token, as the
//     seeds store it;
//   - an Okta user rotated by the corrected Bash script (examples/okta), scripts_only, checked
//     with verify_with okta;
//   - an Okta user rotated by a naive script with the seed example's mistakes, which Okta refuses
//     and verification catches: the run fails and the vault is unharmed;
//   - an Okta user rotated by the native okta connector;
//   - an Okta user rotated by the declarative REST connector (the admin set-password call);
//   - an OPA service user's API key.
func (s *Sandbox) Seed(ctx context.Context) error {
	v, e := s.Services.Vault, s.Services.Engine
	create := func(rec vault.Record) (string, error) {
		out, err := v.Create(ctx, s.scope, rec)
		return out.UID, err
	}
	api, err := create(vault.Record{Type: "login", Title: "Okta API Access Details", Folder: "Shared/Okta", Fields: []vault.Field{
		field("url", "", s.OrgURL), field("password", "", s.Emulator.Token()),
	}})
	if err != nil {
		return err
	}
	user := func(i int, title string) (string, error) {
		return create(vault.Record{Type: "pamUser", Title: title, Folder: "Shared/Okta", Fields: []vault.Field{
			field("login", "", emulator.SeedLogin(i)), field("password", "", emulator.SeedPassword(i)),
		}})
	}
	add := func(sc *scenario, settings rotation.Settings, scriptName string, script []byte, creds ...string) error {
		if _, err := e.SetSettings(ctx, s.scope, sc.user, settings); err != nil {
			return fmt.Errorf("%s: %w", sc.Name, err)
		}
		if script != nil {
			if _, err := e.AddScript(ctx, s.scope, sc.user, rotation.ScriptInput{Name: scriptName, Content: script, CredentialUIDs: creds}); err != nil {
				return fmt.Errorf("%s: %w", sc.Name, err)
			}
		}
		s.scenarios = append(s.scenarios, sc)
		return nil
	}
	scriptsOnly := rotation.Settings{Method: rotation.MethodScriptsOnly, VerifyWith: "okta", ResourceUID: api}

	uid, err := user(1, "Okta user (corrected script)")
	if err != nil {
		return err
	}
	if err := add(&scenario{Name: "okta-corrected-script", Method: rotation.MethodScriptsOnly, Expected: rotation.StatusSucceeded,
		user: uid, check: s.oktaCheck(uid, emulator.SeedLogin(1))}, scriptsOnly, "okta-user-rotation.sh", examples.OktaUserRotation, api); err != nil {
		return err
	}
	if uid, err = user(2, "Okta user (naive script)"); err != nil {
		return err
	}
	if err := add(&scenario{Name: "okta-naive-script-refused", Method: rotation.MethodScriptsOnly, Expected: rotation.StatusFailed,
		user: uid, check: s.oktaCheck(uid, emulator.SeedLogin(2))}, scriptsOnly, "naive-okta-rotation.sh", []byte(naiveScript), api); err != nil {
		return err
	}
	if uid, err = user(3, "Okta user (native connector)"); err != nil {
		return err
	}
	if err := add(&scenario{Name: "okta-native", Method: rotation.MethodGeneral, Expected: rotation.StatusSucceeded,
		user: uid, check: s.oktaCheck(uid, emulator.SeedLogin(3))},
		rotation.Settings{Method: rotation.MethodGeneral, Connector: "okta", ResourceUID: api}, "", nil); err != nil {
		return err
	}
	restTarget, err := create(vault.Record{Type: "login", Title: "REST endpoint (Okta admin API)", Folder: "Shared/REST", Fields: []vault.Field{
		field("url", "", s.OrgURL), field("password", "", s.Emulator.Token()),
	}, Custom: []vault.Field{field("text", rest.ConfigField, restConfig)}})
	if err != nil {
		return err
	}
	if uid, err = user(4, "Okta user (declarative REST)"); err != nil {
		return err
	}
	if err := add(&scenario{Name: "rest-declarative", Method: rotation.MethodGeneral, Expected: rotation.StatusSucceeded,
		user: uid, check: s.oktaCheck(uid, emulator.SeedLogin(4))},
		rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest", ResourceUID: restTarget}, "", nil); err != nil {
		return err
	}
	return s.seedOPA(ctx, create, add)
}

// restConfig rotates through Okta's admin set-password call and verifies with Authn: a REST
// rotation described entirely by templates.
const restConfig = `{
  "rotate": {"method": "POST", "url": "{{.URL}}/api/v1/users/{{.User}}",
             "headers": {"Authorization": "SSWS {{.AdminSecret}}", "Accept": "application/json"},
             "body": "{\"credentials\": {\"password\": {\"value\": \"{{.NewPassword}}\"}}}", "success": [200]},
  "verify": {"method": "POST", "url": "{{.URL}}/api/v1/authn",
             "body": "{\"username\": \"{{.User}}\", \"password\": \"{{.Password}}\"}", "success": [200], "rejected": [401]}
}`

func (s *Sandbox) seedOPA(ctx context.Context, create func(vault.Record) (string, error),
	add func(*scenario, rotation.Settings, string, []byte, ...string) error) error {
	const name = "sandbox-robot"
	if _, err := s.Emulator.CreateServiceUser(name); err != nil {
		return err
	}
	keyID, keySecret, err := s.Emulator.AddServiceUserKey(name)
	if err != nil {
		return err
	}
	adminID, adminSecret := s.Emulator.AdminKey()
	team, err := create(vault.Record{Type: "login", Title: "OPA team admin key", Folder: "Shared/OPA", Fields: []vault.Field{
		field("url", "", s.OrgURL+"/v1/teams/"+s.Emulator.OPATeam()), field("login", "", adminID), field("password", "", adminSecret),
	}})
	if err != nil {
		return err
	}
	uid, err := create(vault.Record{Type: "pamUser", Title: "OPA service user " + name, Folder: "Shared/OPA", Fields: []vault.Field{
		field("login", "", name), field("password", "", keySecret),
	}, Custom: []vault.Field{field("text", "key_id", keyID)}})
	if err != nil {
		return err
	}
	check := func(ctx context.Context) (bool, string) {
		sec, id, err := s.current(ctx, uid, "key_id")
		if err != nil {
			return false, err.Error()
		}
		if !s.Emulator.ServiceKeyValid(id, sec.Reveal()) {
			return false, "OPA refuses the vault's current key"
		}
		ids, err := s.Emulator.ServiceUserKeyIDs(name)
		if err != nil || len(ids) != 1 {
			return false, fmt.Sprintf("the service user has %d keys, not 1", len(ids))
		}
		return true, ""
	}
	return add(&scenario{Name: "opa-service-user-key", Method: rotation.MethodGeneral, Expected: rotation.StatusSucceeded, user: uid, check: check},
		rotation.Settings{Method: rotation.MethodGeneral, Connector: "opa", ResourceUID: team}, "", nil)
}
