package rotation_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/procs"
)

// TestLeftScriptKilledBeforeTheRunIsSettled leaves a run as a crash would, mid-script, with
// its script still running (its server's death signal missed): the engine that settles the
// run kills that script, and everything in its sandbox, before deciding anything.
func TestLeftScriptKilledBeforeTheRunIsSettled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, fixtureOptions{})
	f.attach(f.user, "change.py", changeScript)
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, VerifyWith: "rest"})
	stop, cancel := context.WithTimeout(ctx, 5*time.Second)
	f.engine.Stop(stop)
	cancel()
	// A crash as the script was starting: the run is left running, its candidate pending.
	if !runChild(t, f, f.user, "effect:start", true) {
		t.Fatal("the child was not killed at effect:start")
	}
	run := f.latestRunOf(f.user)
	if run.Terminal() {
		t.Fatalf("run %s is not left unfinished: %+v", run.ID, run)
	}

	// The script that crash left: it runs on, and its child in a new session with it.
	marker := procs.Marker()
	sh := "#!/bin/bash\nsetsid sleep " + marker + " </dev/null >/dev/null 2>&1 &\nsleep 1000\n"
	sb, err := script.NewSandbox(script.Sandboxed, "")
	if err != nil {
		t.Fatalf("the tests run as root, as CI does: %v", err)
	}
	left := make(chan time.Time, 1)
	recorded := make(chan struct{})
	go func() {
		_, _ = script.NewRunner(script.Options{Sandbox: &sb}).Run(ctx, script.Script{Name: "left.sh", Content: []byte(sh),
			Timeout: time.Minute, Started: func(ctx context.Context, p script.Process) error {
				defer close(recorded)
				return f.dv.DB.Tx(ctx, func(tx *store.Tx) error {
					return tx.SetScriptProcess(ctx, store.ScriptProcess{RunID: run.ID, PID: p.PID, Start: p.Start, Boot: p.Boot}, time.Now())
				})
			}}, secret.Secret{}, nil)
		left <- time.Now()
	}()
	<-recorded
	for range 1000 {
		if len(procs.With(marker)) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(procs.With(marker)) == 0 {
		t.Fatal("the left script's child did not start")
	}

	e := rotation.New(f.dv.DB, f.vault, audit.New(f.dv.DB, f.dv.Keys),
		script.NewRunner(script.Options{KillGrace: 200 * time.Millisecond}),
		map[string]connector.Connector{"rest": restConnector{}}, rotation.Options{BackoffBase: time.Millisecond})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stop, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		e.Stop(stop)
	}()
	var died time.Time
	select {
	case died = <-left:
	case <-time.After(20 * time.Second):
		t.Fatal("the left script was not killed")
	}
	if pids := procs.With(marker); len(pids) > 0 {
		t.Errorf("the left script's child outlived it: %v", pids)
	}
	for range 2000 {
		if run = f.latestRunOf(f.user); run.Terminal() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !run.Terminal() || run.FinishedAt == nil {
		t.Fatalf("run not settled: %+v", run)
	}
	if run.FinishedAt.Before(died) {
		t.Errorf("the run was settled at %v, before its left script died at %v", run.FinishedAt, died)
	}
	if got, want := f.current(), f.target.password("alice"); got != want {
		t.Errorf("run ended %s; vault current %q, target holds %q", run.Status, got, want)
	}
}
