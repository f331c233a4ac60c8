package rotation_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/vault"
)

// leakyFailScript prints both passwords (raw, base64, inside JSON) and the whole stdin line,
// then fails: the exec log must show none of it.
const leakyFailScript = `#!/usr/bin/env python3
import base64, json, sys
line = sys.stdin.readline().strip()
p = json.loads(base64.b64decode(line))
print("new:", p["newPassword"], "old:", p["oldPassword"])
print("b64:", base64.b64encode(p["newPassword"].encode()).decode())
print("in json:", json.dumps({"x": "ab" + p["newPassword"] + "cd"}))
print("line:", line, file=sys.stderr)
sys.exit(3)
`

// changeThenFailScript changes the password on the target, then fails anyway.
var changeThenFailScript = strings.Replace(changeScript, `print("changed password of", params["user"])`,
	`print("changed, but failing"); sys.exit(1)`, 1)

func assertRedacted(t *testing.T, run rotation.Run, secrets ...string) {
	t.Helper()
	js, _ := json.Marshal(run.ExecLog)
	for _, s := range secrets {
		for _, form := range []string{s, base64.StdEncoding.EncodeToString([]byte(s))} {
			if strings.Contains(string(js), form) {
				t.Fatalf("exec log leaks a secret: %s", js)
			}
		}
	}
	if !strings.Contains(string(js), "[REDACTED]") {
		t.Fatalf("exec log shows no redaction: %s", js)
	}
}

func TestFailingScriptRollsBackAndRedacts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{})
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, VerifyWith: "rest"})
	f.attach(f.user, "leaky.py", leakyFailScript)
	run := f.rotate()
	if run.Status != rotation.StatusFailed || run.Error.Code != "script_failed" {
		t.Fatalf("run %+v", run)
	}
	// Rollback On Password Fail defaults to true: the script ran again with the passwords swapped.
	if len(run.ExecLog) != 2 || run.ExecLog[0].ReturnCode != 3 || run.ExecLog[1].Name != "leaky.py (rollback)" {
		t.Fatalf("exec log %+v", run.ExecLog)
	}
	var candidate string
	for _, v := range f.versions() {
		if v.State == vault.StateFailed {
			candidate = v.Value.Reveal()
		}
	}
	if candidate == "" {
		t.Fatalf("the candidate is not kept as failed: %+v", f.versions())
	}
	assertRedacted(t, run, candidate, "initial-Pw1!")
	if f.current() != "initial-Pw1!" || f.target.password("alice") != "initial-Pw1!" {
		t.Fatal("a failed run changed the current password")
	}
}

func TestRollbackOnPasswordFail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		flag      string // the pamUser's "Rollback On Password Fail" field; "" = absent (true)
		wantNewPW bool   // whether the candidate ends current
	}{
		{"default rolls back", "", false},
		{"true rolls back", "True", false},
		{"false keeps the new password", "False", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{})
			if tc.flag != "" {
				rec, _ := f.vault.Get(context.Background(), f.scope, f.user)
				rec.Custom = append(rec.Custom, custom("Rollback On Password Fail", tc.flag))
				if _, err := f.vault.Update(context.Background(), f.scope, rec); err != nil {
					t.Fatal(err)
				}
			}
			f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, VerifyWith: "rest"})
			f.attach(f.user, "change-then-fail.py", changeThenFailScript)
			run := f.rotate()
			if run.Status != rotation.StatusFailed {
				t.Fatalf("run %+v", run)
			}
			live := f.target.password("alice")
			if f.current() != live {
				t.Fatalf("vault current %q, target %q", f.current(), live)
			}
			if (live != "initial-Pw1!") != tc.wantNewPW {
				t.Fatalf("target holds %q; want the new password: %v", live, tc.wantNewPW)
			}
			wantLog := 2
			if tc.wantNewPW {
				wantLog = 1
			}
			if len(run.ExecLog) != wantLog {
				t.Fatalf("exec log %+v", run.ExecLog)
			}
		})
	}
}

func TestPostRotationScriptFailure(t *testing.T) {
	t.Parallel()
	for _, rollback := range []bool{false, true} {
		t.Run("rollback="+map[bool]string{false: "off", true: "on"}[rollback], func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{})
			if rollback { // looked up user → resource → configuration: put it on the resource
				rec, _ := f.vault.Get(context.Background(), f.scope, f.resource)
				rec.Custom = append(rec.Custom, custom("Rollback On Post Rotation Fail", "True"))
				if _, err := f.vault.Update(context.Background(), f.scope, rec); err != nil {
					t.Fatal(err)
				}
			}
			f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
			f.attach(f.user, "notify.sh", "#!/bin/sh\necho notifying\nexit 7\n")
			run := f.rotate()
			if run.Status != rotation.StatusFailed || run.Error.Code != "script_failed" {
				t.Fatalf("run %+v", run)
			}
			live := f.target.password("alice")
			if f.current() != live {
				t.Fatalf("vault current %q, target %q", f.current(), live)
			}
			if rolledBack := live == "initial-Pw1!"; rolledBack != rollback {
				t.Fatalf("target holds %q; rollback %v", live, rollback)
			}
		})
	}
}

func TestConcurrentRotateRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{engine: rotation.Options{Workers: 4}})
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	ids := map[string]bool{}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			run, _, err := f.engine.Rotate(ctx, f.scope, f.user, rotation.TriggerOnDemand)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[run.ID] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	var runs []rotation.Run
	for id := range ids {
		run, err := f.engine.Wait(ctx, f.scope, id)
		if err != nil || !run.Terminal() || run.Status != rotation.StatusSucceeded {
			t.Fatalf("run %s: %+v %v", id, run, err)
		}
		runs = append(runs, run)
	}
	// One run at a time: no two runs' lifetimes overlap.
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if a.StartedAt.Before(*b.FinishedAt) && b.StartedAt.Before(*a.FinishedAt) {
				t.Fatalf("runs %s and %s overlap", a.ID, b.ID)
			}
		}
	}
	if f.current() != f.target.password("alice") {
		t.Fatalf("vault current %q, target %q", f.current(), f.target.password("alice"))
	}
	t.Logf("%d concurrent requests made %d runs", 50, len(runs))
}

func TestTransientErrorsAreRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{})
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	f.target.mu.Lock()
	f.target.failNext = 3
	f.target.mu.Unlock()
	run := f.rotate()
	if run.Status != rotation.StatusSucceeded || run.Attempt < 4 {
		t.Fatalf("run %+v", run)
	}
	f.target.mu.Lock()
	f.target.failNext = 100
	f.target.mu.Unlock()
	run = f.rotate()
	if run.Status != rotation.StatusFailed || run.Error.Code != "target_unavailable" {
		t.Fatalf("run after attempts ran out: %+v", run)
	}
	if f.current() != f.target.password("alice") {
		t.Fatal("the current password is not the target's")
	}
}

func TestPermanentErrorEndsTheRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{accounts: map[string]string{"alice": "something else"}})
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	run := f.rotate()
	// The target refuses the old password, and accepts neither the old nor the new one.
	if run.Status != rotation.StatusNeedsAttention || run.Attempt != 1 {
		t.Fatalf("run %+v", run)
	}
	if f.stateOf("initial-Pw1!") != vault.StateCurrent {
		t.Fatalf("current changed: %+v", f.versions())
	}
}

func TestNOOPFieldForcesScriptsOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{})
	rec, _ := f.vault.Get(context.Background(), f.scope, f.user)
	rec.Custom = append(rec.Custom, custom("NOOP", "true"))
	if _, err := f.vault.Update(context.Background(), f.scope, rec); err != nil {
		t.Fatal(err)
	}
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest", VerifyWith: "rest"})
	f.attach(f.user, "change.py", changeScript)
	run := f.rotate()
	if run.Status != rotation.StatusSucceeded || len(run.ExecLog) != 1 {
		t.Fatalf("run %+v", run)
	}
	if f.current() != f.target.password("alice") {
		t.Fatal("vault and target disagree")
	}
}

