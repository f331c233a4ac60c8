package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	xssh "golang.org/x/crypto/ssh"

	"github.com/keyturn/keyturn/internal/app"
	"github.com/keyturn/keyturn/internal/connector"
	ldapconn "github.com/keyturn/keyturn/internal/connector/ldap"
	mysqlconn "github.com/keyturn/keyturn/internal/connector/mysql"
	"github.com/keyturn/keyturn/internal/connector/postgresql"
	sshconn "github.com/keyturn/keyturn/internal/connector/ssh"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/mariadbtest"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
	"github.com/keyturn/keyturn/internal/testenv/slapdtest"
	"github.com/keyturn/keyturn/internal/testenv/sshdtest"
	"github.com/keyturn/keyturn/internal/testenv/testdb"
	"github.com/keyturn/keyturn/internal/vault"
)

// connectorWorkers is the rotation engine's default worker count (rotation.Options.Workers):
// the bare harness runs its operations with the same concurrency.
const connectorWorkers = 16

// connectorCase is one connector in BenchmarkConnectors. Adding a connector is one entry
// in connectorCases: a function that starts its server and says how to make accounts on it,
// and one that opens an admin session doing the server's own bare password change.
type connectorCase struct {
	name  string // the connector, as rotation settings name it (and app.DefaultConnectors)
	start func(b *testing.B) *connTarget
	// bare opens one admin session, from the target as the connector is given it; each bare
	// worker holds one for its whole run, as a DBA's open shell would.
	bare func(ctx context.Context, t connector.Target) (bareAdmin, error)
	// rounds is how many times one iteration changes every account: enough that an iteration
	// of the bare harness lasts a good part of a second on the development machine, so that one
	// run (-benchtime 1x) measures more than scheduling noise.
	rounds int
}

var connectorCases = []connectorCase{
	{"postgresql", startPostgreSQLTarget, openPostgreSQLAdmin, 8},
	{"mysql", startMariaDBTarget, openMariaDBAdmin, 32},
	{"ssh", startSSHTarget, openSSHAdmin, 1},
	{"ldap", startLDAPTarget, openLDAPAdmin, 16},
}

// connTarget is a started server: its resource record, the same as a connector.Target, the
// password every new account starts with, and how to make accounts.
type connTarget struct {
	resource vault.Record
	target   connector.Target
	initial  string
	// accounts creates n accounts with the initial password and returns their logins; they
	// are removed (if at all) when tb ends.
	accounts func(tb testing.TB, n int) []string
}

// bareAdmin is an open admin session on a server.
type bareAdmin interface {
	// SetPassword is the server's own password change for login, on this session.
	SetPassword(ctx context.Context, login string, password secret.Secret) error
	Close() error
}

