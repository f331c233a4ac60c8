package rotation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
	"github.com/keyturn/keyturn/internal/vault"
)

// target is a small REST service that owns account passwords: /change needs the old password,
// /verify checks one. It stands in for the system behind a rotation.
type target struct {
	mu        sync.Mutex
	passwords map[string]string
	keys      map[string]map[string]string // API keys: login → key id → secret
	changes   int
	failNext  int                      // the next n /change calls answer 503 without changing anything
	hits      []time.Time              // when each request arrived, by now
	now       func() time.Time         // the clock of hits (the engine's rate clock)
	slow      map[string]time.Duration // /verify of these logins answers this late
	srv       *httptest.Server
}

func newTarget(t testing.TB, accounts map[string]string) *target {
	tg := &target{now: time.Now, passwords: accounts, keys: map[string]map[string]string{"robot": {"key-0": "initial-key-secret"}}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /keys/issue", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Login string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		tg.mu.Lock()
		defer tg.mu.Unlock()
		n := len(tg.keys[in.Login])
		id, sec := fmt.Sprintf("key-%d-%d", n, time.Now().UnixNano()), fmt.Sprintf("secret-%d-%d", n, time.Now().UnixNano())
		tg.keys[in.Login][id] = sec
		_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "secret": sec})
	})
	mux.HandleFunc("POST /keys/verify", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Login, KeyID, Secret string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		tg.mu.Lock()
		defer tg.mu.Unlock()
		if s, ok := tg.keys[in.Login][in.KeyID]; !ok || s != in.Secret {
			http.Error(w, "refused", http.StatusUnauthorized)
		}
	})
	mux.HandleFunc("POST /keys/retire", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Login, Keep string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		tg.mu.Lock()
		defer tg.mu.Unlock()
		for id := range tg.keys[in.Login] {
			if id != in.Keep {
				delete(tg.keys[in.Login], id)
			}
		}
	})
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
		delay := tg.slow[in.Login]
		tg.mu.Unlock()
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		tg.mu.Lock()
		defer tg.mu.Unlock()
		if in.Password == "" || tg.passwords[in.Login] != in.Password {
			http.Error(w, "refused", http.StatusUnauthorized)
		}
	})
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.hits = append(tg.hits, tg.now())
		tg.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(tg.srv.Close)
	return tg
}

// keyWorks reports whether the target accepts a key id and secret.
func (tg *target) keyWorks(login, id, secret string) bool {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	s, ok := tg.keys[login][id]
	return ok && s == secret
}

// anyKey reports whether any of a login's keys has this secret.
func (tg *target) anyKey(login, secret string) bool {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	for _, s := range tg.keys[login] {
		if s == secret {
			return true
		}
	}
	return false
}

func (tg *target) keyCount(login string) int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return len(tg.keys[login])
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

// keyConnector rotates API keys on the target the way the opa connector does: the target
// issues the new key, and older keys are retired once it is verified.
type keyConnector struct{}

func (keyConnector) Rotate(context.Context, connector.Account, secret.Secret, secret.Secret) error {
	return connector.Permanent("not_supported", "keys are issued, not set", nil)
}

func (keyConnector) Issue(ctx context.Context, a connector.Account, _ secret.Secret) (connector.Issued, error) {
	js, _ := json.Marshal(map[string]string{"login": a.Login})
	req, _ := http.NewRequestWithContext(ctx, "POST", a.Target.URL+"/keys/issue", bytes.NewReader(js))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return connector.Issued{}, connector.Transient("network", "no answer", err)
	}
	defer resp.Body.Close()
	var out struct{ ID, Secret string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return connector.Issued{}, connector.Transient("bad_answer", "bad answer", err)
	}
	return connector.Issued{Secret: secret.FromString(out.Secret), Fields: map[string]string{"key_id": out.ID}}, nil
}

func (keyConnector) Verify(ctx context.Context, a connector.Account, pw secret.Secret) error {
	status, err := post(ctx, a.Target.URL+"/keys/verify", map[string]string{"login": a.Login, "keyid": a.Target.Fields["key_id"], "secret": pw.Reveal()})
	switch {
	case err != nil:
		return err
	case status == http.StatusOK:
		return nil
	default:
		return connector.ErrRejected
	}
}

