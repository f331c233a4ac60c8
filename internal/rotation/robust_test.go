package rotation_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/connector/okta"
	"github.com/keyturn/keyturn/internal/connector/rest"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/metrics"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/vault"
)

// The server's metrics count the panics the engine recovers from.
var _ rotation.PanicObserver = (*metrics.Metrics)(nil)

// versionsOf returns a record's password versions.
func (f *fixture) versionsOf(uid string) []vault.PasswordVersion {
	f.t.Helper()
	vs, err := f.vault.Versions(context.Background(), f.scope, uid)
	if err != nil {
		f.t.Fatal(err)
	}
	return vs
}

// inState returns the values of a record's password versions in a state.
func (f *fixture) inState(uid, state string) []string {
	f.t.Helper()
	var out []string
	for _, v := range f.versionsOf(uid) {
		if v.State == state {
			out = append(out, v.Value.Reveal())
		}
	}
	return out
}

// syncBuffer is a log sink safe for the engine's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// panicCounter is an Observer that counts the panics the engine recovered from.
type panicCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *panicCounter) RunEnded(string, string, time.Duration) {}
func (o *panicCounter) Scheduled(time.Duration)                {}
func (o *panicCounter) Drifted()                               {}
func (o *panicCounter) Throttled(string, time.Duration)        {}
func (o *panicCounter) Panicked(where string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[where]++
}

func (o *panicCounter) count(where string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[where]
}

// panicky is the test's rest connector with a bug that can be switched on: a panic in Rotate
// (before anything reaches the target) or in Verify (the check after the change, or a heartbeat).
// The panic value carries the password as a secret.Secret, which must print redacted.
type panicky struct {
	restConnector
	inRotate, inVerify atomic.Bool
}

func (p *panicky) Rotate(ctx context.Context, a connector.Account, old, new secret.Secret) error {
	if p.inRotate.Load() {
		panic(fmt.Errorf("injected panic in Rotate with %v", new))
	}
	return p.restConnector.Rotate(ctx, a, old, new)
}

func (p *panicky) Verify(ctx context.Context, a connector.Account, pw secret.Secret) error {
	if p.inVerify.Load() {
		panic(fmt.Errorf("injected panic in Verify with %v", pw))
	}
	return p.restConnector.Verify(ctx, a, pw)
}

// TestRESTWithoutVerifyRequest: a declarative REST rotation without a verify request whose
// target answers 400 used to panic on a nil verifier (and take the server down). The run ends
// needs_attention, because the answer came to the change request itself and nothing can check
// what the target holds: the candidate stays pending, the current password current. A REST
// rotation whose request is never sent (a template names an unknown value) fails, and its
// candidate is marked failed.
func TestRESTWithoutVerifyRequest(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
	}))
	defer api.Close()
	f := newFixture(t, fixtureOptions{connectors: map[string]connector.Connector{"rest": rest.New(nil)}})
	resource := func(cfg string) string {
		return f.create(vault.Record{Type: "login", Title: "REST target", Fields: []vault.Field{field("url", api.URL)},
			Custom: []vault.Field{custom(rest.ConfigField, cfg)}})
	}

	t.Run("answered 400", func(t *testing.T) {
		f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest",
			ResourceUID: resource(`{"rotate":{"body":"{\"user\":\"{{.User}}\",\"password\":\"{{.NewPassword}}\"}"}}`)})
		run := f.rotate()
		if run.Status != rotation.StatusNeedsAttention || run.Error == nil || run.Error.Code != "rest_http_400" ||
			!strings.Contains(run.Error.Message, "nothing can check") {
			t.Fatalf("run %+v %+v", run, run.Error)
		}
		if f.current() != "initial-Pw1!" {
			t.Fatalf("the current password changed: %+v", f.versions())
		}
		if pending := f.inState(f.user, vault.StatePending); len(pending) != 1 {
			t.Fatalf("the candidate, which the target may hold, is not kept as pending: %d pending", len(pending))
		}
		if hits.Load() != 1 {
			t.Fatalf("the target got %d requests, want the one change request", hits.Load())
		}
	})

	t.Run("request never sent", func(t *testing.T) {
		before := hits.Load()
		f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest",
			ResourceUID: resource(`{"rotate":{"body":"{\"password\":\"{{.Nope}}\"}"}}`)})
		pendingBefore := len(f.inState(f.user, vault.StatePending))
		run := f.rotate()
		if run.Status != rotation.StatusFailed || run.Error == nil || run.Error.Code != "rest_bad_config" {
			t.Fatalf("run %+v %+v", run, run.Error)
		}
		if hits.Load() != before {
			t.Fatal("the request was sent")
		}
		if n := len(f.inState(f.user, vault.StatePending)); n != pendingBefore {
			t.Fatalf("the failed run left its candidate pending (%d pending, %d before)", n, pendingBefore)
		}
		if f.current() != "initial-Pw1!" {
			t.Fatalf("the current password changed: %+v", f.versions())
		}
	})

	// The engine still works.
	f.settingsFor(f.robot, rotation.Settings{Method: rotation.MethodGeneral, Connector: "opa"})
	if run := f.rotateUID(f.robot); run.Status != rotation.StatusSucceeded {
		t.Fatalf("another rotation after the failures: %+v %+v", run, run.Error)
	}
}