// BenchmarkConnectors measures, for each connector against its real server on loopback (the
// test servers of internal/testenv: PostgreSQL 15 with fsync off, MariaDB with its general log
// and innodb_flush_log_at_trx_commit=0, sshd with LogLevel DEBUG3, slapd with an mdb database
// and its log at level stats), a fixed workload per iteration over the same accounts, with the
// same concurrency (the engine's 16 workers) but for bare_1:
//   - bare_1: the server's own password change, one at a time on one admin session opened
//     beforehand (PostgreSQL ALTER ROLE … PASSWORD with a SCRAM verifier, as psql's \password
//     sends it; MariaDB ALTER USER … IDENTIFIED BY PASSWORD; sshd chpasswd, the line on its
//     stdin, in a new session of an open connection as root; slapd the Password Modify extended
//     operation of RFC 3062, as ldappasswd sends it, bound as a password admin over StartTLS),
//     in bare_ops/s;
//   - bare: the same on 16 admin sessions at once, in bare_ops/s;
//   - bare_login: the same, then a fresh login as the account with the new password (what a
//     rotation's verify costs), in bare_op+login/s;
//   - connector: the connector's Rotate then Verify, without the vault: a fresh admin login, the
//     change, a fresh login as the account, in rotate+verify/s;
//   - keyturn: complete rotations through the engine (pending saved durably in the SQLite vault,
//     change, verify by a fresh login, commit), in rotations/s, with x-bare and x-bare_login
//     (how many times keyturn's rate the bare rates are, when they ran first in the same run),
//     the mean time of each step (runPhases) and the vault writer's load (writer-busy-%,
//     writer-µs/run).
//
// Every operation counted succeeded (a run that did not end succeeded fails the benchmark), and
// after each sub-benchmark every fourth account is checked: the last password set logs in and
// the one before it is refused. The per-target rate limit is off (TargetRate -1), so the figure
// is the gateway's own. ns/op is per account changed, not per iteration.
//
// One iteration changes each of 32 accounts a fixed number of times (connectorCase.rounds: 8
// for postgresql, 32 for mysql, 1 for ssh, 16 for ldap); -short changes 8 accounts once
// whatever -benchtime says (CI runs the benchmarks with -short -benchtime 50x), as
// BenchmarkCluster shrinks itself.
//
// sshd runs every command through the admin's login shell, so root's shell start-up files
// (bash reads ~/.bashrc for a command over SSH) are part of every chpasswd, bare or not.
//
// slapd's mdb database syncs every write to disk (slapdtest sets no dbnosync), unlike the two
// databases here: its bare rates are the disk's fsync rate, and its writes are serialized, so
// 16 sessions change passwords no faster than one. Every ldap connection (bare, connector
// and keyturn alike) is ldap:// with StartTLS, trusting the server's certificate by the
// resource's "LDAP CA Certificate" field, as a pamDirectory record makes it by default.
func BenchmarkConnectors(b *testing.B) {
	accounts := 32
	if testing.Short() {
		accounts = 8
	}
	for _, cc := range connectorCases {
		b.Run(cc.name, func(b *testing.B) {
			benchConnector(b, cc, accounts)
		})
	}
}

