package rotation_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	ldapconn "github.com/keyturn/keyturn/internal/connector/ldap"
	"github.com/keyturn/keyturn/internal/connector/mysql"
	"github.com/keyturn/keyturn/internal/connector/postgresql"
	sshconn "github.com/keyturn/keyturn/internal/connector/ssh"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/mariadbtest"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
	"github.com/keyturn/keyturn/internal/testenv/procs"
	"github.com/keyturn/keyturn/internal/vault"
)

// The crash test runs the engine in a child process (this test binary again) that kills
// itself with SIGKILL when it reaches a failpoint named by KEYTURN_FAILPOINT.
func TestMain(m *testing.M) {
	if os.Getenv("KEYTURN_CRASH_CHILD") == "1" {
		os.Exit(crashChild())
	}
	code := pgtest.Main(m)
	mariadbtest.Stop()
	os.Exit(code)
}

// failpoints are the places a child may die: after each committed state, and between a side
// effect on the target and the commit that records it.
var failpoints = []string{
	"state:running", "state:pending_saved", "effect:start", "effect:done", "state:target_changed",
	"state:verified", "effect:finalized", "state:committed", "state:scripts_done", "state:succeeded",
}

type crashSetup struct {
	Dir     string `json:"dir"`
	Storage string `json:"storage"`
	TeamID  int64  `json:"team_id"`
	User    string `json:"user"`
}

// crashChild opens the vault, starts the engine (which resumes unfinished runs), rotates the
// pamUser when asked, and waits until no run is unfinished.
func crashChild() int {
	var setup crashSetup
	if err := json.Unmarshal([]byte(os.Getenv("KEYTURN_CRASH_SETUP")), &setup); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		return 3
	}
	ctx := context.Background()
	dv, err := datadir.OpenStorage(ctx, setup.Dir, setup.Storage, datadir.Unseal{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 3
	}
	want, pause := os.Getenv("KEYTURN_FAILPOINT"), os.Getenv("KEYTURN_PAUSEPOINT")
	lease, _ := time.ParseDuration(os.Getenv("KEYTURN_CRASH_LEASE"))
	v := vault.New(dv.DB, dv.Keys, nil)
	e := rotation.New(dv.DB, v, audit.New(dv.DB, dv.Keys), script.NewRunner(script.Options{}),
		map[string]connector.Connector{"rest": restConnector{}, "opa": keyConnector{}, "ssh": sshconn.New(0), "mysql": mysql.New(0), "postgresql": postgresql.New(), "ldap": ldapconn.New(0)},
		rotation.Options{BackoffBase: time.Millisecond, Node: os.Getenv("KEYTURN_CRASH_NODE"), Lease: lease,
			Failpoint: func(name string) {
				switch name {
				case want:
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {} // never go on past the failpoint
				case pause: // the whole process stops here, as SIGSTOP or a long pause would stop a node
					_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
				}
			}})
	if err := e.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 3
	}
	scope := vault.Scope{TeamID: setup.TeamID}
	if os.Getenv("KEYTURN_CRASH_ROTATE") == "1" {
		if _, _, err := e.Rotate(ctx, scope, setup.User, rotation.TriggerOnDemand); err != nil {
			fmt.Fprintln(os.Stderr, "rotate:", err)
			return 3
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		runs, err := dv.DB.UnfinishedRuns(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "runs:", err)
			return 3
		}
		if len(runs) == 0 {
			stop, cancel := context.WithTimeout(ctx, 5*time.Second)
			e.Stop(stop)
			cancel()
			dv.Close()
			return 0
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "runs did not finish")
	return 4
}

// The crash test runs on SQLite and on PostgreSQL.
func TestCrashAtEveryStateKeepsALivePassword(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("the crash test starts many processes")
	}
	for _, database := range []string{"sqlite", "postgres"} {
		t.Run(database, func(t *testing.T) { crashAtEveryState(t, database) })
	}
}

