package rotation

import (
	"errors"
	"fmt"
	"slices"
)

// This file declares the run state machine: its states, the edges between them (every
// failure edge included), which states are written to the run's row before the engine goes
// on and which live only in memory, and the side effects on the target made in each state.
// The engine takes no edge this table does not declare (see job.enter, job.commitTo and
// job.finish): an undeclared one ends the run needs_attention instead.
//
// The happy paths (Machine has every edge, failures included, and says for each state what
// a crash in it leaves):
//
//	queued ──► running ──► pending_saved ──► target_changed ──► verified ──► committed ──► scripts_done ──► succeeded
//	                 └──(the target issues the credential)──┘             └──(no post-rotation scripts)──► succeeded
//
// The promise behind it: every password that may be live on the target is in the vault
// (current or pending). So the candidate is stored as pending (pending_saved), and that the
// target may change from now on (the run's effect_started flag) is stored, before the target
// is touched; a run resumed with that flag set asks the target which password it accepts
// before deciding anything. A target that issues the credential itself (an OPA key) keeps
// the old one working until the run retires it, so its new credential is saved as pending
// with target_changed, right after the issue call.

// State is where a run is in the rotation state machine.
type State string

// Run states, in the order of the happy path.
const (
	StateQueued         State = "queued"
	StateRunning        State = "running"        // the run has started; nothing is saved yet
	StatePendingSaved   State = "pending_saved"  // the candidate is in the vault as pending
	StateTargetChanged  State = "target_changed" // the connector, the scripts or the issuing target reported success
	StateVerified       State = "verified"       // the target accepts the candidate (or no check exists)
	StateCommitted      State = "committed"      // the candidate is the current password; post-rotation scripts are next
	StateScriptsDone    State = "scripts_done"   // post-rotation scripts ran
	StateSucceeded      State = "succeeded"
	StateFailed         State = "failed"
	StateNeedsAttention State = "needs_attention"
)

// Durability says whether a state is written to the run's row (committed) before the engine
// makes its next side effect, or lives only in the memory of the process running it.
type Durability int

// The durabilities.
const (
	// Stored: committed before the next side effect; a crash resumes from it.
	Stored Durability = iota + 1
	// InMemory: never committed; a crash resumes from the last stored state, which settles
	// the run as well (by asking the target when it may have changed).
	InMemory
	// StoredSometimes: committed on some paths only; Spec.Doc says which.
	StoredSometimes
)

func (d Durability) String() string {
	switch d {
	case Stored:
		return "stored"
	case InMemory:
		return "in memory"
	case StoredSometimes:
		return "stored on some paths"
	}
	return fmt.Sprintf("Durability(%d)", int(d))
}

// Effect names a side effect on the target. Each is also a failpoint (Options.Failpoint),
// where a crash test may kill the engine.
type Effect string

// The side effects on the target.
const (
	EffectStart     Effect = "effect:start"     // about to ask the target to change the password or issue a credential
	EffectDone      Effect = "effect:done"      // the target (or the scripts) answered
	EffectFinalized Effect = "effect:finalized" // the target retired the old credentials
)

// Transition is one state change of a run, as reported to Options.OnTransition.
type Transition struct {
	Run      string
	From, To State
	Stored   bool  // the new state was committed to the run's row; false: it lives in memory only
	Refused  error // non-nil when the machine does not declare the edge: the engine did not take it
}

// Spec is what the machine declares about one state.
type Spec struct {
	State   State
	Stored  Durability
	Next    []State  // the states a run may move to from this one
	Effects []Effect // side effects on the target made while the run is in this state
	Doc     string   // what the state means, and when it is stored
}

// ErrUndeclaredTransition means the engine was about to move a run along an edge the machine
// does not declare. It refuses, and ends the run needs_attention from its last stored state.
var ErrUndeclaredTransition = errors.New("rotation: transition not declared by the run state machine")

// CodeUndeclaredTransition is the error code of a run ended needs_attention because the
// engine refused an undeclared transition.
const CodeUndeclaredTransition = "undeclared_transition"

// CodeUnknownState is the error code of a run ended needs_attention because its stored state
// is not one this version of the machine knows (a row written by another version, or damaged).
const CodeUnknownState = "unknown_state"

