package bench

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/app"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/testenv/mariadbtest"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
	"github.com/keyturn/keyturn/internal/vault"
)

// TestMain lets BenchmarkScheduler1M run the engine in a child process (this binary again), so
// that the server's own memory is measured. Afterwards it stops the PostgreSQL server of
// BenchmarkCluster and BenchmarkConnectors and the MariaDB server of BenchmarkConnectors, and
// removes the keyturn binary it built.
func TestMain(m *testing.M) {
	if dir := os.Getenv("KEYTURN_BENCH_SERVER"); dir != "" {
		os.Exit(benchServer(dir))
	}
	code := pgtest.Main(m)
	mariadbtest.Stop()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// benchServer opens the vault and runs the rotation engine (scheduler included) until stdin
// closes: what `keyturn server` runs, without the HTTP listener.
func benchServer(dir string) int {
	ctx := context.Background()
	dv, err := datadir.Open(ctx, dir, datadir.Unseal{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	workers := 64 // the engine's worker pool; KEYTURN_BENCH_WORKERS overrides
	if n, err := strconv.Atoi(os.Getenv("KEYTURN_BENCH_WORKERS")); err == nil {
		workers = n
	}
	// The no-op target has no capacity to protect: no per-target rate limit.
	svc := app.New(dv, app.Options{Rotation: rotation.Options{Workers: workers, HeartbeatInterval: -1, TargetRate: -1},
		Connectors: map[string]connector.Connector{"rest": noopTarget{}}})
	if err := svc.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if path := os.Getenv("KEYTURN_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if path := os.Getenv("KEYTURN_BENCH_TRACE"); path != "" {
		f, err := os.Create(path)
		if err == nil && trace.Start(f) == nil {
			defer trace.Stop()
		}
	}
	fmt.Println("ready")
	before := dv.DB.WriterStats()
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	// The writer's work during the run (it idles until the runs fall due), for the parent.
	fmt.Println(int64(dv.DB.WriterStats().Busy - before.Busy))
	svc.Stop(10 * time.Second)
	dv.Close()
	return 0
}

// noopTarget accepts every change and every password: the target of BenchmarkScheduler1M.
type noopTarget struct{}

func (noopTarget) Rotate(context.Context, connector.Account, secret.Secret, secret.Secret) error {
	return nil
}
func (noopTarget) Verify(context.Context, connector.Account, secret.Secret) error { return nil }

// BenchmarkScheduler1M: 1,000,000 records with scheduled rotation on SQLite, 10,000 of which
// fall due at the same instant against a no-op target (a connector that accepts everything). It reports
// the server's peak RSS and the p50/p99 lag from due to queued (the scheduler) and from due to
// started (a worker took the run), with a pool of 64 workers. It runs once whatever -benchtime says; -short skips it.
func BenchmarkScheduler1M(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 1,000,000-record vault")
	}
	const total, due = 1_000_000, 10_000
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), "data")
	if _, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{}); err != nil {
		b.Fatal(err)
	}
	dv, err := datadir.Open(ctx, dir, datadir.Unseal{})
	if err != nil {
		b.Fatal(err)
	}
	team, _ := dv.DB.TeamByName(ctx, "acme")
	scope := vault.Scope{TeamID: team.ID}
	v := vault.New(dv.DB, dv.Keys, nil)
	svc := app.New(dv, app.Options{Rotation: rotation.Options{Tick: -1, HeartbeatInterval: -1},
		Connectors: map[string]connector.Connector{"rest": noopTarget{}}})
	target, err := v.Create(ctx, scope, vault.Record{Type: "login", Title: "no-op target"})
	if err != nil {
		b.Fatal(err)
	}

	// The 10,000 that fall due: real records, through the vault and the engine.
	dueAt := time.Now().Add(time.Hour).Truncate(time.Second) // moved nearer below, once all is ready
	daily := json.RawMessage(`{"type":"DAILY","time":"03:00","tz":"Etc/UTC"}`)
	uids := make([]string, due)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < due; i += 64 {
				js, _ := json.Marshal(fmt.Sprintf("svc%05d", i))
				rec, err := v.Create(ctx, scope, vault.Record{Type: "pamUser", Title: fmt.Sprintf("due %d", i),
					Fields: []vault.Field{{Type: "login", Value: []json.RawMessage{js}}}})
				if err == nil {
					uids[i] = rec.UID
					_, err = svc.Engine.SetSettings(ctx, scope, rec.UID, rotation.Settings{Method: rotation.MethodGeneral,
						Connector: "rest", ResourceUID: target.UID, Schedule: daily, NextRunAt: &dueAt})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	dv.Close()

	// The other 990,000: scheduled a year out, written directly in large transactions.
	raw, err := sql.Open("sqlite", "file:"+store.SQLitePath(dir)+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		b.Fatal(err)
	}
	later := time.Now().AddDate(1, 0, 0).UnixNano()
	settings := `{"method":"scripts_only","schedule":{"type":"DAILY","time":"03:00","tz":"Etc/UTC"}}`
	blob := make([]byte, 64)
	for start := 0; start < total-due; start += 50_000 {
		tx, err := raw.Begin()
		if err != nil {
			b.Fatal(err)
		}
		rec, _ := tx.Prepare(`INSERT INTO records (uid, team_id, type, title, folder, revision, data_key, data, created_at, updated_at)
			VALUES ($1, $2, 'pamUser', $3, 'Filler', 1, $4, $4, 0, 0)`)
		set, _ := tx.Prepare(`INSERT INTO rotation_settings (record_uid, team_id, settings, updated_at, next_run_at, anchor_at)
			VALUES ($1, $2, $3, 0, $4, 0)`)
		for i := start; i < min(start+50_000, total-due); i++ {
			uid := fmt.Sprintf("filler%016d", i)
			if _, err := rec.Exec(uid, team.ID, uid, blob); err != nil {
				b.Fatal(err)
			}
			if _, err := set.Exec(uid, team.ID, settings, later+int64(i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	// All 10,000 fall due two seconds after the server is started.
	dueAt = time.Now().Add(4 * time.Second).Truncate(time.Second)
	if _, err := raw.Exec(`UPDATE rotation_settings SET next_run_at = $1 WHERE next_run_at < $2`, dueAt.UnixNano(), later); err != nil {
		b.Fatal(err)
	}
	var n int
	_ = raw.QueryRow(`SELECT COUNT(*) FROM rotation_settings WHERE next_run_at IS NOT NULL`).Scan(&n)
	if n != total {
		b.Fatalf("%d scheduled records, want %d", n, total)
	}

	b.ResetTimer()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "KEYTURN_BENCH_SERVER="+dir)
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer child.Process.Kill()
	out := bufio.NewReader(stdout)
	if line, _ := out.ReadString('\n'); strings.TrimSpace(line) != "ready" {
		b.Fatalf("the server did not start: %q", line)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var finished int
		_ = raw.QueryRow(`SELECT COUNT(*) FROM rotation_runs WHERE trigger = 'scheduled' AND status IN ('succeeded','failed','needs_attention')`).Scan(&finished)
		if finished == due {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d scheduled runs finished", finished, due)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rss := peakRSS(b, child.Process.Pid)
	stdin.Close()
	var busy time.Duration
	if line, err := out.ReadString('\n'); err != nil {
		b.Fatalf("the server's writer figures: %v", err)
	} else if _, err := fmt.Sscan(line, &busy); err != nil {
		b.Fatalf("the server's writer figures %q: %v", line, err)
	}
	_ = child.Wait()
	b.StopTimer()

	rows, err := raw.Query(`SELECT due_at, created_at, started_at, finished_at, status FROM rotation_runs WHERE trigger = 'scheduled'`)
	if err != nil {
		b.Fatal(err)
	}
	var queued, started []time.Duration
	var lastFinished int64
	for rows.Next() {
		var dueNs, createdNs, startedNs, finishedNs int64
		var status string
		if err := rows.Scan(&dueNs, &createdNs, &startedNs, &finishedNs, &status); err != nil {
			b.Fatal(err)
		}
		lastFinished = max(lastFinished, finishedNs)
		if status != rotation.StatusSucceeded {
			b.Fatalf("a scheduled no-op run ended %s", status)
		}
		queued = append(queued, time.Duration(createdNs-dueNs))
		started = append(started, time.Duration(startedNs-dueNs))
	}
	rows.Close()
	raw.Close()
	if len(queued) != due {
		b.Fatalf("%d scheduled runs, want %d", len(queued), due)
	}
	b.ReportMetric(float64(rss)/(1<<20), "rss-MB")
	reportWriter(b, busy, time.Duration(lastFinished-dueAt.UnixNano()), due) // from due to the last run's end
	b.ReportMetric(percentile(queued, 0.50).Seconds()*1000, "p50-queued-ms")
	b.ReportMetric(percentile(queued, 0.99).Seconds()*1000, "p99-queued-ms")
	b.ReportMetric(percentile(started, 0.50).Seconds()*1000, "p50-started-ms")
	b.ReportMetric(percentile(started, 0.99).Seconds()*1000, "p99-started-ms")
}

// reportWriter reports how much of the single database writer the runs took: its busy share
// of the elapsed time (near 100 % it is the bottleneck) and its busy time per run.
func reportWriter(b *testing.B, busy, elapsed time.Duration, runs int) {
	b.ReportMetric(100*busy.Seconds()/elapsed.Seconds(), "writer-busy-%")
	b.ReportMetric(float64(busy.Microseconds())/float64(runs), "writer-µs/run")
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// peakRSS reads a process's peak resident set (VmHWM) in bytes.
func peakRSS(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmHWM")
	return 0
}