func crashAtEveryState(t *testing.T, database string) {
	const kills = 60
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 42))
	t.Logf("seed %d", seed)

	f := newFixture(t, fixtureOptions{database: database})
	// The rotation script, and a post-rotation script on the resource (general method).
	f.attach(f.user, "change.py", changeScript)
	// The fixture's own engine must not run the child's rotations.
	stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	f.engine.Stop(stop)
	cancel()

	child := func(user, failpoint string, rotate bool) bool { return runChild(t, f, user, failpoint, rotate) }
	pg := newPGAccount(t, f)

	total, byMode := 0, map[string]int{}
	for round := 0; total < kills; round++ {
		mode := []string{"general", "scripts_only", "issued key", "postgresql"}[round%4]
		user := f.user
		switch mode {
		case "postgresql":
			user = pg.uid
			f.settingsFor(user, rotation.Settings{Method: rotation.MethodGeneral, Connector: "postgresql", ResourceUID: pg.resource})
		case "general":
			f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
		case "scripts_only":
			f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, VerifyWith: "rest"})
		default:
			user = f.robot
			f.settingsFor(user, rotation.Settings{Method: rotation.MethodGeneral, Connector: "opa"})
		}

		// Kill the child at random failpoints until a run gets through, checking after
		// each kill that a credential the target accepts is in the vault.
		rotate := true
		for attempt := 0; attempt < 4; attempt++ {
			fp := failpoints[rng.IntN(len(failpoints))]
			if !child(user, fp, rotate) {
				break
			}
			total++
			byMode[mode]++
			rotate = false
			when := fmt.Sprintf("round %d (%s), killed at %s", round, mode, fp)
			if user == pg.uid {
				pg.assertLiveInVault(when)
				continue
			}
			f.assertLiveInVault(user, when)
		}
		if child(user, "", false) {
			t.Fatal("a child without a failpoint was killed")
		}
		run := f.latestRunOf(user)
		if !run.Terminal() {
			t.Fatalf("round %d: run not terminal after recovery: %+v", round, run)
		}
		if run.Status == rotation.StatusNeedsAttention {
			t.Fatalf("round %d (%s): needs_attention although the target can be checked: %+v", round, mode, run.Error)
		}
		if user == pg.uid {
			if err := pg.verify(f.currentOf(user)); err != nil {
				t.Fatalf("round %d (%s): run %s ended %s; the vault's current does not log in: %v", round, mode, run.ID, run.Status, err)
			}
			continue
		}
		if user == f.robot {
			if sec, id := f.robotKey(); !f.target.keyWorks("robot", id, sec) {
				t.Fatalf("round %d (%s): run %s ended %s; the record's key %s does not work", round, mode, run.ID, run.Status, id)
			}
			continue
		}
		if got, want := f.current(), f.target.password("alice"); got != want {
			t.Fatalf("round %d (%s): run %s ended %s; vault current %q, target holds %q", round, mode, run.ID, run.Status, got, want)
		}
	}
	t.Logf("%d kills, by mode %v", total, byMode)
	if byMode["postgresql"] == 0 {
		t.Fatalf("no child rotating the PostgreSQL role was killed")
	}
}

