package rotation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/vault"
)

// target is a small REST service that owns account passwords: /change needs the old password,
// /verify checks one. It stands in for the system behind a rotation.
type target struct {
	mu        sync.Mutex
	passwords map[string]string
	changes   int
	failNext  int // the next n /change calls answer 503 without changing anything
	srv       *httptest.Server
}

func newTarget(t testing.TB, accounts map[string]string) *target {
	tg := &target{passwords: accounts}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /change", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Login, Old, New string }
		if json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		tg.mu.Lock()
		defer tg.mu.Unlock()
		if tg.failNext > 0 {
			tg.failNext--
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		if tg.passwords[in.Login] != in.Old || in.New == "" {
			http.Error(w, "old password refused", http.StatusUnauthorized)
			return
		}
		tg.passwords[in.Login] = in.New
		tg.changes++
	})
	mux.HandleFunc("POST /verify", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Login, Password string }
		if json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		tg.mu.Lock()
		defer tg.mu.Unlock()
		if in.Password == "" || tg.passwords[in.Login] != in.Password {
			http.Error(w, "refused", http.StatusUnauthorized)
		}
	})
	tg.srv = httptest.NewServer(mux)
	t.Cleanup(tg.srv.Close)
	return tg
}

func (tg *target) password(login string) string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.passwords[login]
}

// restConnector talks to a target; it is the test's "rest" connector.
type restConnector struct{}

func post(ctx context.Context, url string, body any) (int, error) {
	js, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(js))
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, connector.Transient("network", "the target did not answer", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (restConnector) Rotate(ctx context.Context, a connector.Account, old, new secret.Secret) error {
	status, err := post(ctx, a.Target.URL+"/change", map[string]string{"login": a.Login, "old": old.Reveal(), "new": new.Reveal()})
	switch {
	case err != nil:
		return err
	case status == http.StatusOK:
		return nil
	case status >= 500:
		return connector.Transient("target_unavailable", fmt.Sprintf("the target answered %d", status), nil)
	default:
		return connector.Permanent("change_refused", fmt.Sprintf("the target refused the change (%d)", status), nil)
	}
}

func (restConnector) Verify(ctx context.Context, a connector.Account, pw secret.Secret) error {
	status, err := post(ctx, a.Target.URL+"/verify", map[string]string{"login": a.Login, "password": pw.Reveal()})
	switch {
	case err != nil:
		return err
	case status == http.StatusOK:
		return nil
	case status == http.StatusUnauthorized:
		return connector.ErrRejected
	default:
		return connector.Transient("target_unavailable", fmt.Sprintf("the target answered %d", status), nil)
	}
}

// changeScript is a scripts_only rotation script in the Keeper protocol: it reads the params,
// finds the target's url in the resource record and changes the password there, failing on an
// HTTP error. It needs only python3.
const changeScript = `#!/usr/bin/env python3
import base64, json, sys, urllib.request
params = json.loads(base64.b64decode(sys.stdin.readline()))
records = json.loads(base64.b64decode(params["records"]))
url = next(r["url"] for r in records if r.get("url"))
body = json.dumps({"login": params["user"], "old": params["oldPassword"], "new": params["newPassword"]}).encode()
req = urllib.request.Request(url + "/change", data=body, method="POST")
try:
    urllib.request.urlopen(req)
except Exception as e:
    print("change failed:", e, file=sys.stderr)
    sys.exit(1)
print("changed password of", params["user"])
`

// liarScript exits 0 without changing anything.
const liarScript = "#!/bin/sh\necho all good\nexit 0\n"

type fixture struct {
	t        testing.TB
	engine   *rotation.Engine
	vault    *vault.Vault
	dv       *datadir.Vault
	dir      string // the data directory
	scope    vault.Scope
	target   *target
	user     string // pamUser uid
	resource string // login record uid holding the target url
	config   string
}

type fixtureOptions struct {
	accounts map[string]string
	engine   rotation.Options
}

// newFixture opens a vault with a pamUser "alice" (password "initial-Pw1!") whose target
// holds the same password, a resource record pointing at the target, and a configuration.
func newFixture(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{}); err != nil {
		t.Fatal(err)
	}
	dv, err := datadir.Open(ctx, dir, datadir.Unseal{})
	if err != nil {
		t.Fatal(err)
	}
	team, err := dv.DB.TeamByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if o.accounts == nil {
		o.accounts = map[string]string{"alice": "initial-Pw1!"}
	}
	f := &fixture{t: t, dv: dv, dir: dir, scope: vault.Scope{TeamID: team.ID}, target: newTarget(t, o.accounts)}
	f.vault = vault.New(dv.DB, dv.Keys)
	if o.engine.BackoffBase == 0 {
		o.engine.BackoffBase = time.Millisecond
	}
	f.engine = rotation.New(dv.DB, f.vault, audit.New(dv.DB, dv.Keys),
		script.NewRunner(script.Options{TempDir: t.TempDir(), KillGrace: 200 * time.Millisecond}),
		map[string]connector.Connector{"rest": restConnector{}}, o.engine)
	if err := f.engine.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		f.engine.Stop(stop)
		dv.Close()
	})
	f.resource = f.create(vault.Record{Type: "login", Title: "Target API", Fields: []vault.Field{
		field("url", f.target.srv.URL), field("login", "api-admin"), field("password", "admin-token-123"),
	}})
	f.config = f.create(vault.Record{Type: "pamConfiguration", Title: "Local network"})
	f.user = f.create(vault.Record{Type: "pamUser", Title: "alice", Folder: "Shared", Fields: []vault.Field{
		field("login", "alice"), field("password", "initial-Pw1!"),
	}})
	return f
}