func (keyConnector) Finalize(ctx context.Context, a connector.Account, issued connector.Issued) error {
	_, err := post(ctx, a.Target.URL+"/keys/retire", map[string]string{"login": a.Login, "keep": issued.Fields["key_id"]})
	return err
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
	user     string // pamUser uid ("alice", a password on the target)
	robot    string // pamUser uid ("robot", an API key on the target)
	resource string // login record uid holding the target url
	config   string
}

type fixtureOptions struct {
	database   string // the database: "" (KEYTURN_TEST_STORAGE, else SQLite), "sqlite" or "postgres"
	accounts   map[string]string
	engine     rotation.Options
	connectors map[string]connector.Connector // added to (or replacing) the test's rest and opa
}

// newFixture opens a vault with a pamUser "alice" (password "initial-Pw1!") whose target
// holds the same password, a resource record pointing at the target, and a configuration.
func newFixture(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	ctx := context.Background()
	if o.database == "" {
		o.database = os.Getenv(testdb.EnvStorage)
	}
	dv, _, dir := testdb.DataDirOn(t, o.database, "acme") // closed after the engine stops (cleanups run last first)
	team, err := dv.DB.TeamByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if o.accounts == nil {
		o.accounts = map[string]string{"alice": "initial-Pw1!"}
	}
	f := &fixture{t: t, dv: dv, dir: dir, scope: vault.Scope{TeamID: team.ID}, target: newTarget(t, o.accounts)}
	if o.engine.RateClock != nil {
		f.target.mu.Lock()
		f.target.now = o.engine.RateClock.Now
		f.target.mu.Unlock()
	}
	f.vault = vault.New(dv.DB, dv.Keys, nil)
	if o.engine.BackoffBase == 0 {
		o.engine.BackoffBase = time.Millisecond
	}
	var machine machineLog // every test's transitions and failpoints are checked against the machine
	machine.record(&o.engine)
	t.Cleanup(func() { machine.check(t) }) // after the engine stopped (cleanups run last first)
	conns := map[string]connector.Connector{"rest": restConnector{}, "opa": keyConnector{}}
	maps.Copy(conns, o.connectors)
	f.engine = rotation.New(dv.DB, f.vault, audit.New(dv.DB, dv.Keys),
		script.NewRunner(script.Options{TempDir: t.TempDir(), KillGrace: 200 * time.Millisecond}), conns, o.engine)
	if err := f.engine.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		f.engine.Stop(stop)
	})
	f.resource = f.create(vault.Record{Type: "login", Title: "Target API", Fields: []vault.Field{
		field("url", f.target.srv.URL), field("login", "api-admin"), field("password", "admin-token-123"),
	}})
	f.config = f.create(vault.Record{Type: "pamConfiguration", Title: "Local network"})
	f.user = f.create(vault.Record{Type: "pamUser", Title: "alice", Folder: "Shared", Fields: []vault.Field{
		field("login", "alice"), field("password", "initial-Pw1!"),
	}})
	f.robot = f.create(vault.Record{Type: "pamUser", Title: "robot", Fields: []vault.Field{
		field("login", "robot"), field("password", "initial-key-secret"),
	}, Custom: []vault.Field{custom("key_id", "key-0")}})
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
	f.settingsFor(f.user, s)
}

func (f *fixture) settingsFor(uid string, s rotation.Settings) {
	f.t.Helper()
	if s.ResourceUID == "" {
		s.ResourceUID = f.resource
	}
	if s.ConfigurationUID == "" {
		s.ConfigurationUID = f.config
	}
	if _, err := f.engine.SetSettings(context.Background(), f.scope, uid, s); err != nil {
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
	return f.rotateUID(f.user)
}

func (f *fixture) rotateUID(uid string) rotation.Run {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run, _, err := f.engine.Rotate(ctx, f.scope, uid, rotation.TriggerOnDemand)
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
	return f.currentOf(f.user)
}

func (f *fixture) currentOf(uid string) string {
	f.t.Helper()
	rec, err := f.vault.Get(context.Background(), f.scope, uid)
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

// robotKey returns the robot record's current secret and key_id custom field.
func (f *fixture) robotKey() (secretValue, keyID string) {
	f.t.Helper()
	rec, err := f.vault.Get(context.Background(), f.scope, f.robot)
	if err != nil {
		f.t.Fatal(err)
	}
	pw, _ := rec.Password()
	for _, c := range rec.Custom {
		if c.Label == "key_id" && len(c.Value) > 0 {
			_ = json.Unmarshal(c.Value[0], &keyID)
		}
	}
	return pw, keyID
}
