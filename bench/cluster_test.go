package bench

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
)

// clusterResults keeps each BenchmarkCluster case's figures, for the ratios of the cases that
// follow it in the same run.
var clusterResults = map[string]clusterFigures{}

type clusterFigures struct{ rotations, reads float64 }

// BenchmarkCluster runs real `keyturn server` processes (the binary built once for the run)
// against the Okta emulator in this process, rate limits off (emulator and --target-rate 0):
// SQLite with one node, then one PostgreSQL database with 1, 2 and 3 nodes (--node nN, each
// with its own data directory holding a copy of the key file). Each case rotates every user
// once, natively, the rotations asked of the nodes in turn, timed from the first request until
// every run has ended; then it reads passwords (GET …/notation, keeper://UID/field/password)
// from concurrent clients spread over the nodes, each read checked against Okta's password.
//
// Besides rotations/s and reads/s (and their ratios to postgres-1node and sqlite-1node) it
// reports the CPU seconds each process used in each phase (each node, PostgreSQL's postmaster
// and backends, and this process: the emulator and the clients), their total a rotation and a
// read, and what other processes of the machine used meanwhile.
//
// claim-% is the CPU that lease work costs a run over the CPU a run costs the nodes and
// PostgreSQL (on PostgreSQL). PostgreSQL counts the nodes' claims while they rotate (a trigger,
// see countClaims: claims/run), and the benchmark the runs open meanwhile (open-runs, on
// average). Once the nodes have stopped, the CPU (of the backend and of its client, this
// process) of each lease operation is measured on the same database: an empty claim passing
// over that many open runs of another node, a renewal (of 16 leases, per lease) and the lease
// deadline Rotate reads. A run costs its deadline, a renewal each third of the lease while a
// node holds it (queued or executing), and its share of the claims.
//
// It runs once whatever -benchtime says; -short rotates 300 users instead of 1,000.
func BenchmarkCluster(b *testing.B) {
	for _, tc := range []struct {
		name     string
		postgres bool
		nodes    int
	}{
		{"sqlite-1node", false, 1},
		{"postgres-1node", true, 1},
		{"postgres-2nodes", true, 2},
		{"postgres-3nodes", true, 3},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var fig clusterFigures
			ran := false
			for b.Loop() { // one experiment, timed as a whole: b.Loop keeps it to one call
				if !ran {
					fig = benchCluster(b, tc.postgres, tc.nodes)
					ran = true
				}
			}
			b.ReportMetric(0, "ns/op") // meaningless here: the figures are the experiment's
			clusterResults[tc.name] = fig
			for _, base := range []string{"postgres-1node", "sqlite-1node"} {
				if ref, ok := clusterResults[base]; ok && base != tc.name {
					short := strings.ReplaceAll(base, "-", "")
					b.ReportMetric(fig.rotations/ref.rotations, "rot-x-"+short)
					b.ReportMetric(fig.reads/ref.reads, "reads-x-"+short)
				}
			}
		})
	}
}