// TestSeedRESTScript runs the seed's REST rotation script, unchanged, as a scripts_only
// rotation with a "Record with Access Token" credential.
func TestSeedRESTScript(t *testing.T) {
	t.Parallel()
	const seed = "../../../shared/seeds/restored/rest-api-rotation.py"
	content, err := os.ReadFile(seed)
	if err != nil {
		t.Fatalf("the seed script (CI keeps ../shared beside the clone): %v", err)
	}
	var mu sync.Mutex
	var gotAuth, gotEmail, gotPassword string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ UserEmail, NewPassword string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		gotAuth, gotEmail, gotPassword = r.Header.Get("Authorization"), body.UserEmail, body.NewPassword
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"status":"rotated"}`))
	}))
	defer api.Close()

	f := newFixture(t, fixtureOptions{})
	token := f.create(vault.Record{Type: "login", Title: "Record with Access Token", Fields: []vault.Field{
		field("url", api.URL+"/rotate"), field("password", "service-access-token-42"),
	}})
	rec, _ := f.vault.Get(context.Background(), f.scope, f.user)
	rec.Fields[0] = field("login", "alice@example.com")
	if _, err := f.vault.Update(context.Background(), f.scope, rec); err != nil {
		t.Fatal(err)
	}
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly})
	if _, err := f.engine.AddScript(context.Background(), f.scope, f.user, rotation.ScriptInput{
		Name: "rest-api-rotation.py", Content: content, CredentialUIDs: []string{token},
	}); err != nil {
		t.Fatal(err)
	}
	run := f.rotate()
	if run.Status != rotation.StatusSucceeded {
		t.Fatalf("run %+v", run)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotAuth != "Bearer service-access-token-42" || gotEmail != "alice@example.com" {
		t.Fatalf("the REST server saw auth %q, user %q", gotAuth, gotEmail)
	}
	if gotPassword == "" || gotPassword != f.current() || gotPassword == "initial-Pw1!" {
		t.Fatalf("the REST server saw password %q; the vault's current is %q", gotPassword, f.current())
	}
	if js, _ := json.Marshal(run.ExecLog); strings.Contains(string(js), gotPassword) || strings.Contains(string(js), "service-access-token-42") {
		t.Fatalf("exec log leaks a secret: %s", js)
	}
}

// TestTargetRateLimit: many rotations due at once against one target reach it no faster than
// the engine's per-target rate, and every one of them still succeeds. The rate limit's clock is
// a manual one the test steps (the target records arrivals by it), so no window is slept through.
func TestTargetRateLimit(t *testing.T) {
	t.Parallel()
	const users, perSecond = 6, 10
	accounts := map[string]string{}
	for i := range users {
		accounts[fmt.Sprintf("user%d", i)] = "initial-Pw1!"
	}
	seen := &throttles{}
	clock := rotation.NewManualClock()
	f := newFixture(t, fixtureOptions{accounts: accounts,
		engine: rotation.Options{Workers: users, TargetRate: perSecond, TargetBurst: 1, Observer: seen, RateClock: clock}})
	ctx := context.Background()
	var uids, ids []string
	for i := range users {
		uid := f.create(vault.Record{Type: "pamUser", Title: fmt.Sprintf("user%d", i), Fields: []vault.Field{
			field("login", fmt.Sprintf("user%d", i)), field("password", "initial-Pw1!")}})
		f.settingsFor(uid, rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
		uids = append(uids, uid)
	}
	// No call can take a token before the first rotation is asked for.
	start := clock.Now()
	for _, uid := range uids {
		run, _, err := f.engine.Rotate(ctx, f.scope, uid, rotation.TriggerOnDemand)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, run.ID)
	}
	clock.Drive(t, 10*time.Millisecond, time.Millisecond)
	for _, id := range ids {
		run, err := f.engine.Wait(ctx, f.scope, id)
		if err != nil || run.Status != rotation.StatusSucceeded {
			t.Fatalf("run %s: %+v %v", id, run, err)
		}
	}
	f.target.mu.Lock()
	hits := slices.Clone(f.target.hits)
	f.target.mu.Unlock()
	if len(hits) != 2*users { // a change and a check each
		t.Fatalf("%d calls reached the target, want %d", len(hits), 2*users)
	}
	slices.SortFunc(hits, time.Time.Compare)
	// With a burst of 1, call i takes its token no sooner than i tenths of a second after the
	// first token, which was taken after start; it reaches the target later still.
	for i, h := range hits {
		if early := time.Duration(i)*time.Second/perSecond - h.Sub(start); early > time.Microsecond { // the limiter computes in float64
			t.Fatalf("call %d reached the target %v early for %d a second", i, early, perSecond)
		}
	}
	// The waits are told, by connector: the calls, asked for at one instant, cannot all have
	// had a token at once.
	seen.mu.Lock()
	defer seen.mu.Unlock()
	if seen.n["rest"] < users-1 || seen.wait["rest"] <= 0 {
		t.Fatalf("throttles told: %v waits, %v in all", seen.n, seen.wait)
	}
}

// throttles is an Observer that keeps the rate-limit waits it is told of.
type throttles struct {
	mu   sync.Mutex
	n    map[string]int
	wait map[string]time.Duration
}

func (o *throttles) RunEnded(string, string, time.Duration) {}
func (o *throttles) Scheduled(time.Duration)                {}
func (o *throttles) Drifted()                               {}
func (o *throttles) Throttled(conn string, wait time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n, o.wait = map[string]int{}, map[string]time.Duration{}
	}
	o.n[conn]++
	o.wait[conn] += wait
}

// TestBusyTargetDoesNotHoldUpOthers: runs waiting for a saturated target hold no worker, so a
// run against another target, queued behind a burst of them, goes through at once: while the
// rate limit's clock stands still, it ends with the busy target's runs still waiting.
func TestBusyTargetDoesNotHoldUpOthers(t *testing.T) {
	t.Parallel()
	const busy = 8
	accounts := map[string]string{"other": "initial-Pw1!"}
	for i := range busy {
		accounts[fmt.Sprintf("user%d", i)] = "initial-Pw1!"
	}
	clock := rotation.NewManualClock()
	f := newFixture(t, fixtureOptions{accounts: accounts,
		engine: rotation.Options{Workers: 2, TargetRate: 4, TargetBurst: 2, RateClock: clock}})
	// The same service under another host name: another target to the limiter.
	other := f.create(vault.Record{Type: "login", Title: "Other API", Fields: []vault.Field{
		field("url", strings.Replace(f.target.srv.URL, "127.0.0.1", "localhost", 1))}})
	ctx := context.Background()
	rotate := func(login, resource string) string {
		uid := f.create(vault.Record{Type: "pamUser", Title: login, Fields: []vault.Field{
			field("login", login), field("password", "initial-Pw1!")}})
		f.settingsFor(uid, rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest", ResourceUID: resource})
		run, _, err := f.engine.Rotate(ctx, f.scope, uid, rotation.TriggerOnDemand)
		if err != nil {
			t.Fatal(err)
		}
		return run.ID
	}
	var busyRuns []string
	for i := range busy {
		busyRuns = append(busyRuns, rotate(fmt.Sprintf("user%d", i), f.resource))
	}
	otherRun := rotate("other", other)
	finished := func(id string) time.Time {
		run, err := f.engine.Wait(ctx, f.scope, id)
		if err != nil || run.Status != rotation.StatusSucceeded || run.FinishedAt == nil {
			t.Fatalf("run %s: %+v %v", id, run, err)
		}
		return *run.FinishedAt
	}
	finished(otherRun)
	// The clock has not moved: the busy target let through only the run its burst paid for.
	ended := 0
	for _, id := range busyRuns {
		run, err := f.engine.Get(ctx, f.scope, id)
		if err != nil {
			t.Fatal(err)
		}
		if run.Terminal() {
			ended++
		}
	}
	if ended > 1 {
		t.Fatalf("%d busy runs ended before the rate limit's clock moved; its burst pays for 1", ended)
	}
	// 8 runs of 2 operations at 4 a second take about 3.5 s; each gets through in its turn.
	clock.Drive(t, 100*time.Millisecond, time.Millisecond)
	for _, id := range busyRuns {
		finished(id)
	}
}

// TestHeartbeatGivesWayToABusyTarget: a heartbeat that finds its target without a token does
// not wait for one (holding up the scheduler) but comes back a minute later.
func TestHeartbeatGivesWayToABusyTarget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{engine: rotation.Options{TargetRate: 0.001, TargetBurst: 1,
		HeartbeatInterval: 50 * time.Millisecond, Tick: 10 * time.Millisecond}})
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	ctx := context.Background()
	verifies := func() int {
		f.target.mu.Lock()
		defer f.target.mu.Unlock()
		return len(f.target.hits)
	}
	deadline := time.Now().Add(10 * time.Second)
	for verifies() == 0 { // the first heartbeat takes the target's one token
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat reached the target")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var info rotation.Info
	for {
		var err error
		if info, err = f.engine.Info(ctx, f.scope, f.user); err != nil {
			t.Fatal(err)
		}
		// Put off by a minute: not by the 50 ms interval, nor left at the 5 minutes a heartbeat
		// under way is moved ahead by.
		if next := info.NextHeartbeatAt; next != nil && time.Until(*next) > 30*time.Second && time.Until(*next) < 2*time.Minute {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the next heartbeat was not put off: %v", info.NextHeartbeatAt)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := verifies(); n != 1 {
		t.Fatalf("%d checks reached a target with one token", n)
	}
	if info.Drift != nil && info.Drift.State != "" {
		t.Fatalf("a heartbeat that gave way marked the record %+v", info.Drift)
	}
}

// TestSlowHeartbeatDoesNotDelaySchedules: heartbeats run beside the scheduler, so a check that
// hangs on its target does not make another record's scheduled rotation late.
func TestSlowHeartbeatDoesNotDelaySchedules(t *testing.T) {
	f := newFixture(t, fixtureOptions{accounts: map[string]string{"alice": "initial-Pw1!", "bob": "initial-Pw1!"},
		engine: rotation.Options{HeartbeatInterval: 50 * time.Millisecond, Tick: 10 * time.Millisecond, TargetRate: -1}})
	f.target.mu.Lock()
	f.target.slow = map[string]time.Duration{"alice": 3 * time.Second}
	f.target.mu.Unlock()
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"}) // alice: heartbeats hang
	time.Sleep(200 * time.Millisecond)                                               // alice's first check is under way

	bob := f.create(vault.Record{Type: "pamUser", Title: "bob", Fields: []vault.Field{
		field("login", "bob"), field("password", "initial-Pw1!")}})
	due := time.Now().Add(300 * time.Millisecond)
	f.settingsFor(bob, rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest",
		Schedule: json.RawMessage(`{"type":"DAILY","time":"03:00","tz":"Etc/UTC"}`), NextRunAt: &due})
	ctx := context.Background()
	deadline := time.Now().Add(2500 * time.Millisecond) // before alice's check answers
	for {
		runs, _, err := f.engine.List(ctx, f.scope, rotation.RunFilter{RecordUID: bob})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) > 0 {
			if lag := runs[0].CreatedAt.Sub(due); lag > time.Second {
				t.Fatalf("bob's scheduled run was queued %v late", lag)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob's scheduled run was not queued while alice's heartbeat hung")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOnDemandGoesAheadOfScheduled: against a target busy with a scheduled batch, a rotation
// asked for by hand waits for the next tokens, not for the batch. The rate limit's clock is a
// manual one the test steps once the on-demand run is asked for; the scheduler's is an hour
// ahead of real time once the batch is due, and the test ticks it.
func TestOnDemandGoesAheadOfScheduled(t *testing.T) {
	t.Parallel()
	const batch = 8
	accounts := map[string]string{"urgent": "initial-Pw1!"}
	for i := range batch {
		accounts[fmt.Sprintf("user%d", i)] = "initial-Pw1!"
	}
	clock := rotation.NewManualClock()
	var ahead atomic.Int64 // of the scheduler's clock
	now := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	f := newFixture(t, fixtureOptions{accounts: accounts,
		engine: rotation.Options{Workers: 2, TargetRate: 4, TargetBurst: 2, Now: now, Tick: -1, HeartbeatInterval: -1, RateClock: clock}})
	ctx := context.Background()
	due := now().Add(time.Hour)
	var scheduled []string
	for i := range batch {
		uid := f.create(vault.Record{Type: "pamUser", Title: fmt.Sprintf("user%d", i), Fields: []vault.Field{
			field("login", fmt.Sprintf("user%d", i)), field("password", "initial-Pw1!")}})
		f.settingsFor(uid, rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest",
			Schedule: json.RawMessage(`{"type":"DAILY","time":"03:00","tz":"Etc/UTC"}`), NextRunAt: &due})
		scheduled = append(scheduled, uid)
	}
	urgent := f.create(vault.Record{Type: "pamUser", Title: "urgent", Fields: []vault.Field{
		field("login", "urgent"), field("password", "initial-Pw1!")}})
	f.settingsFor(urgent, rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	ahead.Store(int64(time.Hour))
	if err := f.engine.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	var runs []string
	deadline := time.Now().Add(10 * time.Second)
	for len(runs) < batch { // the whole batch is queued
		runs = runs[:0]
		for _, uid := range scheduled {
			if list, _, err := f.engine.List(ctx, f.scope, rotation.RunFilter{RecordUID: uid}); err == nil && len(list) > 0 {
				runs = append(runs, list[0].ID)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d scheduled runs queued", len(runs), batch)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The batch's first run took the burst; the rest wait for the clock, and so will this one.
	run, _, err := f.engine.Rotate(ctx, f.scope, urgent, rotation.TriggerOnDemand)
	if err != nil {
		t.Fatal(err)
	}
	clock.Drive(t, 50*time.Millisecond, 2*time.Millisecond)
	done, err := f.engine.Wait(ctx, f.scope, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != rotation.StatusSucceeded || done.FinishedAt == nil {
		t.Fatalf("the urgent run: %+v", done)
	}
	after := 0
	for _, id := range runs {
		run, err := f.engine.Wait(ctx, f.scope, id)
		if err != nil || run.Status != rotation.StatusSucceeded {
			t.Fatalf("scheduled run %s: %+v %v", id, run, err)
		}
		if run.FinishedAt.After(*done.FinishedAt) {
			after++
		}
	}
	// 8 scheduled runs of 2 operations at 4 a second take about 3.5 s.
	if after < batch/2 {
		t.Fatalf("the on-demand run ended after %d of %d scheduled runs, want before most", batch-after, batch)
	}
}