// machine is the table. Keep Doc true: the tests check the durabilities against what the
// engine does.
var machine = []Spec{
	{State: StateQueued, Stored: Stored,
		Next: []State{StateRunning, StateFailed, StateNeedsAttention},
		Doc:  "inserted by Rotate or the scheduler; fails when its settings, records or connectors cannot be loaded"},
	{State: StateRunning, Stored: StoredSometimes,
		Next:    []State{StatePendingSaved, StateTargetChanged, StateFailed, StateNeedsAttention},
		Effects: []Effect{EffectStart, EffectDone},
		Doc: "the run has started. Stored (with effect_started) only before a target issues the credential itself " +
			"(the issue call is the side effect; the new credential is saved with target_changed); when keyturn " +
			"makes the password it is in memory only, and the row stays queued until pending_saved"},
	{State: StatePendingSaved, Stored: Stored,
		Next:    []State{StateTargetChanged, StateVerified, StateFailed, StateNeedsAttention},
		Effects: []Effect{EffectStart, EffectDone},
		Doc: "the candidate is sealed in the vault as pending, committed before the target is touched; effect_started " +
			"is committed in this state before the change. Goes to verified directly when the change failed or was " +
			"interrupted but the target accepts the candidate"},
	{State: StateTargetChanged, Stored: StoredSometimes,
		Next: []State{StateVerified, StateFailed, StateNeedsAttention},
		Doc: "the target reported success. Stored when nothing can verify (the report is all there is) and when the " +
			"target issued the credential (stored with it as pending); in memory only when a verifier exists, since " +
			"a crash is then settled by asking the target"},
	{State: StateVerified, Stored: InMemory,
		Next:    []State{StateCommitted, StateSucceeded, StateFailed, StateNeedsAttention},
		Effects: []Effect{EffectFinalized},
		Doc: "the target accepts the candidate, or nothing can check it. Fails when an issuing target cannot retire " +
			"the old credentials (the new one is then current); succeeds at once when no post-rotation script is left"},
	{State: StateCommitted, Stored: Stored,
		Next: []State{StateScriptsDone, StateSucceeded, StateFailed, StateNeedsAttention},
		Doc:  "the candidate is current and the old password previous, committed before the post-rotation scripts run"},
	{State: StateScriptsDone, Stored: InMemory,
		Next: []State{StateSucceeded, StateNeedsAttention},
		Doc:  "the post-rotation scripts ran; the success is committed next"},
	{State: StateSucceeded, Stored: Stored, Doc: "terminal"},
	{State: StateFailed, Stored: Stored, Doc: "terminal; a candidate that never became current is marked failed"},
	{State: StateNeedsAttention, Stored: Stored, Doc: "terminal; both passwords are kept, the candidate as pending"},
}

var specs = func() map[State]Spec {
	m := make(map[State]Spec, len(machine))
	for _, s := range machine {
		m[s.State] = s
	}
	return m
}()

// Machine returns the run state machine, state by state in the order of the happy path.
func Machine() []Spec {
	out := slices.Clone(machine)
	for i := range out {
		out[i].Next, out[i].Effects = slices.Clone(out[i].Next), slices.Clone(out[i].Effects)
	}
	return out
}

// Known reports whether the machine declares the state.
func (s State) Known() bool {
	_, ok := specs[s]
	return ok
}

// Terminal reports whether a run in this state has ended.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateNeedsAttention
}

// CheckTransition returns nil when the machine declares the edge from → to, and an error
// wrapping ErrUndeclaredTransition otherwise. needs_attention is declared from every state
// that is not terminal, even one the machine does not know: it is where the engine hands over
// a run it cannot go on with, both passwords kept.
func CheckTransition(from, to State) error {
	if to == StateNeedsAttention && !from.Terminal() {
		return nil
	}
	if spec, ok := specs[from]; ok && slices.Contains(spec.Next, to) {
		return nil
	}
	return fmt.Errorf("%w: %s → %s", ErrUndeclaredTransition, from, to)
}

// Failpoints returns every failpoint the engine may call Options.Failpoint with: "state:"
// and the name of each state a declared edge enters (called once the run is in it), and each
// side effect on the target.
func Failpoints() []string {
	var out []string
	for _, s := range machine {
		if s.State != StateQueued { // a run is created queued: no edge enters it
			out = append(out, failpointOf(s.State))
		}
	}
	for _, e := range []Effect{EffectStart, EffectDone, EffectFinalized} {
		out = append(out, string(e))
	}
	return out
}

func failpointOf(s State) string { return "state:" + string(s) }
