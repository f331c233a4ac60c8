package rotation_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/store"
)

// A run whose script another machine started (its node died or was paused there) is not
// settled while that script may still run: a node cannot kill a process on another machine,
// and the script could still change the target after the run was decided. Once the script's
// time limit has passed, the run is settled.
func TestScriptOnAnotherMachineIsWaitedFor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, fixtureOptions{})
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, VerifyWith: "rest"})
	stop, cancel := context.WithTimeout(ctx, 5*time.Second)
	f.engine.Stop(stop) // this test's own engine settles the run
	cancel()
	run, _, err := f.engine.Rotate(ctx, f.scope, f.user, rotation.TriggerOnDemand)
	if err != nil {
		t.Fatal(err)
	}

	// The run as a node on another machine left it: running, its script started there.
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	started := now()
	err = f.dv.DB.Tx(ctx, func(tx *store.Tx) error {
		stored, err := tx.RunByID(ctx, run.ID)
		if err != nil {
			return err
		}
		stored.Status, stored.State, stored.StartedAt = rotation.StatusRunning, string(rotation.StateRunning), &started
		if err := tx.UpdateRun(ctx, stored); err != nil {
			return err
		}
		return tx.SetScriptProcess(ctx, store.ScriptProcess{RunID: run.ID, PID: 1, Start: 1, Boot: "another-machine",
			EndsBy: started.Add(2 * time.Minute)}, started)
	})
	if err != nil {
		t.Fatal(err)
	}

	e := rotation.New(f.dv.DB, f.vault, audit.New(f.dv.DB, f.dv.Keys), script.NewRunner(script.Options{TempDir: t.TempDir()}),
		map[string]connector.Connector{"rest": restConnector{}}, rotation.Options{BackoffBase: time.Millisecond, Now: now})
	err = e.ExecuteTo(ctx, run.ID, rotation.StatePendingSaved)
	if err == nil || !strings.Contains(err.Error(), "on another machine may still be running") {
		t.Fatalf("a run whose script may still run on another machine was taken up: %v", err)
	}
	if got := f.latestRunOf(f.user); got.State != string(rotation.StateRunning) {
		t.Fatalf("the run moved to %s while the other machine's script may still run", got.State)
	}

	offset.Store(int64(2*time.Minute + time.Second)) // the script's time limit has passed
	if err := e.ExecuteTo(ctx, run.ID, rotation.StatePendingSaved); err != nil {
		t.Fatalf("once the other machine's script must have ended: %v", err)
	}
	if got := f.latestRunOf(f.user); got.State != string(rotation.StatePendingSaved) {
		t.Fatalf("the run is %s, want it taken up (pending_saved)", got.State)
	}
}