// runChild runs the engine in a child process that settles every unfinished run and, when
// rotate is set, rotates user; it dies at failpoint. It reports whether it was killed.
func runChild(t *testing.T, f *fixture, user, failpoint string, rotate bool) (killed bool) {
	t.Helper()
	setup, _ := json.Marshal(crashSetup{Dir: f.dir, Storage: f.dv.Storage, TeamID: f.scope.TeamID, User: user})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(procs.QuickExit(os.Environ()), "KEYTURN_CRASH_CHILD=1", "KEYTURN_CRASH_SETUP="+string(setup),
		"KEYTURN_FAILPOINT="+failpoint)
	if rotate {
		cmd.Env = append(cmd.Env, "KEYTURN_CRASH_ROTATE=1")
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	if err != nil {
		t.Fatalf("child (failpoint %q): %v\n%s", failpoint, err, out)
	}
	return false
}

// assertLiveInVault checks that a credential the target accepts is stored in the vault as
// current or pending: alice's password, or one of robot's keys.
func (f *fixture) assertLiveInVault(uid, when string) {
	f.t.Helper()
	vs, err := f.vault.Versions(context.Background(), f.scope, uid)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, v := range vs {
		if v.State != vault.StateCurrent && v.State != vault.StatePending {
			continue
		}
		if uid == f.user && v.Value.Reveal() == f.target.password("alice") {
			return
		}
		if uid == f.robot && f.target.anyKey("robot", v.Value.Reveal()) {
			return
		}
	}
	f.t.Fatalf("%s: no credential the target accepts is current or pending in the vault: %+v", when, vs)
}

func (f *fixture) latestRunOf(uid string) rotation.Run {
	f.t.Helper()
	runs, _, err := f.engine.List(context.Background(), f.scope, rotation.RunFilter{RecordUID: uid, Count: 1})
	if err != nil || len(runs) == 0 {
		f.t.Fatalf("latest run: %v", err)
	}
	return runs[0]
}

// pgAccount is a PostgreSQL role rotated by the postgresql connector, with its pamUser and
// pamDatabase records.
type pgAccount struct {
	f                   *fixture
	uid, resource, role string
	acct                connector.Account
}

// newPGAccount creates a role with a password on the test's PostgreSQL server (which asks
// for passwords), an admin role, and the records that name them.
func newPGAccount(t *testing.T, f *fixture) *pgAccount {
	t.Helper()
	superURL := pgtest.RequirePasswords(t)
	u, err := url.Parse(superURL)
	if err != nil {
		t.Fatal(err)
	}
	n := fmt.Sprintf("%d_%d", os.Getpid(), time.Now().UnixNano())
	role, admin, adminPW, initial := "crash_app_"+n, "crash_admin_"+n, "crash-admin-Pw1!", "crash-initial-Pw1!"
	db, err := sql.Open("pgx", superURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"CREATE ROLE " + admin + " WITH LOGIN SUPERUSER PASSWORD '" + adminPW + "'",
		"CREATE ROLE " + role + " WITH LOGIN PASSWORD '" + initial + "'"} {
		if _, err := db.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	target := "postgres://" + u.Host + "/postgres?sslmode=disable"
	pg := &pgAccount{f: f, role: role}
	pg.resource = f.create(vault.Record{Type: "pamDatabase", Title: "PostgreSQL", Fields: []vault.Field{
		field("url", target), field("login", admin), field("password", adminPW),
	}})
	pg.uid = f.create(vault.Record{Type: "pamUser", Title: role, Fields: []vault.Field{
		field("login", role), field("password", initial),
	}})
	pg.acct = connector.Account{Login: role, Target: connector.Target{URL: target, Fields: map[string]string{}}}
	if err := pg.verify(initial); err != nil {
		t.Fatalf("the role's initial password: %v", err)
	}
	return pg
}

func (pg *pgAccount) verify(password string) error {
	return postgresql.New().Verify(context.Background(), pg.acct, secret.FromString(password))
}

// assertLiveInVault checks that a password the server accepts for the role is current or
// pending in the vault.
func (pg *pgAccount) assertLiveInVault(when string) {
	pg.f.t.Helper()
	vs, err := pg.f.vault.Versions(context.Background(), pg.f.scope, pg.uid)
	if err != nil {
		pg.f.t.Fatal(err)
	}
	for _, v := range vs {
		if (v.State == vault.StateCurrent || v.State == vault.StatePending) && pg.verify(v.Value.Reveal()) == nil {
			return
		}
	}
	pg.f.t.Fatalf("%s: no password the PostgreSQL server accepts is current or pending in the vault (%d versions)", when, len(vs))
}