func benchCluster(b *testing.B, postgres bool, nodes int) clusterFigures {
	users, reads := 1000, 20000
	if testing.Short() {
		users, reads = 300, 6000
	}
	const askers, readers = 32, 32
	bin := keyturnBinary(b)

	emu := emulator.New(emulator.Options{Users: users, AuthnPerUserPerSecond: -1, LockoutThreshold: -1, RateLimit: 1 << 30})
	emuSrv := httptest.NewServer(emu)
	defer func() { emu.Close(); emuSrv.Close() }()

	// The vault: initialised once, then each node its own data directory with the key file.
	root := b.TempDir()
	dirs := make([]string, nodes)
	for i := range dirs {
		dirs[i] = filepath.Join(root, fmt.Sprintf("n%d", i+1))
	}
	var storage []string
	var dsn string
	if postgres {
		dsn = pgtest.DSN(b)
		storage = []string{"--storage", dsn}
	}
	creds := clusterInit(b, bin, dirs[0], storage)
	key, err := os.ReadFile(filepath.Join(dirs[0], datadir.KeyFileName))
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range dirs[1:] {
		if err := os.MkdirAll(d, 0o700); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, datadir.KeyFileName), key, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	servers := make([]*clusterNode, nodes)
	for i := range servers {
		args := append([]string{"--data", dirs[i], "--target-rate", "0", "--heartbeat-interval", "0"}, storage...)
		if postgres {
			args = append(args, "--node", fmt.Sprintf("n%d", i+1))
		}
		servers[i] = startClusterNode(b, bin, args...)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 4 * askers, MaxIdleConnsPerHost: 2 * askers}}
	defer client.CloseIdleConnections()
	for _, s := range servers {
		s.client = client
		s.token = s.serviceToken(b, creds)
	}

	// The database, read directly to know when every run has ended.
	var db *sql.DB
	var pg *pgServer
	if postgres {
		db, err = sql.Open("pgx", dsn)
		if err == nil {
			var perr error
			if pg, perr = findPostgres(db); perr != nil {
				b.Logf("PostgreSQL's CPU is not measured: %v", perr)
			}
		}
	} else {
		db, err = sql.Open("sqlite", "file:"+store.SQLitePath(dirs[0])+"?mode=ro&_pragma=busy_timeout(10000)")
	}
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()

	// The records: the org's, and a pamUser a user, rotated natively.
	field := func(typ, value string) map[string]any { return map[string]any{"type": typ, "value": []string{value}} }
	var api struct {
		UID string `json:"uid"`
	}
	if err := servers[0].call("POST", "/records", map[string]any{"type": "login", "title": "Okta API Access Details",
		"folder": "Okta", "fields": []any{field("url", emuSrv.URL), field("password", emu.Token())}}, http.StatusCreated, &api); err != nil {
		b.Fatal(err)
	}
	uids := make([]string, users)
	if err := parallel(users, 16, func(i int) error {
		s := servers[i%nodes]
		var rec struct {
			UID string `json:"uid"`
		}
		if err := s.call("POST", "/records", map[string]any{"type": "pamUser", "title": fmt.Sprintf("okta user %d", i+1),
			"folder": "Okta", "fields": []any{field("login", emulator.SeedLogin(i+1)), field("password", emulator.SeedPassword(i+1))}},
			http.StatusCreated, &rec); err != nil {
			return err
		}
		uids[i] = rec.UID
		return s.call("PUT", "/records/"+rec.UID+"/rotation",
			map[string]any{"method": "general", "connector": "okta", "resource_uid": api.UID}, http.StatusOK, nil)
	}); err != nil {
		b.Fatal(err)
	}

	// The rotations, asked of the nodes in turn, timed until every run has ended.
	if postgres {
		countClaims(b, db)
	}
	claims0 := claimsSoFar(b, db, postgres)
	cpu0 := takeCPU(servers, pg)
	start := time.Now()
	asked := make(chan error, 1)
	go func() {
		asked <- parallel(users, askers, func(i int) error {
			return servers[i%nodes].call("POST", "/records/"+uids[i]+"/rotate", nil, http.StatusAccepted, nil)
		})
	}()
	var polls, openSum int // the open runs, summed over the polls
	ended := func() int {
		var done, open int
		if err := db.QueryRow(`SELECT count(*) FILTER (WHERE status NOT IN ('queued', 'running')),
			count(*) FILTER (WHERE status IN ('queued', 'running')) FROM rotation_runs`).Scan(&done, &open); err != nil {
			b.Fatal(err)
		}
		polls++
		openSum += open
		return done
	}
	deadline := time.Now().Add(5 * time.Minute)
	for ended() < users {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d runs ended after 5 minutes", ended(), users)
		}
		time.Sleep(25 * time.Millisecond) // light on the database, which counts in the figures
	}
	claims := claimsSoFar(b, db, postgres) - claims0
	cpuRot := takeCPU(servers, pg).minus(cpu0)
	if err := <-asked; err != nil {
		b.Fatal(err)
	}
	runs := checkRuns(b, db, users)
	rotElapsed := runs.last.Sub(start) // to the end of the last run, not of the poll that saw it

	// The reads, spread over the nodes, each checked against Okta's password.
	var next atomic.Int64
	cpu1 := takeCPU(servers, pg)
	start = time.Now()
	if err := parallel(readers, readers, func(g int) error {
		s := servers[g%nodes]
		for k := int(next.Add(1)) - 1; k < reads; k = int(next.Add(1)) - 1 {
			i := k % users
			var got struct {
				Value string `json:"value"`
			}
			if err := s.call("GET", "/notation?ref="+url.QueryEscape("keeper://"+uids[i]+"/field/password"), nil, http.StatusOK, &got); err != nil {
				return err
			}
			if live, _ := emu.Password(emulator.SeedLogin(i + 1)); got.Value != live {
				return fmt.Errorf("user %d: the vault's password is not Okta's", i+1)
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	readElapsed := time.Since(start)
	cpuRead := takeCPU(servers, pg).minus(cpu1)
	for _, s := range servers {
		s.stop(b)
	}

	fig := clusterFigures{rotations: float64(users) / rotElapsed.Seconds(), reads: float64(reads) / readElapsed.Seconds()}
	b.ReportMetric(fig.rotations, "rotations/s")
	b.ReportMetric(fig.reads, "reads/s")
	b.ReportMetric(float64(runs.exec.Microseconds())/1000, "run-ms")
	cpuRot.report(b, "rot", "rotation", users, rotElapsed)
	cpuRead.report(b, "read", "read", reads, readElapsed)
	if pg != nil {
		// A run's lease work: the deadline Rotate reads, a renewal each third of the lease
		// while a node holds it (queued or executing), and its share of the nodes' claims, each
		// passing over the runs open then (as many as on average).
		open := (openSum + polls - 1) / polls
		before := claimsSoFar(b, db, postgres)
		lease := measureLeaseCPU(b, dsn, uids, open)
		if got := claimsSoFar(b, db, postgres) - before; got != lease.claims { // the count is right
			b.Fatalf("PostgreSQL counted %d claims, want %d", got, lease.claims)
		}
		claimsPerRun := float64(claims) / float64(users)
		renewsPerRun := runs.held.Seconds() / (clusterLease / 3).Seconds()
		perRun := lease.deadline.Seconds() + renewsPerRun*lease.renew.Seconds() + claimsPerRun*lease.claim.Seconds()
		runCPU := (cpuRot.total() - cpuRot.self).Seconds() / float64(users) // the nodes' and PostgreSQL's
		b.ReportMetric(claimsPerRun, "claims/run")
		b.ReportMetric(float64(open), "open-runs")
		b.ReportMetric(float64(lease.claim.Microseconds()), "claim-cpu-µs")
		b.ReportMetric(float64(lease.renew.Microseconds()), "renew-cpu-µs/lease")
		b.ReportMetric(float64(lease.deadline.Microseconds()), "deadline-cpu-µs")
		b.ReportMetric(100*perRun/runCPU, "claim-%")
	}
	b.Logf("%d users, %d nodes: %d rotations in %s (mean run %s), %d reads in %s; CPU s rotating %s; reading %s",
		users, nodes, users, rotElapsed.Round(time.Millisecond), runs.exec.Round(time.Microsecond), reads,
		readElapsed.Round(time.Millisecond), cpuRot, cpuRead)
	return fig
}

// keyturnBinary builds cmd/keyturn once for the test binary's run (removed by TestMain).
func keyturnBinary(b *testing.B) string {
	b.Helper()
	built.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "keyturn-bench-")
		if built.err != nil {
			return
		}
		path := filepath.Join(built.dir, "keyturn")
		out, err := exec.Command("go", "build", "-o", path, "../cmd/keyturn").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build ./cmd/keyturn: %w: %s", err, out)
			return
		}
		built.path = path
	})
	if built.err != nil {
		b.Fatal(built.err)
	}
	return built.path
}

