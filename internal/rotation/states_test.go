package rotation_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/vault"
)

// machineLog records what an engine did to its runs' states, and which failpoints it passed,
// so that a test can check all of it against the declared machine (rotation.Machine).
type machineLog struct {
	mu          sync.Mutex
	transitions []rotation.Transition
	failpoints  map[string]bool
}

// record wraps the engine options' hooks so that they also write to the log.
func (l *machineLog) record(o *rotation.Options) {
	l.failpoints = map[string]bool{}
	onTransition, failpoint := o.OnTransition, o.Failpoint
	o.OnTransition = func(tr rotation.Transition) {
		l.mu.Lock()
		l.transitions = append(l.transitions, tr)
		l.mu.Unlock()
		if onTransition != nil {
			onTransition(tr)
		}
	}
	o.Failpoint = func(name string) {
		l.mu.Lock()
		l.failpoints[name] = true
		l.mu.Unlock()
		if failpoint != nil {
			failpoint(name)
		}
	}
}

// check fails the test for every transition the machine does not declare (taken or refused),
// for a state stored although the machine says it lives in memory (or the other way round),
// and for a failpoint the machine does not list.
func (l *machineLog) check(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	durability := map[rotation.State]rotation.Durability{}
	for _, s := range rotation.Machine() {
		durability[s.State] = s.Stored
	}
	for _, tr := range l.transitions {
		if tr.Refused != nil || rotation.CheckTransition(tr.From, tr.To) != nil {
			t.Errorf("run %s: the engine tried %s → %s, which the state machine does not declare", tr.Run, tr.From, tr.To)
			continue
		}
		switch d := durability[tr.To]; {
		case d == rotation.Stored && !tr.Stored, d == rotation.InMemory && tr.Stored:
			t.Errorf("run %s: %s → %s was stored=%v, but the machine says %s is %s", tr.Run, tr.From, tr.To, tr.Stored, tr.To, d)
		}
	}
	declared := rotation.Failpoints()
	for name := range l.failpoints {
		if !slices.Contains(declared, name) {
			t.Errorf("the engine passed failpoint %q, which the machine does not list", name)
		}
	}
}

// TestCrashFailpointsAreDeclaredEdges checks the crash test against the machine: each of its
// failpoints is the entry into a state a declared edge leads to, or a declared side effect;
// and every state that is not terminal, and every side effect, is a failpoint it kills at.
func TestCrashFailpointsAreDeclaredEdges(t *testing.T) {
	entered := map[rotation.State]bool{}
	effects := map[rotation.Effect]bool{}
	machine := rotation.Machine()
	for _, s := range machine {
		for _, next := range s.Next {
			if err := rotation.CheckTransition(s.State, next); err != nil {
				t.Errorf("the table lists %s → %s, but CheckTransition refuses it: %v", s.State, next, err)
			}
			entered[next] = true
		}
		for _, e := range s.Effects {
			effects[e] = true
		}
	}
	for _, fp := range failpoints {
		if name, ok := strings.CutPrefix(fp, "state:"); ok {
			if !entered[rotation.State(name)] {
				t.Errorf("crash failpoint %q: no declared edge enters state %q", fp, name)
			}
			continue
		}
		if !effects[rotation.Effect(fp)] {
			t.Errorf("crash failpoint %q is neither a state entered by a declared edge nor a declared side effect", fp)
		}
	}
	for _, s := range machine {
		if entered[s.State] && !s.State.Terminal() && !slices.Contains(failpoints, "state:"+string(s.State)) {
			t.Errorf("the crash test never kills the engine on entering %s", s.State)
		}
	}
	for e := range effects {
		if !slices.Contains(failpoints, string(e)) {
			t.Errorf("the crash test never kills the engine at side effect %s", e)
		}
	}
	for _, fp := range rotation.Failpoints() {
		if !strings.HasPrefix(fp, "state:") && !effects[rotation.Effect(fp)] {
			t.Errorf("failpoint %q is listed but no state makes that side effect", fp)
		}
	}
}

// TestMachineTable checks the table's own shape: every state it names is declared, terminal
// states lead nowhere, every other state can fail and be handed over, and the undeclared
// edges are refused with ErrUndeclaredTransition.
func TestMachineTable(t *testing.T) {
	for _, s := range rotation.Machine() {
		for _, next := range s.Next {
			if !next.Known() {
				t.Errorf("%s → %s: %s is not declared", s.State, next, next)
			}
		}
		if s.State.Terminal() != (len(s.Next) == 0) {
			t.Errorf("%s: terminal=%v but %d next states", s.State, s.State.Terminal(), len(s.Next))
		}
		if s.Stored == 0 || s.Doc == "" {
			t.Errorf("%s: durability %v, doc %q: each state says whether it is stored, and what it means", s.State, s.Stored, s.Doc)
		}
		if !s.State.Terminal() && rotation.CheckTransition(s.State, rotation.StateNeedsAttention) != nil {
			t.Errorf("%s cannot be handed over (needs_attention)", s.State)
		}
	}
	for _, c := range []struct{ from, to rotation.State }{
		{rotation.StateQueued, rotation.StateCommitted},         // skips saving the candidate
		{rotation.StateRunning, rotation.StateVerified},         // verifies before anything changed
		{rotation.StatePendingSaved, rotation.StateCommitted},   // commits an unverified candidate
		{rotation.StatePendingSaved, rotation.StateSucceeded},   // ends without making the candidate current
		{rotation.StateScriptsDone, rotation.StateFailed},       // fails after the new password is current and its scripts ran
		{rotation.StateSucceeded, rotation.StateNeedsAttention}, // a terminal state is left
		{rotation.StateFailed, rotation.StateQueued},
		{rotation.State("rotating"), rotation.StateSucceeded}, // a state the machine does not know
	} {
		if err := rotation.CheckTransition(c.from, c.to); !errors.Is(err, rotation.ErrUndeclaredTransition) {
			t.Errorf("%s → %s: %v, want ErrUndeclaredTransition", c.from, c.to, err)
		}
	}
}