func benchConnector(b *testing.B, cc connectorCase, n int) {
	ctx := context.Background()
	t := cc.start(b)
	conn, ok := app.DefaultConnectors()[cc.name]
	if !ok {
		b.Fatalf("keyturn ships no connector %q", cc.name)
	}
	acct := func(login string) connector.Account { return connector.Account{Login: login, Target: t.target} }
	rates := map[string]float64{}

	// bare, bare_login and connector share accounts whose passwords the harness keeps.
	logins := t.accounts(b, n)
	cur := make([]secret.Secret, n)
	prev := make([]secret.Secret, n)
	for i := range cur {
		cur[i] = secret.FromString(t.initial)
	}
	harness := func(name, unit string, workers int, op func(ctx context.Context, w, i int, next secret.Secret) error, setup func(ctx context.Context) func()) {
		b.Run(name, func(b *testing.B) {
			done := setup(ctx)
			defer done()
			rounds := roundsOf(b, cc.rounds)
			b.ResetTimer()
			start := time.Now()
			for range rounds {
				err := onWorkers(ctx, n, workers, func(w, i int) error {
					next := benchPassword()
					if err := op(ctx, w, i, next); err != nil {
						return fmt.Errorf("%s: %w", logins[i], err)
					}
					prev[i], cur[i] = cur[i], next
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			rates[name] = reportRate(b, rounds*n, elapsed, unit)
			checkSample(b, conn, acct, logins, cur, prev)
		})
	}
	var admins []bareAdmin
	openAdmins := func(workers int) func(ctx context.Context) func() {
		return func(ctx context.Context) func() {
			admins = make([]bareAdmin, workers)
			for w := range admins {
				a, err := cc.bare(ctx, t.target)
				if err != nil {
					b.Fatalf("open admin session: %v", err)
				}
				admins[w] = a
			}
			return func() {
				for _, a := range admins {
					a.Close()
				}
			}
		}
	}
	noSetup := func(context.Context) func() { return func() {} }
	bare := func(ctx context.Context, w, i int, next secret.Secret) error {
		return admins[w].SetPassword(ctx, logins[i], next)
	}
	harness("bare_1", "bare_ops/s", 1, bare, openAdmins(1))
	harness("bare", "bare_ops/s", connectorWorkers, bare, openAdmins(connectorWorkers))
	harness("bare_login", "bare_op+login/s", connectorWorkers, func(ctx context.Context, w, i int, next secret.Secret) error {
		if err := admins[w].SetPassword(ctx, logins[i], next); err != nil {
			return err
		}
		return conn.Verify(ctx, acct(logins[i]), next)
	}, openAdmins(connectorWorkers))
	harness("connector", "rotate+verify/s", connectorWorkers, func(ctx context.Context, w, i int, next secret.Secret) error {
		if err := conn.Rotate(ctx, acct(logins[i]), cur[i], next); err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		if err := conn.Verify(ctx, acct(logins[i]), next); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		return nil
	}, noSetup)

	b.Run("keyturn", func(b *testing.B) {
		benchKeyturn(b, cc, conn, t, n, rates)
	})
}

// benchKeyturn rotates n accounts per iteration through the engine, over a fresh vault.
func benchKeyturn(b *testing.B, cc connectorCase, conn connector.Connector, t *connTarget, n int, rates map[string]float64) {
	ctx := context.Background()
	env := keyturnFor(b, cc.name, conn, t, n)
	rounds := roundsOf(b, cc.rounds)
	var retries atomic.Int64
	phases := env.phases
	b.ResetTimer()
	start, before := time.Now(), env.svc.DB.WriterStats()
	for range rounds {
		err := onWorkers(ctx, n, n, func(_, i int) error {
			run, created, err := env.svc.Engine.Rotate(ctx, env.scope, env.uids[i], rotation.TriggerOnDemand)
			if err == nil && !created {
				err = fmt.Errorf("run %s of an earlier rotation was still active", run.ID)
			}
			if err == nil {
				run, err = env.svc.Engine.Wait(ctx, env.scope, run.ID)
			}
			if err != nil {
				return fmt.Errorf("rotate %s: %w", env.logins[i], err)
			}
			if run.Status != rotation.StatusSucceeded {
				return fmt.Errorf("rotate %s: run %s ended %s: %+v", env.logins[i], run.ID, run.Status, run.Error)
			}
			if run.Attempt > 1 {
				retries.Add(run.Attempt - 1)
			}
			phases.add(run)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	elapsed, after := time.Since(start), env.svc.DB.WriterStats()
	b.StopTimer()
	rate := reportRate(b, rounds*n, elapsed, "rotations/s")
	b.ReportMetric(float64(retries.Load()), "retries")
	reportWriter(b, after.Busy-before.Busy, elapsed, rounds*n)
	phases.report(b)
	for _, ref := range []string{"bare", "bare_login"} {
		if r, ok := rates[ref]; ok {
			b.ReportMetric(r/rate, "x-"+ref)
		}
	}
	// The vault's current password logs in, the one before it is refused.
	cur := make([]secret.Secret, n)
	prev := make([]secret.Secret, n)
	for i, uid := range env.uids {
		vs, err := env.svc.Vault.Versions(ctx, env.scope, uid)
		if err != nil {
			b.Fatal(err)
		}
		if len(vs) < 2 || vs[0].State != vault.StateCurrent {
			b.Fatalf("%s: after %d rotations the vault holds %d versions, the newest %q", env.logins[i], rounds, len(vs), stateOf(vs))
		}
		cur[i], prev[i] = vs[0].Value, vs[1].Value
	}
	checkSample(b, conn, func(login string) connector.Account { return connector.Account{Login: login, Target: t.target} }, env.logins, cur, prev)
}

// runPhases times each step of the engine's rotations from its OnTransition hook, which it
// calls once a state is reached (for a stored state, once its commit is durable):
//   - queue-ms: from the run's creation until a worker starts it;
//   - save-ms: the candidate generated, sealed and durably saved as pending;
//   - change-ms: the durable note that the change starts, then the connector's Rotate (for the
//     database connectors a fresh admin login, then the statement);
//   - verify-ms: the connector's Verify, a fresh login as the account;
//   - commit-ms: the promotion (re-seal the record, then its durable commit with the run's end).
type runPhases struct {
	mu     sync.Mutex
	stamps map[string][]rotation.Transition
	at     map[string][]time.Time
	sum    map[rotation.State]time.Duration
	runs   int
}

func newRunPhases() *runPhases {
	return &runPhases{stamps: map[string][]rotation.Transition{}, at: map[string][]time.Time{}, sum: map[rotation.State]time.Duration{}}
}

// seen is the engine's OnTransition hook.
func (p *runPhases) seen(t rotation.Transition) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stamps[t.Run] = append(p.stamps[t.Run], t)
	p.at[t.Run] = append(p.at[t.Run], now)
}

// add counts a run that ended, from its creation.
func (p *runPhases) add(run rotation.Run) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := run.CreatedAt
	for i, t := range p.stamps[run.ID] {
		p.sum[t.To] += p.at[run.ID][i].Sub(prev)
		prev = p.at[run.ID][i]
	}
	delete(p.stamps, run.ID)
	delete(p.at, run.ID)
	p.runs++
}

// report reports the mean time of each step, in ms, and forgets the runs counted.
func (p *runPhases) report(b *testing.B) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range []struct {
		to   rotation.State
		name string
	}{{rotation.StateRunning, "queue-ms"}, {rotation.StatePendingSaved, "save-ms"}, {rotation.StateTargetChanged, "change-ms"},
		{rotation.StateVerified, "verify-ms"}, {rotation.StateSucceeded, "commit-ms"}} {
		if p.runs > 0 {
			b.ReportMetric(float64(p.sum[st.to].Microseconds())/1000/float64(p.runs), st.name)
		}
	}
	p.sum, p.runs = map[rotation.State]time.Duration{}, 0
}

func stateOf(vs []vault.PasswordVersion) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0].State
}

// keyturnEnv is a running keyturn engine over a fresh vault holding the target's resource
// record and n pamUser records set to rotate through its connector.
type keyturnEnv struct {
	svc    *app.App
	phases *runPhases
	scope  vault.Scope
	uids   []string
	logins []string
}

// keyturnFor starts the engine with its defaults but for the per-target rate limit (off), the
// heartbeat (off) and a hook timing the rotations' steps, over a fresh vault and n fresh accounts; all is gone when the call ends.
func keyturnFor(b *testing.B, name string, conn connector.Connector, t *connTarget, n int) *keyturnEnv {
	ctx := context.Background()
	dv, _, _ := testdb.DataDirOn(b, "sqlite", "acme")
	phases := newRunPhases()
	svc := app.New(dv, app.Options{Rotation: rotation.Options{TargetRate: -1, HeartbeatInterval: -1, OnTransition: phases.seen},
		Connectors: map[string]connector.Connector{name: conn}})
	if err := svc.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Stop(10 * time.Second) })
	team, err := dv.DB.TeamByName(ctx, "acme")
	if err != nil {
		b.Fatal(err)
	}
	env := &keyturnEnv{svc: svc, phases: phases, scope: vault.Scope{TeamID: team.ID, Actor: "bench"}, logins: t.accounts(b, n)}
	res, err := svc.Vault.Create(ctx, env.scope, t.resource)
	if err != nil {
		b.Fatal(err)
	}
	for _, login := range env.logins {
		rec, err := svc.Vault.Create(ctx, env.scope, vault.Record{Type: "pamUser", Title: login,
			Fields: []vault.Field{strField("login", login), strField("password", t.initial)}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := svc.Engine.SetSettings(ctx, env.scope, rec.UID, rotation.Settings{Method: rotation.MethodGeneral,
			Connector: name, ResourceUID: res.UID}); err != nil {
			b.Fatal(err)
		}
		env.uids = append(env.uids, rec.UID)
	}
	return env
}

// roundsOf is how many times every account is changed: b.N times perIteration, or once with
// -short.
func roundsOf(b *testing.B, perIteration int) int {
	if testing.Short() {
		return 1
	}
	return b.N * perIteration
}

// reportRate reports ops/elapsed in unit, and ns/op per operation; it returns the rate.
func reportRate(b *testing.B, ops int, elapsed time.Duration, unit string) float64 {
	rate := float64(ops) / elapsed.Seconds()
	b.ReportMetric(rate, unit)
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(ops), "ns/op")
	return rate
}