// TestPanicInRunEndsItNeedsAttention: a panic inside a run ends that run needs_attention with
// code internal_panic, both passwords kept (the candidate pending, the old one current, and the
// target's password among them), logs no secret, is counted, and the engine goes on: the same
// record and others rotate afterwards.
func TestPanicInRunEndsItNeedsAttention(t *testing.T) {
	t.Parallel()
	conn := &panicky{}
	logs := &syncBuffer{}
	obs := &panicCounter{}
	f := newFixture(t, fixtureOptions{connectors: map[string]connector.Connector{"rest": conn},
		engine: rotation.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Observer: obs}})
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})

	noSecretsLogged := func(t *testing.T) {
		t.Helper()
		for _, v := range f.versionsOf(f.user) {
			if strings.Contains(logs.String(), v.Value.Reveal()) {
				t.Fatal("the log shows a password")
			}
		}
		if !strings.Contains(logs.String(), "injected panic") || !strings.Contains(logs.String(), "[REDACTED]") {
			t.Fatalf("the panic was not logged (redacted): %s", logs.String())
		}
	}

	t.Run("before the change", func(t *testing.T) {
		conn.inRotate.Store(true)
		run := f.rotate()
		conn.inRotate.Store(false)
		if run.Status != rotation.StatusNeedsAttention || run.Error == nil || run.Error.Code != rotation.CodeInternalPanic {
			t.Fatalf("run %+v %+v", run, run.Error)
		}
		if f.current() != "initial-Pw1!" || f.target.password("alice") != "initial-Pw1!" {
			t.Fatal("the current password is not the target's")
		}
		if n := len(f.inState(f.user, vault.StatePending)); n != 1 {
			t.Fatalf("%d pending versions, want the candidate kept", n)
		}
		noSecretsLogged(t)
		// The same record rotates again.
		if run := f.rotate(); run.Status != rotation.StatusSucceeded {
			t.Fatalf("the next run: %+v %+v", run, run.Error)
		}
		if f.current() != f.target.password("alice") || f.current() == "initial-Pw1!" {
			t.Fatal("the vault and the target disagree after the next run")
		}
	})

	t.Run("after the change", func(t *testing.T) {
		old := f.current()
		conn.inVerify.Store(true)
		run := f.rotate()
		conn.inVerify.Store(false)
		if run.Status != rotation.StatusNeedsAttention || run.Error == nil || run.Error.Code != rotation.CodeInternalPanic {
			t.Fatalf("run %+v %+v", run, run.Error)
		}
		// The target took the candidate before the panic: it is in the vault, as pending.
		live := f.target.password("alice")
		if live == old || f.current() != old || f.stateOf(live) != vault.StatePending {
			t.Fatalf("the target's password is not kept as pending (current kept: %v)", f.current() == old)
		}
		noSecretsLogged(t)
	})

	if n := obs.count("run"); n != 2 {
		t.Fatalf("the observer counted %d panics in runs, want 2", n)
	}
	// Other records still rotate.
	f.settingsFor(f.robot, rotation.Settings{Method: rotation.MethodGeneral, Connector: "opa"})
	if run := f.rotateUID(f.robot); run.Status != rotation.StatusSucceeded {
		t.Fatalf("another record after the panics: %+v %+v", run, run.Error)
	}
}