// TestEngineRefusesAnUndeclaredEdge has the engine take an edge the machine does not declare
// (queued → committed, as a bug skipping the pending save would): it refuses, commits
// nothing of it, and hands the run over needs_attention with the password untouched.
func TestEngineRefusesAnUndeclaredEdge(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fixtureOptions{})
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	stop, cancel := context.WithTimeout(ctx, 5*time.Second)
	f.engine.Stop(stop) // the fixture's engine must not run the run
	cancel()
	run, _, err := f.engine.Rotate(ctx, f.scope, f.user, rotation.TriggerOnDemand)
	if err != nil {
		t.Fatal(err)
	}

	var log machineLog
	opt := rotation.Options{BackoffBase: time.Millisecond}
	log.record(&opt)
	e := rotation.New(f.dv.DB, f.vault, audit.New(f.dv.DB, f.dv.Keys), script.NewRunner(script.Options{TempDir: t.TempDir()}),
		map[string]connector.Connector{"rest": restConnector{}}, opt)
	if err := e.ExecuteTo(ctx, run.ID, rotation.StateCommitted); err != nil {
		t.Fatalf("the refused edge should end the run needs_attention, not fail the execution: %v", err)
	}

	got, err := e.Get(ctx, f.scope, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != rotation.StatusNeedsAttention || got.State != string(rotation.StateNeedsAttention) ||
		got.Error == nil || got.Error.Code != rotation.CodeUndeclaredTransition {
		t.Fatalf("run after a refused edge: %+v (error %+v), want needs_attention %s", got, got.Error, rotation.CodeUndeclaredTransition)
	}
	var refused, taken []string
	for _, tr := range log.transitions {
		edge := string(tr.From) + "→" + string(tr.To)
		if tr.Refused != nil {
			refused = append(refused, edge)
		} else {
			taken = append(taken, edge)
		}
	}
	if !slices.Equal(refused, []string{"queued→committed"}) || !slices.Equal(taken, []string{"queued→needs_attention"}) {
		t.Fatalf("refused %v, taken %v; want queued→committed refused and queued→needs_attention taken", refused, taken)
	}
	if log.failpoints["state:committed"] {
		t.Error("the failpoint of the refused state was passed")
	}
	if cur := f.current(); cur != "initial-Pw1!" || f.target.password("alice") != "initial-Pw1!" {
		t.Errorf("the password moved: vault %q, target %q", cur, f.target.password("alice"))
	}
	for _, v := range f.versions() {
		if v.State == vault.StatePending {
			t.Errorf("a pending version was saved: %+v", v)
		}
	}
}

// TestRunInAnUnknownStateIsHandedOver resumes a run whose stored state the machine does not
// know (written by another version of keyturn, or damaged): it ends needs_attention, with its
// candidate kept pending, instead of staying "running" for ever.
func TestRunInAnUnknownStateIsHandedOver(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fixtureOptions{})
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	stop, cancel := context.WithTimeout(ctx, 5*time.Second)
	f.engine.Stop(stop)
	cancel()
	now := time.Now().UTC()
	id := uuid.NewString()
	if err := f.dv.DB.Tx(ctx, func(tx *store.Tx) error {
		return tx.InsertRun(ctx, store.Run{ID: id, TeamID: f.scope.TeamID, RecordUID: f.user, Trigger: rotation.TriggerOnDemand,
			Status: rotation.StatusRunning, State: "rotating", Attempt: 1, EffectStarted: true, CreatedAt: now, StartedAt: &now, UpdatedAt: now})
	}); err != nil {
		t.Fatal(err)
	}

	e := rotation.New(f.dv.DB, f.vault, audit.New(f.dv.DB, f.dv.Keys), script.NewRunner(script.Options{TempDir: t.TempDir()}),
		map[string]connector.Connector{"rest": restConnector{}}, rotation.Options{BackoffBase: time.Millisecond, Tick: -1})
	if err := e.Start(ctx); err != nil { // Start resumes every unfinished run
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		e.Stop(stop)
	})
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	run, err := e.Wait(wait, f.scope, id)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != rotation.StatusNeedsAttention || run.Error == nil || run.Error.Code != rotation.CodeUnknownState ||
		!strings.Contains(run.Error.Message, `"rotating"`) {
		t.Fatalf("a run in an unknown state: %+v (error %+v), want needs_attention %s naming the state", run, run.Error, rotation.CodeUnknownState)
	}
	if cur := f.current(); cur != "initial-Pw1!" {
		t.Errorf("the current password changed: %q", cur)
	}
}
