package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/app"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/connector/okta"
	"github.com/keyturn/keyturn/internal/connector/opa"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/vault"
)

var (
	faultRotations = flag.Int("faults.rotations", 200, "native Okta rotations TestFaultInjection runs (the README's figure is 10000)")
	faultOPA       = flag.Int("faults.opa", 20, "OPA service-user key rotations TestFaultInjection runs besides")
	faultRate      = flag.Float64("faults.rate", 0.20, "share of the emulator's answers TestFaultInjection turns into faults, split evenly over 500, timeout, 429 and reset")
)

// TestFaultInjection rotates Okta users with the native okta connector (and OPA service-user
// keys with the opa connector) against the emulator while a fifth of its answers are faults:
// 500, a timeout, 429 or a connection reset, the timeouts and resets after the request was
// applied (the password changed, the answer lost). Every run must end (succeeded, failed or
// needs_attention) and no credential may be lost: after each run the password Okta accepts is
// the vault's current one, or the run ended needs_attention with it kept as pending; for OPA the
// vault's current key works. The normal test run does a few hundred rotations; the README's
// figure comes from
//
//	go test ./bench -run TestFaultInjection -v -args -faults.rotations=10000 -faults.opa=500
func TestFaultInjection(t *testing.T) {
	const users, callers = 500, 64
	ctx := context.Background()
	rate := *faultRate / 4
	em := emulator.New(emulator.Options{Users: users, RateLimit: 1 << 30, RateWindow: time.Second,
		AuthnPerUserPerSecond: -1, LockoutThreshold: -1})
	answered := &answers{}
	srv := httptest.NewServer(answered.wrap(em))
	defer srv.Close()
	defer em.Close()

	dir := t.TempDir()
	if _, err := datadir.Init(ctx, dir, "faults", datadir.Unseal{}); err != nil {
		t.Fatal(err)
	}
	dv, err := datadir.Open(ctx, dir, datadir.Unseal{})
	if err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	team, err := dv.DB.TeamByName(ctx, "faults")
	if err != nil {
		t.Fatal(err)
	}
	scope := vault.Scope{TeamID: team.ID, Actor: "bench"}
	// A timed-out call gives up after a second (a hung request is the emulator's timeout).
	client := connector.NewHTTPClient()
	client.Timeout = time.Second
	svc := app.New(dv, app.Options{
		Rotation: rotation.Options{Workers: callers, HeartbeatInterval: -1, TargetRate: -1, Tick: -1,
			BackoffBase: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond},
		Connectors: map[string]connector.Connector{"okta": okta.New(okta.Options{Client: client}), "opa": opa.New(client)}})
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc.Stop(10 * time.Second)

	str := func(v string) []json.RawMessage { js, _ := json.Marshal(v); return []json.RawMessage{js} }
	create := func(rec vault.Record) string {
		out, err := svc.Vault.Create(ctx, scope, rec)
		if err != nil {
			t.Fatal(err)
		}
		return out.UID
	}
	setSettings := func(uid string, s rotation.Settings) {
		if _, err := svc.Engine.SetSettings(ctx, scope, uid, s); err != nil {
			t.Fatal(err)
		}
	}
	api := create(vault.Record{Type: "login", Title: "Okta API Access Details",
		Fields: []vault.Field{{Type: "url", Value: str(srv.URL)}, {Type: "password", Value: str(em.Token())}}})
	type account struct {
		uid, login string
		opa        bool
	}
	var accounts []account
	for i := 1; i <= users; i++ {
		uid := create(vault.Record{Type: "pamUser", Title: fmt.Sprintf("okta %d", i),
			Fields: []vault.Field{{Type: "login", Value: str(emulator.SeedLogin(i))}, {Type: "password", Value: str(emulator.SeedPassword(i))}}})
		setSettings(uid, rotation.Settings{Method: rotation.MethodGeneral, Connector: "okta", ResourceUID: api})
		accounts = append(accounts, account{uid: uid, login: emulator.SeedLogin(i)})
	}
	var robots []account
	if *faultOPA > 0 {
		adminID, adminSecret := em.AdminKey()
		opaTeam := create(vault.Record{Type: "login", Title: "OPA team admin key", Fields: []vault.Field{
			{Type: "url", Value: str(srv.URL + "/v1/teams/" + em.OPATeam())}, {Type: "login", Value: str(adminID)},
			{Type: "password", Value: str(adminSecret)}}})
		for i := range min(*faultOPA, 8) {
			name := fmt.Sprintf("robot-%d", i)
			if _, err := em.CreateServiceUser(name); err != nil {
				t.Fatal(err)
			}
			keyID, keySecret, err := em.AddServiceUserKey(name)
			if err != nil {
				t.Fatal(err)
			}
			uid := create(vault.Record{Type: "pamUser", Title: name,
				Fields: []vault.Field{{Type: "login", Value: str(name)}, {Type: "password", Value: str(keySecret)}},
				Custom: []vault.Field{{Type: "text", Label: opa.KeyIDField, Value: str(keyID)}}})
			setSettings(uid, rotation.Settings{Method: rotation.MethodGeneral, Connector: "opa", ResourceUID: opaTeam})
			robots = append(robots, account{uid: uid, login: name, opa: true})
		}
	}

	// lost reports why a credential is lost after a run of acct ended, or "" when it is not.
	lost := func(acct account, run rotation.Run) string {
		rec, err := svc.Vault.Get(ctx, scope, acct.uid)
		if err != nil {
			return err.Error()
		}
		current, _ := rec.Password()
		if acct.opa {
			var keyID string
			for _, f := range rec.Custom {
				if f.Label == opa.KeyIDField && len(f.Value) > 0 {
					_ = json.Unmarshal(f.Value[0], &keyID)
				}
			}
			if em.ServiceKeyValid(keyID, current) {
				return ""
			}
			return "OPA refuses the vault's current key"
		}
		live, _ := em.Password(acct.login)
		if live == current {
			return ""
		}
		versions, err := svc.Vault.Versions(ctx, scope, acct.uid)
		if err != nil {
			return err.Error()
		}
		for _, v := range versions {
			if v.State == vault.StatePending && v.Value.Reveal() == live && run.Status == rotation.StatusNeedsAttention {
				return ""
			}
		}
		return "Okta accepts a password that is neither the vault's current one nor kept as pending by a needs_attention run"
	}

	em.SetFaults(emulator.Faults{Error500Rate: rate, TimeoutRate: rate, RateLimitRate: rate, ResetRate: rate,
		AfterApply: true, Seed: 20261203})
	em.ResetStats()

	var (
		mu       sync.Mutex
		byStatus = map[string]int{}
		byKind   = map[string]map[string]int{"okta": {}, "opa": {}}
		byCode   = map[string]int{}  // runs that did not succeed, by status and error code
		stuck    = map[string]bool{} // accounts whose live credential is kept as pending
		problems []string
	)
	var next, nextOPA atomic.Int64
	// Each caller owns its accounts, so that no two runs of one record overlap.
	rotate := func(acct account) {
		kind := map[bool]string{false: "okta", true: "opa"}[acct.opa]
		wait, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		run, _, err := svc.Engine.Rotate(wait, scope, acct.uid, rotation.TriggerOnDemand)
		if err == nil {
			run, err = svc.Engine.Wait(wait, scope, run.ID)
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", acct.login, err))
			return
		case !run.Terminal():
			problems = append(problems, fmt.Sprintf("%s: run %s did not end: %s/%s", acct.login, run.ID, run.Status, run.State))
			return
		}
		byStatus[run.Status]++
		byKind[kind][run.Status]++
		if run.Error != nil {
			byCode[run.Status+"/"+run.Error.Code]++
		}
		if run.Status == rotation.StatusNeedsAttention {
			stuck[acct.login] = true
		}
		if why := lost(acct, run); why != "" {
			problems = append(problems, fmt.Sprintf("%s: run %s ended %s (%+v): %s", acct.login, run.ID, run.Status, run.Error, why))
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for g := range callers {
		var own []account
		for i := g; i < len(accounts); i += callers {
			own = append(own, accounts[i])
		}
		var robot *account
		if g < len(robots) {
			robot = &robots[g]
		}
		wg.Go(func() {
			for k := 0; ; k++ {
				if robot != nil && k%2 == 1 && nextOPA.Add(1) <= int64(*faultOPA) {
					rotate(*robot)
					continue
				}
				if next.Add(1) > int64(*faultRotations) {
					if robot == nil || nextOPA.Load() >= int64(*faultOPA) {
						return
					}
					continue
				}
				rotate(own[k%len(own)])
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stats := em.Stats()
	em.SetFaults(emulator.Faults{})

	runs := 0
	for _, n := range byStatus {
		runs += n
	}
	t.Logf("%d runs (%d okta, %d opa) in %v: %.0f runs/s", runs, sum(byKind["okta"]), sum(byKind["opa"]), elapsed.Round(time.Millisecond),
		float64(runs)/elapsed.Seconds())
	t.Logf("outcomes: okta %v, opa %v; not succeeded by code: %v; accounts that ended a run needs_attention: %d",
		byKind["okta"], byKind["opa"], byCode, len(stuck))
	lostAnswers := stats.PasswordChanges - answered.changes.Load()
	t.Logf("faults injected: %v (of %d requests); passwords changed: %d, of which %d with the answer lost (timeout or reset after the change)",
		stats.Faults, sum64(stats.Requests), stats.PasswordChanges, lostAnswers)
	t.Logf("lost credentials or unfinished runs: %d", len(problems))
	for _, p := range problems[:min(len(problems), 20)] {
		t.Error(p)
	}
	want := *faultRotations
	if len(robots) > 0 {
		want += *faultOPA
	}
	if runs != want {
		t.Errorf("%d runs ended, want %d", runs, want)
	}
	for _, kind := range []string{emulator.Fault500, emulator.FaultTimeout, emulator.Fault429, emulator.FaultReset} {
		if *faultRate > 0 && stats.Faults[kind] == 0 {
			t.Errorf("no %s fault was injected: the test proves nothing about it", kind)
		}
	}
	if *faultRate > 0 && lostAnswers <= 0 {
		t.Error("no password change lost its answer: the interesting case was not tested")
	}
	if byStatus[rotation.StatusSucceeded] < runs/2 {
		t.Errorf("only %d of %d runs succeeded: the faults should mostly be retried away", byStatus[rotation.StatusSucceeded], runs)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func sum64(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// answers counts the change_password answers the emulator delivered with 200: the changes it
// applied, less these, are the ones whose answer a timeout or a reset lost.
type answers struct {
	changes atomic.Int64
}

func (a *answers) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/credentials/change_password") {
			h.ServeHTTP(w, r)
			return
		}
		cw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(cw, r)
		if cw.status == http.StatusOK {
			a.changes.Add(1)
		}
	})
}

// statusWriter records the status written; it passes Hijack on, for the emulator's resets.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}