// TestPanicInHeartbeat: a panic inside a heartbeat neither takes the engine down nor changes a
// password or the drift state: the record says the last heartbeat stopped on an internal error,
// the heartbeat comes back later, and rotations and heartbeats go on afterwards.
func TestPanicInHeartbeat(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: start}
	conn := &panicky{}
	obs := &panicCounter{}
	f := newFixture(t, fixtureOptions{connectors: map[string]connector.Connector{"rest": conn},
		engine: rotation.Options{Now: clock.Now, Tick: -1, HeartbeatInterval: time.Hour, Observer: obs}})
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	ctx := context.Background()

	conn.inVerify.Store(true)
	now := start.Add(2 * time.Hour)
	clock.Set(now)
	if err := f.engine.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	conn.inVerify.Store(false)
	info := f.info(f.user)
	if info.Drift == nil || info.Drift.State != "" || !strings.Contains(info.Drift.Message, rotation.CodeInternalPanic) {
		t.Fatalf("drift after the panic: %+v", info.Drift)
	}
	if info.NextHeartbeatAt == nil || !info.NextHeartbeatAt.Equal(now.Add(15*time.Minute)) {
		t.Fatalf("next heartbeat %v, want %v", info.NextHeartbeatAt, now.Add(15*time.Minute))
	}
	if f.current() != "initial-Pw1!" || f.target.password("alice") != "initial-Pw1!" {
		t.Fatal("a heartbeat changed a password")
	}
	if n := obs.count("heartbeat"); n != 1 {
		t.Fatalf("the observer counted %d panics in heartbeats, want 1", n)
	}

	// The engine goes on: a rotation succeeds, and the next heartbeat finds all well.
	if run := f.rotate(); run.Status != rotation.StatusSucceeded {
		t.Fatalf("a rotation after the panic: %+v %+v", run, run.Error)
	}
	clock.Set(now.Add(3 * time.Hour))
	if err := f.engine.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	info = f.info(f.user)
	if info.Drift != nil && (info.Drift.State != "" || info.Drift.Message != "") {
		t.Fatalf("drift after a good heartbeat: %+v", info.Drift)
	}
	if info.NextHeartbeatAt == nil || !info.NextHeartbeatAt.Equal(now.Add(4*time.Hour)) {
		t.Fatalf("next heartbeat %v, want %v", info.NextHeartbeatAt, now.Add(4*time.Hour))
	}
}

// TestOktaFailureBeforeTheChange: a native Okta rotation whose API token is wrong never
// reaches change_password (the user lookup is refused with 401), and one whose token was
// revoked after the user's id was cached is refused at authentication: both runs end failed,
// say what failed, and mark their candidate failed; no pending version is left behind, also
// after a later successful rotation.
func TestOktaFailureBeforeTheChange(t *testing.T) {
	t.Parallel()
	em := emulator.New(emulator.Options{Users: 2})
	srv := httptest.NewServer(em)
	defer srv.Close()
	defer em.Close()
	f := newFixture(t, fixtureOptions{connectors: map[string]connector.Connector{"okta": okta.New(okta.Options{})}})
	ctx := context.Background()
	org := f.create(vault.Record{Type: "login", Title: "Okta org", Fields: []vault.Field{
		field("url", srv.URL), field("password", "not-the-token")}})
	login := emulator.SeedLogin(1)
	user := f.create(vault.Record{Type: "pamUser", Title: "okta user", Fields: []vault.Field{
		field("login", login), field("password", emulator.SeedPassword(1))}})
	f.settingsFor(user, rotation.Settings{Method: rotation.MethodGeneral, Connector: "okta", ResourceUID: org})
	setToken := func(token string) {
		t.Helper()
		rec, err := f.vault.Get(ctx, f.scope, org)
		if err != nil {
			t.Fatal(err)
		}
		rec.Fields[1] = field("password", token)
		if _, err := f.vault.Update(ctx, f.scope, rec); err != nil {
			t.Fatal(err)
		}
	}
	consistent := func(t *testing.T) {
		t.Helper()
		if pw, _ := em.Password(login); pw != f.currentOf(user) {
			t.Fatal("the password Okta accepts is not the vault's current")
		}
		if pending := f.inState(user, vault.StatePending); len(pending) != 0 {
			t.Fatalf("%d pending versions left behind", len(pending))
		}
	}
	failedBefore := func(t *testing.T, run rotation.Run, what string) {
		t.Helper()
		if run.Status != rotation.StatusFailed || run.Error == nil || run.Error.Code != "okta_e0000011" ||
			!strings.Contains(run.Error.Message, what) || !strings.Contains(run.Error.Message, "401") ||
			strings.Contains(run.Error.Message, "neither") {
			t.Fatalf("run %+v %+v", run, run.Error)
		}
		if n := len(f.inState(user, vault.StateFailed)); n == 0 {
			t.Fatal("the candidate is not marked failed")
		}
		consistent(t)
	}

	t.Run("wrong token", func(t *testing.T) {
		failedBefore(t, f.rotateUID(user), "get user")
	})
	t.Run("later success", func(t *testing.T) {
		setToken(em.Token())
		if run := f.rotateUID(user); run.Status != rotation.StatusSucceeded {
			t.Fatalf("run %+v %+v", run, run.Error)
		}
		consistent(t)
	})
	t.Run("token revoked", func(t *testing.T) {
		em.AddToken("second-token")
		em.RevokeToken(em.Token()) // the connector knows the user's id: change_password gets the 401
		failedBefore(t, f.rotateUID(user), "change_password")
		setToken("second-token")
		if run := f.rotateUID(user); run.Status != rotation.StatusSucceeded {
			t.Fatalf("run %+v %+v", run, run.Error)
		}
		consistent(t)
	})
}