func field(typ, value string) vault.Field {
	b, _ := json.Marshal(value)
	return vault.Field{Type: typ, Value: []json.RawMessage{b}}
}

func custom(label, value string) vault.Field {
	f := field("text", value)
	f.Label = label
	return f
}

func (f *fixture) create(rec vault.Record) string {
	f.t.Helper()
	out, err := f.vault.Create(context.Background(), f.scope, rec)
	if err != nil {
		f.t.Fatal(err)
	}
	return out.UID
}

func (f *fixture) settings(s rotation.Settings) {
	f.t.Helper()
	if s.ResourceUID == "" {
		s.ResourceUID = f.resource
	}
	if s.ConfigurationUID == "" {
		s.ConfigurationUID = f.config
	}
	if _, err := f.engine.SetSettings(context.Background(), f.scope, f.user, s, "test"); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) attach(uid, name, content string) {
	f.t.Helper()
	if _, err := f.engine.AddScript(context.Background(), f.scope, uid, rotation.ScriptInput{Name: name, Content: []byte(content)}); err != nil {
		f.t.Fatal(err)
	}
}

// rotate rotates the pamUser and waits for the run to end.
func (f *fixture) rotate() rotation.Run {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run, _, err := f.engine.Rotate(ctx, f.scope, f.user, rotation.TriggerOnDemand)
	if err != nil {
		f.t.Fatal(err)
	}
	run, err = f.engine.Wait(ctx, f.scope, run.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	if !run.Terminal() {
		f.t.Fatalf("run %s did not end: %+v", run.ID, run)
	}
	return run
}

// current returns the vault's current password of the pamUser.
func (f *fixture) current() string {
	f.t.Helper()
	rec, err := f.vault.Get(context.Background(), f.scope, f.user)
	if err != nil {
		f.t.Fatal(err)
	}
	pw, _ := rec.Password()
	return pw
}

// versions returns the states of the pamUser's password versions by value.
func (f *fixture) versions() []vault.PasswordVersion {
	f.t.Helper()
	vs, err := f.vault.Versions(context.Background(), f.scope, f.user)
	if err != nil {
		f.t.Fatal(err)
	}
	return vs
}

func (f *fixture) stateOf(value string) string {
	for _, v := range f.versions() {
		if v.Value.Reveal() == value {
			return v.State
		}
	}
	return ""
}