var built struct {
	sync.Once
	dir, path string
	err       error
}

type clusterCreds struct {
	KeyID     string `json:"key_id"`
	KeySecret string `json:"key_secret"`
}

// clusterInit runs `keyturn init` and returns the admin API key it printed.
func clusterInit(b *testing.B, bin, dir string, storage []string) clusterCreds {
	b.Helper()
	cmd := exec.Command(bin, append([]string{"init", "--data", dir, "--team", "acme"}, storage...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("keyturn init: %v: %s", err, stderr.Bytes())
	}
	var creds clusterCreds
	if err := json.Unmarshal(out, &creds); err != nil {
		b.Fatalf("keyturn init printed no key: %v", err)
	}
	return creds
}

// clusterNode is a `keyturn server` process.
type clusterNode struct {
	cmd    *exec.Cmd
	addr   string
	exited chan error
	logs   *tailBuffer
	client *http.Client
	token  string
}

func startClusterNode(b *testing.B, bin string, args ...string) *clusterNode {
	b.Helper()
	cmd := exec.Command(bin, append([]string{"server", "--listen", "127.0.0.1:0"}, args...)...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s := &clusterNode{cmd: cmd, exited: make(chan error, 1), logs: &tailBuffer{}}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			s.logs.add(line)
			var entry struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(line, &entry) == nil && entry.Msg == "serving" {
				addr <- entry.Addr
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
		s.exited <- cmd.Wait()
	}()
	b.Cleanup(func() { _ = cmd.Process.Kill() })
	select {
	case s.addr = <-addr:
	case err := <-s.exited:
		b.Fatalf("keyturn server exited early: %v: %s", err, s.logs)
	case <-time.After(time.Minute):
		b.Fatalf("keyturn server did not start: %s", s.logs)
	}
	return s
}

// stop sends SIGTERM and waits for a clean exit.
func (s *clusterNode) stop(b *testing.B) {
	b.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			b.Fatalf("keyturn server exit: %v: %s", err, s.logs)
		}
	case <-time.After(time.Minute):
		b.Fatalf("keyturn server did not stop: %s", s.logs)
	}
}

