package rotation_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/testenv/procs"
)

// pausePoints are where a node may stop while it holds a run: before anything is saved, with
// the candidate saved, just before and just after it changes the target, and with the change
// seen but not yet verified.
var pausePoints = []string{"state:running", "state:pending_saved", "effect:start", "effect:done", "state:target_changed"}

// TestPausedNodeCommitsNothing stops a node (SIGSTOP, the whole process) at each point of a
// rotation, past its lease, while a second node on the same PostgreSQL database takes the run
// over and finishes it. The first node is then resumed: it must neither change the target
// again nor commit anything for the run it lost. After both: the run succeeded once, the
// target saw exactly one change, and it holds the vault's current password.
func TestPausedNodeCommitsNothing(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts two engine processes per pause point")
	}
	f := newFixture(t, fixtureOptions{database: "postgres"})
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	f.engine.Stop(stop) // the fixture's own engine must not take the runs
	cancel()
	for _, point := range pausePoints {
		f.target.mu.Lock()
		f.target.changes = 0
		f.target.mu.Unlock()
		runs := f.runCount(f.user)

		a := nodeChild(t, f, "a", point, true)
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		waitStopped(t, a.Process.Pid, point)
		b := nodeChild(t, f, "b", "", false)
		if err := b.Run(); err != nil { // takes the run over once a's lease expired, and ends it
			t.Fatalf("%s: node b: %v\n%s", point, err, b.Stdout)
		}
		if err := a.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if err := a.Wait(); err != nil {
			t.Fatalf("%s: node a after it resumed: %v\n%s", point, err, a.Stdout)
		}

		if n := f.runCount(f.user); n != runs+1 {
			t.Fatalf("%s: %d runs, want %d", point, n, runs+1)
		}
		run := f.latestRunOf(f.user)
		if run.Status != rotation.StatusSucceeded {
			t.Fatalf("%s: the run ended %s (%+v)", point, run.Status, run.Error)
		}
		f.target.mu.Lock()
		changes := f.target.changes
		f.target.mu.Unlock()
		if changes != 1 {
			t.Errorf("paused at %s: the target changed %d times for one run", point, changes)
		}
		if got, want := f.current(), f.target.password("alice"); got != want {
			t.Errorf("paused at %s: vault current %q, target holds %q", point, got, want)
		}
		f.assertLiveInVault(f.user, "after a paused node resumed at "+point)
	}
}

// nodeChild is a crash-test child running as node, with a 3 s lease, stopping itself at pause.
func nodeChild(t *testing.T, f *fixture, node, pause string, rotate bool) *exec.Cmd {
	t.Helper()
	setup, _ := json.Marshal(crashSetup{Dir: f.dir, Storage: f.dv.Storage, TeamID: f.scope.TeamID, User: f.user})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(procs.QuickExit(os.Environ()), "KEYTURN_CRASH_CHILD=1", "KEYTURN_CRASH_SETUP="+string(setup),
		"KEYTURN_CRASH_NODE="+node, "KEYTURN_CRASH_LEASE=3s", "KEYTURN_PAUSEPOINT="+pause)
	if rotate {
		cmd.Env = append(cmd.Env, "KEYTURN_CRASH_ROTATE=1")
	}
	cmd.Stdout = &strings.Builder{}
	cmd.Stderr = cmd.Stdout
	return cmd
}

// waitStopped waits until process pid is stopped by a signal.
func waitStopped(t *testing.T, pid int, point string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatalf("%s: node a: %v", point, err)
		}
		// The state follows the command's closing parenthesis.
		if s := string(stat); strings.HasPrefix(s[strings.LastIndexByte(s, ')')+2:], "T") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node a never reached %s", point)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runCount returns how many runs a record has had.
func (f *fixture) runCount(uid string) int {
	f.t.Helper()
	runs, _, err := f.engine.List(context.Background(), f.scope, rotation.RunFilter{RecordUID: uid, Count: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	return len(runs)
}