// onWorkers calls f(w, i) for every i in [0, n) from workers goroutines (w is the goroutine's
// index) and returns the first error; the others still finish what they started.
func onWorkers(ctx context.Context, n, workers int, f func(w, i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(w, i); err != nil {
					errs <- err
					next.Store(int64(n)) // no new work
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// checkSample checks every fourth account: its current password logs in and, once it was
// changed, the one before is refused.
func checkSample(b *testing.B, conn connector.Connector, acct func(string) connector.Account, logins []string, cur, prev []secret.Secret) {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < len(logins); i += 4 {
		if err := conn.Verify(ctx, acct(logins[i]), cur[i]); err != nil {
			b.Fatalf("%s: the last password set does not log in: %v", logins[i], err)
		}
		if prev[i].IsZero() {
			continue
		}
		if err := conn.Verify(ctx, acct(logins[i]), prev[i]); !errors.Is(err, connector.ErrRejected) {
			b.Fatalf("%s: the password before the last one is not refused: %v", logins[i], err)
		}
	}
}

// benchPassword is a fresh password every server here takes: letters, digits and signs, no
// quote, colon or line break.
func benchPassword() secret.Secret {
	var r [12]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic(err)
	}
	return secret.FromString("Bench-" + hex.EncodeToString(r[:]) + "-Pw9!")
}

func strField(typ, value string) vault.Field {
	js, _ := json.Marshal(value)
	return vault.Field{Type: typ, Value: []json.RawMessage{js}}
}

var benchAccountSeq atomic.Int64

// benchAccountName is a name no other benchmark of this process uses.
func benchAccountName(prefix string) string {
	return fmt.Sprintf("%s%d_%d", prefix, os.Getpid(), benchAccountSeq.Add(1))
}

// --- PostgreSQL ---

// startPostgreSQLTarget uses the shared test server (pgtest), asking every role but its
// superuser for a SCRAM-SHA-256 password over TCP, with a CREATEROLE admin.
func startPostgreSQLTarget(b *testing.B) *connTarget {
	superURL := pgtest.RequirePasswords(b)
	u, err := url.Parse(superURL)
	if err != nil {
		b.Fatal(err)
	}
	super, err := sql.Open("pgx", superURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { super.Close() })
	exec := func(tb testing.TB, q string) {
		if _, err := super.ExecContext(context.Background(), q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	admin, adminPW, initial := benchAccountName("bench_admin_"), "Bench-admin-Pw1!", "Bench-initial-Pw1!"
	exec(b, "CREATE ROLE "+admin+" WITH LOGIN CREATEROLE PASSWORD '"+adminPW+"'")
	target := "postgres://" + u.Host + "/postgres?sslmode=disable"
	return &connTarget{
		resource: vault.Record{Type: "pamDatabase", Title: "PostgreSQL", Fields: []vault.Field{
			strField("url", target), strField("login", admin), strField("password", adminPW)}},
		target:  connector.Target{URL: target, AdminLogin: admin, AdminSecret: secret.FromString(adminPW), Fields: map[string]string{}},
		initial: initial,
		accounts: func(tb testing.TB, n int) []string {
			logins := make([]string, n)
			for i := range logins {
				logins[i] = benchAccountName("bench_role_")
				exec(tb, "CREATE ROLE "+logins[i]+" WITH LOGIN PASSWORD '"+initial+"'")
			}
			return logins
		},
	}
}

type pgAdmin struct{ conn *pgx.Conn }

func openPostgreSQLAdmin(ctx context.Context, t connector.Target) (bareAdmin, error) {
	cfg, err := pgx.ParseConfig(t.URL)
	if err != nil {
		return nil, fmt.Errorf("parse the target url: %w", err)
	}
	cfg.User, cfg.Password = t.AdminLogin, t.AdminSecret.Reveal()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("log in as the admin: %w", err)
	}
	return pgAdmin{conn}, nil
}

// SetPassword sends ALTER ROLE with a SCRAM verifier computed here, as psql's \password does.
func (a pgAdmin) SetPassword(ctx context.Context, login string, password secret.Secret) error {
	v, err := postgresql.ScramVerifier(password)
	if err != nil {
		return err
	}
	_, err = a.conn.Exec(ctx, "ALTER ROLE "+pgx.Identifier{login}.Sanitize()+" WITH PASSWORD '"+v+"'", pgx.QueryExecModeSimpleProtocol)
	return err
}

func (a pgAdmin) Close() error { return a.conn.Close(context.Background()) }

// --- MariaDB ---

// startMariaDBTarget uses the shared test server (mariadbtest), with an admin that may only
// CREATE USER (which ALTER USER needs).
func startMariaDBTarget(b *testing.B) *connTarget {
	srv := mariadbtest.Start(b)
	root := srv.Root(b)
	exec := func(tb testing.TB, q string, args ...any) {
		if _, err := root.ExecContext(context.Background(), q, args...); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	admin, adminPW, initial := benchAccountName("ktb_admin_"), "Bench-admin-Pw1!", "Bench-initial-Pw1!"
	exec(b, "CREATE USER ?@'%' IDENTIFIED BY ?", admin, adminPW)
	exec(b, "GRANT CREATE USER ON *.* TO ?@'%'", admin)
	target := "mysql://" + srv.Addr() + "?tls=false"
	return &connTarget{
		resource: vault.Record{Type: "pamDatabase", Title: "MariaDB", Fields: []vault.Field{
			strField("url", target), strField("login", admin), strField("password", adminPW)}},
		target:  connector.Target{URL: target, AdminLogin: admin, AdminSecret: secret.FromString(adminPW), Fields: map[string]string{}},
		initial: initial,
		accounts: func(tb testing.TB, n int) []string {
			logins := make([]string, n)
			for i := range logins {
				logins[i] = benchAccountName("ktb_")
				exec(tb, "CREATE USER ?@'%' IDENTIFIED BY ?", logins[i], initial)
			}
			return logins
		},
	}
}

type mariaDBAdmin struct {
	db   *sql.DB
	conn *sql.Conn
}

func openMariaDBAdmin(ctx context.Context, t connector.Target) (bareAdmin, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, fmt.Errorf("parse the target url: %w", err)
	}
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Passwd = "tcp", u.Host, t.AdminLogin, t.AdminSecret.Reveal()
	cfg.TLSConfig = u.Query().Get("tls")
	cfg.InterpolateParams = true
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("admin connector: %w", err)
	}
	db := sql.OpenDB(c)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("log in as the admin: %w", err)
	}
	return mariaDBAdmin{db, conn}, nil
}

// SetPassword sends ALTER USER … IDENTIFIED BY PASSWORD with the account's hash, as the
// connector does, so the clear password is not in the general log.
func (a mariaDBAdmin) SetPassword(ctx context.Context, login string, password secret.Secret) error {
	_, err := a.conn.ExecContext(ctx, "ALTER USER ?@'%' IDENTIFIED BY PASSWORD ?", login, mysqlconn.NativeHash(password))
	return err
}

func (a mariaDBAdmin) Close() error {
	a.conn.Close()
	return a.db.Close()
}

// --- sshd ---

// startSSHTarget starts an sshd (sshdtest) whose root logs in with a key; the accounts are
// Linux users checked against /etc/shadow.
func startSSHTarget(b *testing.B) *connTarget {
	srv := sshdtest.Start(b)
	const initial = "Bench-initial-ssh-Pw1"
	key := strField("secret", string(srv.AdminKey))
	key.Label = sshconn.PrivateKeyField
	hostKey := strField("text", srv.HostKey)
	hostKey.Label = sshconn.HostKeyField
	return &connTarget{
		resource: vault.Record{Type: "pamMachine", Title: "ssh host", Fields: []vault.Field{
			strField("url", srv.URL()), strField("login", "root")}, Custom: []vault.Field{hostKey, key}},
		target: connector.Target{URL: srv.URL(), AdminLogin: "root", Fields: map[string]string{sshconn.HostKeyField: srv.HostKey},
			Secrets: map[string]secret.Secret{sshconn.PrivateKeyField: secret.FromString(string(srv.AdminKey))}},
		initial: initial,
		accounts: func(tb testing.TB, n int) []string {
			logins := make([]string, n)
			for i := range logins {
				logins[i] = sshdtest.User(tb, initial)
			}
			return logins
		},
	}
}

type sshAdmin struct{ client *xssh.Client }

func openSSHAdmin(ctx context.Context, t connector.Target) (bareAdmin, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, fmt.Errorf("parse the target url: %w", err)
	}
	hostKey, _, _, _, err := xssh.ParseAuthorizedKey([]byte(t.Fields[sshconn.HostKeyField]))
	if err != nil {
		return nil, fmt.Errorf("parse the host key: %w", err)
	}
	signer, err := xssh.ParsePrivateKey(t.Secrets[sshconn.PrivateKeyField].Bytes())
	if err != nil {
		return nil, fmt.Errorf("parse the admin key: %w", err)
	}
	client, err := xssh.Dial("tcp", u.Host, &xssh.ClientConfig{User: t.AdminLogin, Auth: []xssh.AuthMethod{xssh.PublicKeys(signer)},
		HostKeyCallback: xssh.FixedHostKey(hostKey), Timeout: 15 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("log in as the admin: %w", err)
	}
	return sshAdmin{client}, nil
}

// SetPassword runs chpasswd in a new session of the open connection, the line on its stdin.
func (a sshAdmin) SetPassword(ctx context.Context, login string, password secret.Secret) error {
	sess, err := a.client.NewSession()
	if err != nil {
		return fmt.Errorf("open a session: %w", err)
	}
	defer sess.Close()
	sess.Stdin = strings.NewReader(login + ":" + password.Reveal() + "\n")
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	if err := sess.Run(sshconn.ChpasswdCommand); err != nil {
		return fmt.Errorf("chpasswd: %w: %s", err, strings.ReplaceAll(strings.TrimSpace(stderr.String()), password.Reveal(), secret.Redacted))
	}
	return nil
}

func (a sshAdmin) Close() error { return a.client.Close() }

// --- slapd ---

// startLDAPTarget starts a slapd (slapdtest) with a password admin (a cn=pwadmin- entry, which
// may write every userPassword), named by the pamDirectory record as a user would by default:
// ldap:// with StartTLS, the server's self-signed certificate as the CA to trust. The accounts
// are inetOrgPerson entries, their logins their DNs.
func startLDAPTarget(b *testing.B) *connTarget {
	srv := slapdtest.Start(b)
	const adminPW, initial = "Bench-admin-Pw1!", "Bench-initial-ldap-Pw1!"
	admin := srv.AddAdmin(b, adminPW)
	ca := strField("text", srv.CACert)
	ca.Label = ldapconn.FieldCACertificate
	return &connTarget{
		resource: vault.Record{Type: "pamDirectory", Title: "OpenLDAP", Fields: []vault.Field{
			strField("url", srv.URL()), strField("login", admin), strField("password", adminPW)}, Custom: []vault.Field{ca}},
		target: connector.Target{URL: srv.URL(), AdminLogin: admin, AdminSecret: secret.FromString(adminPW),
			Fields: map[string]string{ldapconn.FieldCACertificate: srv.CACert}},
		initial: initial,
		accounts: func(tb testing.TB, n int) []string {
			logins := make([]string, n)
			for i := range logins {
				_, logins[i] = srv.AddUser(tb, initial)
			}
			return logins
		},
	}
}

type ldapAdmin struct{ conn *ldap.Conn }

// openLDAPAdmin dials the target's ldap:// url, starts TLS trusting the target's CA
// certificate (as the connector does) and binds as the admin.
func openLDAPAdmin(ctx context.Context, t connector.Target) (bareAdmin, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, fmt.Errorf("parse the target url: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(t.Fields[ldapconn.FieldCACertificate])) {
		return nil, errors.New("the target's CA certificate field holds no PEM certificate")
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	conn, err := ldap.DialURL(t.URL)
	if err != nil {
		return nil, fmt.Errorf("connect to the directory: %w", err)
	}
	conn.SetTimeout(15 * time.Second)
	if err := conn.StartTLS(cfg); err != nil {
		conn.Close()
		return nil, fmt.Errorf("start TLS: %w", err)
	}
	if err := conn.Bind(t.AdminLogin, t.AdminSecret.Reveal()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("log in as the admin: %w", err)
	}
	return ldapAdmin{conn}, nil
}

// SetPassword sends the Password Modify extended operation (RFC 3062) for the account's DN, as
// ldappasswd -S does and as the connector does, so slapd hashes the password itself.
func (a ldapAdmin) SetPassword(ctx context.Context, login string, password secret.Secret) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := a.conn.PasswordModify(&ldap.PasswordModifyRequest{UserIdentity: login, NewPassword: password.Reveal()}); err != nil {
		return fmt.Errorf("password modify: %w", err)
	}
	return nil
}

func (a ldapAdmin) Close() error { return a.conn.Close() }