func (s *clusterNode) serviceToken(b *testing.B, creds clusterCreds) string {
	b.Helper()
	var tok struct {
		BearerToken string `json:"bearer_token"`
	}
	if err := s.do("POST", "/v1/teams/acme/service_token", creds, http.StatusOK, &tok); err != nil {
		b.Fatal(err)
	}
	return tok.BearerToken
}

// call sends a request to the team's API and checks its status.
func (s *clusterNode) call(method, path string, body any, want int, out any) error {
	return s.do(method, "/v1/teams/acme"+path, body, want, out)
}

func (s *clusterNode) do(method, path string, body any, want int, out any) error {
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, "http://"+s.addr+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, got)
	}
	if out != nil {
		return json.Unmarshal(got, out)
	}
	return nil
}

// tailBuffer keeps the last 64 KiB of a server's log, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) add(line []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(append(t.buf, line...), '\n')
	if over := len(t.buf) - 64<<10; over > 0 {
		t.buf = t.buf[over:]
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(n, workers int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		mu    sync.Mutex
		first error
	)
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// runTimes are the mean times of the runs: executing (started to finished), and held by a
// node (created to finished: queued, then executing); and when the last one finished.
type runTimes struct {
	exec, held time.Duration
	last       time.Time
}

// checkRuns fails unless every run succeeded, one a user, and returns their mean times.
func checkRuns(b *testing.B, db *sql.DB, users int) runTimes {
	b.Helper()
	rows, err := db.Query(`SELECT status, created_at, started_at, finished_at FROM rotation_runs`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var n int
	var exec, held, last int64
	for rows.Next() {
		var status string
		var created int64
		var started, finished sql.NullInt64
		if err := rows.Scan(&status, &created, &started, &finished); err != nil {
			b.Fatal(err)
		}
		if status != "succeeded" {
			b.Fatalf("a run ended %s", status)
		}
		n++
		exec += finished.Int64 - started.Int64
		held += finished.Int64 - created
		last = max(last, finished.Int64)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	if n != users {
		b.Fatalf("%d runs, want %d", n, users)
	}
	return runTimes{exec: time.Duration(exec / int64(n)), held: time.Duration(held / int64(n)), last: time.Unix(0, last)}
}

// cpuTimes is the CPU time (user + system) each process used: the nodes in order, then
// PostgreSQL (postmaster, backends and the children it reaped), then this process.
type cpuTimes struct {
	nodes    []time.Duration
	postgres time.Duration
	hasPG    bool
	self     time.Duration
	machine  time.Duration // every process on the machine, these and others
}

// clockTick is the unit of /proc/PID/stat's times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

func takeCPU(nodes []*clusterNode, pg *pgServer) cpuTimes {
	var c cpuTimes
	for _, n := range nodes {
		st, _ := procStat(n.cmd.Process.Pid)
		c.nodes = append(c.nodes, st.cpu())
	}
	if pg != nil {
		c.postgres, c.hasPG = pg.cpu(), true
	}
	st, _ := procStat(os.Getpid())
	c.self = st.cpu()
	c.machine = machineBusy()
	return c
}

// machineBusy is the CPU time all the machine's processes used since it started (/proc/stat:
// every state but idle and iowait).
func machineBusy() time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal guest guest_nice
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:9] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return time.Duration(busy) * clockTick
}

func (c cpuTimes) minus(o cpuTimes) cpuTimes {
	d := cpuTimes{postgres: c.postgres - o.postgres, hasPG: c.hasPG, self: c.self - o.self, machine: c.machine - o.machine}
	for i := range c.nodes {
		d.nodes = append(d.nodes, c.nodes[i]-o.nodes[i])
	}
	return d
}

func (c cpuTimes) total() time.Duration {
	t := c.postgres + c.self
	for _, n := range c.nodes {
		t += n
	}
	return t
}

// report reports each process's CPU seconds in the phase, their total a operation, the share
// of the machine's cores they used, and the share other processes of the machine used (the
// cores are the limit when the two come near 100 %).
func (c cpuTimes) report(b *testing.B, phase, op string, ops int, elapsed time.Duration) {
	for i, n := range c.nodes {
		b.ReportMetric(n.Seconds(), fmt.Sprintf("%s-cpu-n%d-s", phase, i+1))
	}
	if c.hasPG {
		b.ReportMetric(c.postgres.Seconds(), phase+"-cpu-pg-s")
	}
	b.ReportMetric(c.self.Seconds(), phase+"-cpu-bench-s")
	b.ReportMetric(float64(c.total().Microseconds())/float64(ops), phase+"-cpu-µs/"+op)
	cores := elapsed.Seconds() * float64(runtime.NumCPU())
	b.ReportMetric(100*c.total().Seconds()/cores, phase+"-cores-%")
	b.ReportMetric(100*max(0, c.machine-c.total()).Seconds()/cores, phase+"-others-cores-%")
}

func (c cpuTimes) String() string {
	var parts []string
	for i, n := range c.nodes {
		parts = append(parts, fmt.Sprintf("n%d %.2f", i+1, n.Seconds()))
	}
	if c.hasPG {
		parts = append(parts, fmt.Sprintf("postgres %.2f", c.postgres.Seconds()))
	}
	return strings.Join(append(parts, fmt.Sprintf("bench %.2f", c.self.Seconds())), ", ")
}

// stat is what /proc/PID/stat says of a process's parent and CPU times.
type stat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

func (s stat) cpu() time.Duration { return time.Duration(s.utime+s.stime) * clockTick }

func procStat(pid int) (stat, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	// The command name, in parentheses, may hold spaces: the fields start after the last ')'.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return stat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v } // field i+3 of proc(5)
	return stat{ppid: int(n(1)), utime: n(11), stime: n(12), cutime: n(13), cstime: n(14)}, nil
}

// pgServer is the PostgreSQL server of the tests, on this machine.
type pgServer struct{ postmaster int }

// findPostgres finds the postmaster: the parent of the backend serving a connection.
func findPostgres(db *sql.DB) (*pgServer, error) {
	var backend int
	if err := db.QueryRow(`SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		return nil, fmt.Errorf("find PostgreSQL's processes: %w", err)
	}
	st, err := procStat(backend)
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", st.ppid))
	if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
		return nil, fmt.Errorf("PostgreSQL's backend %d is not on this machine (%v)", backend, err)
	}
	return &pgServer{postmaster: st.ppid}, nil
}

// cpu is the CPU time of the whole server: the postmaster, its live children (backends,
// background workers) and the children it has reaped.
func (p *pgServer) cpu() time.Duration {
	st, _ := procStat(p.postmaster)
	t := st.cpu() + time.Duration(st.cutime+st.cstime)*clockTick
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if child, err := procStat(pid); err == nil && child.ppid == p.postmaster {
			t += child.cpu()
		}
	}
	return t
}

// clusterLease is the nodes' rotation lease (the default), and nodeWorkers how many runs a
// node executes at once (the default).
const (
	clusterLease = 30 * time.Second
	nodeWorkers  = 16
)

// leaseCPU is the CPU time, of PostgreSQL's backend and of its client, of each lease operation.
type leaseCPU struct {
	claim    time.Duration // an empty claim, passing over the open runs of other nodes
	renew    time.Duration // a lease's share of a renewal of nodeWorkers leases
	deadline time.Duration // the lease deadline Rotate reads in its transaction
	claims   int           // how many claims it made
}

// measureLeaseCPU measures the lease operations' CPU on the database of stopped nodes: it
// opens runs for the users' records, open held by node "other" and nodeWorkers by itself,
// under a lease of an hour, and times the operations of a node against them.
func measureLeaseCPU(b *testing.B, dsn string, uids []string, open int) leaseCPU {
	b.Helper()
	ctx := context.Background()
	db, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	team, err := db.TeamByName(ctx, "acme")
	if err != nil {
		b.Fatal(err)
	}
	open = min(open, len(uids)-nodeWorkers)
	var c leaseCPU
	held := 0
	hold := func(n int, node string) []store.Lease {
		until := time.Now().Add(time.Hour)
		var leases []store.Lease
		err := db.Tx(ctx, func(tx *store.Tx) error {
			for _, uid := range uids[held : held+n] {
				run := store.Run{ID: "bench-" + uid, TeamID: team.ID, RecordUID: uid, Trigger: "on_demand", Status: "queued",
					State: "queued", CreatedAt: time.Now(), UpdatedAt: time.Now(), LeaseNode: node, LeaseEpoch: 1, LeaseUntil: &until}
				if err := tx.InsertRun(ctx, run); err != nil {
					return err
				}
				leases = append(leases, store.Lease{RunID: run.ID, Epoch: 1})
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		held += n
		return leases
	}
	// The backends serving db: every client session on the database but the one that finds them
	// (the nodes have stopped), not PostgreSQL's background work (autovacuum after the runs).
	sessions, err := sql.Open("pgx", dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer sessions.Close()
	sessions.SetMaxOpenConns(1)
	backends := func() map[int]time.Duration {
		rows, err := sessions.Query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database()
			AND backend_type = 'client backend' AND pid <> pg_backend_pid()`)
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		out := map[int]time.Duration{}
		for rows.Next() {
			var pid int
			if err := rows.Scan(&pid); err != nil {
				b.Fatal(err)
			}
			if st, err := procStat(pid); err == nil {
				out[pid] = st.cpu()
			}
		}
		return out
	}
	// cpu runs op 10 times (connections opened, statements prepared), then for 500 ms at
	// least, and returns the CPU time per call of this process and of the backends serving it.
	cpu := func(op func() error) time.Duration {
		for range 10 {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
		self0, _ := procStat(os.Getpid())
		pg0, start, n := backends(), time.Now(), 0
		for ; n < 50 || time.Since(start) < 500*time.Millisecond; n++ {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
		self1, _ := procStat(os.Getpid())
		used := self1.cpu() - self0.cpu()
		for pid, t := range backends() {
			used += t - pg0[pid] // a session opened meanwhile counts whole
		}
		return used / time.Duration(n)
	}
	claimNone := func() error {
		c.claims++
		got, err := db.ClaimRuns(ctx, "bench", 2*nodeWorkers, clusterLease)
		if err == nil && len(got) > 0 {
			err = fmt.Errorf("claimed %d runs held under a live lease", len(got))
		}
		return err
	}
	hold(open, "other")
	mine := hold(nodeWorkers, "bench")
	c.claim = cpu(claimNone)
	c.renew = cpu(func() error {
		lost, err := db.RenewLeases(ctx, "bench", mine, clusterLease)
		if err == nil && len(lost) > 0 {
			err = fmt.Errorf("lost %d leases", len(lost))
		}
		return err
	}) / nodeWorkers
	const reads = 10 // in one transaction, so that its begin and commit (Rotate's own) weigh little
	c.deadline = cpu(func() error {
		return db.Tx(ctx, func(tx *store.Tx) error {
			for range reads {
				if _, err := tx.LeaseDeadline(ctx, clusterLease); err != nil {
					return err
				}
			}
			return nil
		})
	}) / reads
	return c
}

// countClaims makes PostgreSQL count the claims (store.ClaimRuns) of every node in a sequence,
// bench_claims: a statement trigger fires once for each UPDATE of rotation_runs, even one that
// changes no row as most claims do, and counts those that claim. It costs each UPDATE of
// rotation_runs a function call.
func countClaims(b *testing.B, db *sql.DB) {
	b.Helper()
	if _, err := db.Exec(`CREATE SEQUENCE bench_claims;
		CREATE FUNCTION bench_count_claims() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF current_query() LIKE '%SET lease_node = $1, lease_epoch = lease_epoch + 1%' THEN
				PERFORM nextval('bench_claims');
			END IF;
			RETURN NULL;
		END $$;
		CREATE TRIGGER bench_count_claims AFTER UPDATE ON rotation_runs FOR EACH STATEMENT EXECUTE FUNCTION bench_count_claims();`); err != nil {
		b.Fatalf("count the claims: %v", err)
	}
}

// claimsSoFar returns how many claims countClaims has counted.
func claimsSoFar(b *testing.B, db *sql.DB, postgres bool) int {
	b.Helper()
	if !postgres {
		return 0
	}
	var n int
	var called bool
	if err := db.QueryRow(`SELECT last_value, is_called FROM bench_claims`).Scan(&n, &called); err != nil {
		b.Fatal(err)
	}
	if !called {
		return 0
	}
	return n
}