// TestScriptThatNeverRanEndsFailed: a scripts_only rotation whose first script cannot be
// started never reached the target, with or without a verifier: the run fails, says why, and
// its candidate is marked failed, not left pending; no rollback runs.
func TestScriptThatNeverRanEndsFailed(t *testing.T) {
	t.Parallel()
	for _, verify := range []string{"rest", ""} {
		t.Run("verify_with="+verify, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{})
			f.attach(f.user, "noshebang.sh", "echo this file has no #! line\n")
			f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, VerifyWith: verify})
			run := f.rotate()
			if run.Status != rotation.StatusFailed || run.Error == nil || run.Error.Code != "script_start_failed" ||
				!strings.Contains(run.Error.Message, "not changed") {
				t.Fatalf("run: %+v %+v", run, run.Error)
			}
			if pending := f.inState(f.user, vault.StatePending); len(pending) != 0 {
				t.Errorf("%d pending versions left behind", len(pending))
			}
			if n := len(f.inState(f.user, vault.StateFailed)); n != 1 {
				t.Errorf("%d failed versions, want the candidate", n)
			}
			if got := f.current(); got != "initial-Pw1!" || f.target.password("alice") != got {
				t.Errorf("current %q, target %q", got, f.target.password("alice"))
			}
		})
	}
}

// lateChange is a connector whose change lands late: Rotate times out without changing
// anything, and the change arrives while the engine checks the old password (a request a
// killed script sent just before it died).
type lateChange struct {
	mu      sync.Mutex
	target  string // the password the target accepts
	pending string // what the late change will set
}

func (c *lateChange) Rotate(_ context.Context, _ connector.Account, _, new secret.Secret) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = new.Reveal()
	return connector.Transient("network", "the target did not answer", nil)
}

func (c *lateChange) Verify(_ context.Context, _ connector.Account, pw secret.Secret) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok := pw.Reveal() == c.target
	if c.pending != "" && !ok {
		c.target, c.pending = c.pending, "" // the change lands now, after this check
	}
	if ok {
		return nil
	}
	return connector.ErrRejected
}

// TestChangeLandingBetweenChecks: a change that lands between the check of the new password
// and the check of the old one is found by asking for the new one again, not reported as
// "accepts neither".
func TestChangeLandingBetweenChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, fixtureOptions{})
	stop, cancel := context.WithTimeout(ctx, 5*time.Second)
	f.engine.Stop(stop)
	cancel()
	late := &lateChange{target: "initial-Pw1!"}
	f.engine = rotation.New(f.dv.DB, f.vault, audit.New(f.dv.DB, f.dv.Keys), script.NewRunner(script.Options{}),
		map[string]connector.Connector{"rest": late}, rotation.Options{BackoffBase: time.Millisecond, Attempts: 1})
	if err := f.engine.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	run := f.rotate()
	if run.Status != rotation.StatusSucceeded {
		t.Fatalf("run ended %s: %+v", run.Status, run.Error)
	}
	if got := f.current(); got != late.target {
		t.Errorf("vault current %q, target %q", got, late.target)
	}
}
