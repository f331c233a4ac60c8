package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
)

// failoverLease is the nodes' rotation lease in the failover test (the smallest allowed), and
// failoverClaim their claim interval (the default).
const (
	failoverLease = 3 * time.Second
	failoverClaim = time.Second
)

// TestFailoverThreeNodes runs three servers on one PostgreSQL database and has them rotate
// 1,000 native Okta users (the emulator), the rotations asked of the three in turn. While they
// work, node 1 is killed (SIGKILL) with runs under way, and node 2 is stopped (SIGSTOP) with
// runs under way, past its lease, then resumed. Once everything has settled: every run ended,
// every user's password in Okta is the vault's current one (0 lost), and Okta saw exactly one
// password change per user, the one of its succeeded run (no run changed its target twice,
// although node 2 woke up holding runs that node 3 had finished meanwhile). The survivors
// must take the dead node's runs over within the lease and one claim interval.
func TestFailoverThreeNodes(t *testing.T) {
	const users = 1000
	c := startOktaCluster(t, users, nil, nil)
	nodes, tokens, db, emu, uids := c.nodes, c.tokens, c.db, c.emu, c.uids

	// The rotations, asked of the three nodes in turn, while node 1 is killed and node 2
	// stopped, each with runs under way.
	start := time.Now()
	var asked atomic.Int64
	rotating := make(chan error, 1)
	go func() {
		var wg sync.WaitGroup
		var first error
		var mu sync.Mutex
		sem := make(chan struct{}, 8)
		for i := range users {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				n := i % 3
				err := callJSON(nodes[n], tokens[n], "POST", "/records/"+uids[i]+"/rotate", nil, http.StatusAccepted, nil)
				if err != nil && n == 0 {
					// Node 1 died meanwhile: ask another, as a client would. If node 1 had
					// queued the run, this answers it (200); if that run has ended, it makes
					// a second one (202).
					err = callJSON(nodes[2], tokens[2], "POST", "/records/"+uids[i]+"/rotate", nil, 0, nil)
				}
				if err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
				}
				asked.Add(1)
			})
		}
		wg.Wait()
		rotating <- first
	}()

	running := func(node string) int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM rotation_runs WHERE lease_node = $1 AND status = 'running'`, node).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, 2*time.Minute, "node 1 with runs under way", func() bool { return running("n1") > 0 && asked.Load() > users/4 })
	held := unfinishedOf(t, db, "n1") // the runs node 1 holds as it dies
	if err := nodes[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-nodes[0].exited

	waitFor(t, time.Minute, "node 2 with runs under way", func() bool { return running("n2") > 0 })
	if err := nodes[1].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	stoppedHeld := unfinishedOf(t, db, "n2")

	// The survivors take node 1's runs over once its leases expire.
	var resumed time.Duration
	lastReport := time.Now()
	waitFor(t, time.Minute, "a survivor taking over node 1's runs", func() bool {
		if time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			t.Logf("runs by node and status: %s", runsByNode(t, db))
		}
		var moved int
		if err := db.QueryRow(`SELECT count(*) FROM rotation_runs WHERE id = ANY($1) AND lease_node <> 'n1'`, held).Scan(&moved); err != nil {
			t.Fatal(err)
		}
		if moved > 0 {
			resumed = time.Since(killed)
			return true
		}
		return len(held) == 0
	})
	if len(held) == 0 {
		t.Fatal("node 1 held no run as it died")
	}
	if limit := failoverLease + failoverClaim + time.Second; resumed > limit { // a second for the nodes' own work, on 2 busy cores
		t.Errorf("the survivors took node 1's runs over %s after it died, want within the lease and a claim interval (%s)", resumed, limit)
	}

	// Node 2 sleeps past its lease until node 3 has taken some of its runs over, then wakes up
	// holding runs it lost.
	waitFor(t, time.Minute, "node 3 taking over node 2's runs", func() bool {
		var moved int
		if err := db.QueryRow(`SELECT count(*) FROM rotation_runs WHERE id = ANY($1) AND lease_node = 'n3'`, stoppedHeld).Scan(&moved); err != nil {
			t.Fatal(err)
		}
		return moved > 0
	})
	time.Sleep(failoverLease + 2*time.Second - time.Since(stopped))
	if err := nodes[1].cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	woke := time.Since(stopped)
	if err := <-rotating; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "every run to end", func() bool {
		var open int
		if err := db.QueryRow(`SELECT count(*) FROM rotation_runs WHERE status IN ('queued', 'running')`).Scan(&open); err != nil {
			t.Fatal(err)
		}
		return open == 0
	})
	took := time.Since(start)

	// Every run ended, and each user's password in Okta is the vault's current one.
	succeeded := map[string]int{}
	statuses := map[string]int{}
	rows, err := db.Query(`SELECT record_uid, status, error_code FROM rotation_runs`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var uid, status, code string
		if err := rows.Scan(&uid, &status, &code); err != nil {
			t.Fatal(err)
		}
		statuses[status+" "+code]++
		if status == "succeeded" {
			succeeded[uid]++
		}
	}
	rows.Close()
	lost, doubled := 0, 0
	inParallel(t, users, 8, func(i int) error {
		var got struct {
			Value string `json:"value"`
		}
		if err := callJSON(nodes[2], tokens[2], "GET", "/notation?ref=keeper://"+uids[i]+"/field/password", nil, http.StatusOK, &got); err != nil {
			return err
		}
		live, _ := emu.Password(emulator.SeedLogin(i + 1))
		changes, _ := emu.PasswordChanges(emulator.SeedLogin(i + 1))
		if live != got.Value {
			t.Errorf("user %d: Okta's password is not the vault's current one (%d changes, %d succeeded runs)", i+1, changes, succeeded[uids[i]])
			lost++
		}
		if changes != int64(succeeded[uids[i]]) {
			t.Errorf("user %d: Okta saw %d password changes for %d succeeded runs", i+1, changes, succeeded[uids[i]])
			doubled++
		}
		return nil
	})
	var ran int
	for _, n := range succeeded {
		ran += n
	}
	t.Logf("1,000 native Okta rotations on 3 nodes: %d runs, by status %v; node 1 killed holding %d runs, node 2 stopped %s holding %d; "+
		"node 1's runs taken over %s after its death (lease %s, claim interval %s); all settled in %s; lost %d, changed twice %d",
		ran, statuses, len(held), woke.Round(time.Millisecond), len(stoppedHeld), resumed.Round(time.Millisecond), failoverLease, failoverClaim,
		took.Round(time.Millisecond), lost, doubled)
	if len(succeeded) != users {
		t.Errorf("%d of %d users were rotated", len(succeeded), users)
	}
	for k, n := range statuses {
		if k != "succeeded " {
			t.Errorf("%d runs ended %q", n, k)
		}
	}
	nodes[1].stop(t)
	nodes[2].stop(t)
	// Node 2 woke up to leases it had lost, and said so (and, as counted above, changed no
	// target and committed nothing for those runs).
	if !bytes.Contains(nodes[1].stderr.Bytes(), []byte("lost its lease")) && !bytes.Contains(nodes[1].stderr.Bytes(), []byte("lease lost")) {
		t.Errorf("node 2 never noticed it lost a lease; its log:\n%s", nodes[1].stderr)
	}
}

// unfinishedOf returns the ids of the unfinished runs a node holds.
func unfinishedOf(t *testing.T, db *sql.DB, node string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT id FROM rotation_runs WHERE lease_node = $1 AND status IN ('queued', 'running')`, node)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// callJSON is apiJSON for goroutines: it returns what is wrong instead of failing the test.
// want 0 takes 200 and 202.
func callJSON(s *server, token, method, path string, body any, want int, out any) error {
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, "http://"+s.addr+"/v1/teams/acme"+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	var got bytes.Buffer
	_, _ = got.ReadFrom(resp.Body)
	if resp.StatusCode != want && (want != 0 || resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted) {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, got.Bytes())
	}
	if out != nil {
		return json.Unmarshal(got.Bytes(), out)
	}
	return nil
}

// inParallel runs f(0..n-1) on workers goroutines and fails the test on the first error.
func inParallel(t *testing.T, n, workers int, f func(i int) error) {
	t.Helper()
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		mu   sync.Mutex
		errs error
	)
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := f(i); err != nil {
					mu.Lock()
					errs = cmpErr(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if errs != nil {
		t.Fatal(errs)
	}
}

// cmpErr keeps the first error.
func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// waitFor polls cond every 20 ms until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waited %s for %s", d, what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runsByNode counts the runs by lease holder and status, to say where a failover stands.
func runsByNode(t *testing.T, db *sql.DB) string {
	rows, err := db.Query(`SELECT lease_node, status, count(*), min(lease_until) FROM rotation_runs GROUP BY 1, 2 ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out bytes.Buffer
	for rows.Next() {
		var node, status string
		var n int
		var until sql.NullInt64
		if err := rows.Scan(&node, &status, &n, &until); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%s/%s: %d (lease until %v); ", node, status, n, time.Until(time.Unix(0, until.Int64)).Round(time.Millisecond))
	}
	return out.String()
}

// TestScheduledWorkResumesOnSurvivors gives 30 native Okta users a schedule that fires every
// 2 seconds on three nodes sharing one PostgreSQL database, and kills (SIGKILL) a node while
// it holds scheduled runs. There is no leader to fail over: the survivors go on firing the
// schedules, and they take the dead node's runs over within the lease and one claim interval.
// Each occurrence makes at most one run across the cluster, every record is rotated after
// the death, and afterwards each user's password in Okta is the vault's current one, with one
// Okta change per succeeded run.
func TestScheduledWorkResumesOnSurvivors(t *testing.T) {
	const users = 30
	// A slow Okta keeps runs under way long enough for the kill to find some.
	c := startOktaCluster(t, users, []string{"--schedule-min-interval", "0"},
		map[string]any{"type": "CRON", "cron": "*/2 * * * * ?"})
	nodes, tokens, db, emu, uids, api := c.nodes, c.tokens, c.db, c.emu, c.uids, struct{ UID string }{c.org}
	emu.SetFaults(emulator.Faults{Latency: 150 * time.Millisecond})

	waitFor(t, time.Minute, "node 1 holding scheduled runs under way", func() bool {
		return len(unfinishedOf(t, db, "n1")) > 0
	})
	held := unfinishedOf(t, db, "n1")
	if err := nodes[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-nodes[0].exited

	var firedAgain, resumed time.Duration
	waitFor(t, time.Minute, "the survivors firing schedules and taking node 1's runs over", func() bool {
		if firedAgain == 0 {
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM rotation_runs WHERE trigger = 'scheduled' AND lease_node <> 'n1'
				AND created_at > $1`, killed.UnixNano()).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				firedAgain = time.Since(killed)
			}
		}
		if resumed == 0 {
			var moved int
			if err := db.QueryRow(`SELECT count(*) FROM rotation_runs WHERE id = ANY($1) AND lease_node <> 'n1'`, held).Scan(&moved); err != nil {
				t.Fatal(err)
			}
			if moved > 0 {
				resumed = time.Since(killed)
			}
		}
		return firedAgain > 0 && resumed > 0
	})
	if limit := failoverLease + failoverClaim + time.Second; resumed > limit {
		t.Errorf("the survivors took node 1's scheduled runs over %s after it died, want within %s", resumed, limit)
	}
	// Let the survivors fire a few more occurrences, then stop the schedules and let it settle.
	time.Sleep(5 * time.Second)
	inParallel(t, users, 4, func(i int) error {
		return callJSON(nodes[1+i%2], tokens[1+i%2], "PUT", "/records/"+uids[i]+"/rotation",
			map[string]any{"method": "general", "connector": "okta", "resource_uid": api.UID}, http.StatusOK, nil)
	})
	waitFor(t, 2*time.Minute, "every run to end", func() bool {
		var open int
		if err := db.QueryRow(`SELECT count(*) FROM rotation_runs WHERE status IN ('queued', 'running')`).Scan(&open); err != nil {
			t.Fatal(err)
		}
		return open == 0
	})

	var dup int
	if err := db.QueryRow(`SELECT count(*) FROM (SELECT record_uid, due_at FROM rotation_runs WHERE due_at IS NOT NULL
		GROUP BY 1, 2 HAVING count(*) > 1) d`).Scan(&dup); err != nil {
		t.Fatal(err)
	}
	if dup != 0 {
		t.Errorf("%d scheduled occurrences made more than one run", dup)
	}
	after := map[string]int{}
	succeeded := map[string]int{}
	statuses := map[string]int{}
	rows, err := db.Query(`SELECT record_uid, status, error_code, created_at FROM rotation_runs`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var uid, status, code string
		var created int64
		if err := rows.Scan(&uid, &status, &code, &created); err != nil {
			t.Fatal(err)
		}
		statuses[status+" "+code]++
		if status == "succeeded" {
			succeeded[uid]++
			if created > killed.UnixNano() {
				after[uid]++
			}
		}
	}
	rows.Close()
	for k, n := range statuses {
		if k != "succeeded " {
			t.Errorf("%d runs ended %q", n, k)
		}
	}
	runs := 0
	for i, uid := range uids {
		var got struct {
			Value string `json:"value"`
		}
		nodes[2].apiJSON(t, tokens[2], "GET", "/notation?ref=keeper://"+uid+"/field/password", nil, http.StatusOK, &got)
		live, _ := emu.Password(emulator.SeedLogin(i + 1))
		changes, _ := emu.PasswordChanges(emulator.SeedLogin(i + 1))
		if live != got.Value {
			t.Errorf("user %d: Okta's password is not the vault's current one", i+1)
		}
		if changes != int64(succeeded[uid]) {
			t.Errorf("user %d: Okta saw %d password changes for %d succeeded runs", i+1, changes, succeeded[uid])
		}
		if after[uid] == 0 {
			t.Errorf("user %d: no scheduled rotation after node 1 died", i+1)
		}
		runs += succeeded[uid]
	}
	t.Logf("scheduled every 2 s, %d users on 3 nodes: node 1 killed holding %d runs; survivors fired again %s after, and took its runs over %s after "+
		"(lease %s, claim interval %s); %d runs, all succeeded: %v",
		users, len(held), firedAgain.Round(time.Millisecond), resumed.Round(time.Millisecond), failoverLease, failoverClaim, runs, statuses)
	nodes[1].stop(t)
	nodes[2].stop(t)
}

// oktaCluster is three keyturn servers on one PostgreSQL database and an Okta emulator whose
// users each have a pamUser rotated natively.
type oktaCluster struct {
	nodes  []*server
	tokens []string // the admin's token on each node
	db     *sql.DB  // the vault's database, to watch the runs
	emu    *emulator.Emulator
	org    string   // the uid of the Okta org's record
	uids   []string // user i+1's pamUser
}

// startOktaCluster starts three nodes (n1, n2, n3, each with its own data directory holding
// the key file, the failover lease, no target rate limit, no heartbeats, and flags) and
// creates users pamUsers through them in turn, with a native Okta rotation on schedule (nil:
// on demand).
func startOktaCluster(t *testing.T, users int, flags []string, schedule map[string]any) *oktaCluster {
	t.Helper()
	dsn := pgtest.DSN(t)
	dirs := []string{filepath.Join(t.TempDir(), "n1"), filepath.Join(t.TempDir(), "n2"), filepath.Join(t.TempDir(), "n3")}
	creds := initVault(t, dirs[0], "--storage", dsn)
	key, err := os.ReadFile(filepath.Join(dirs[0], datadir.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs[1:] { // each node has its own data directory, holding the key file
		if err := os.MkdirAll(d, 0o700); err != nil || os.WriteFile(filepath.Join(d, datadir.KeyFileName), key, 0o600) != nil {
			t.Fatal(err)
		}
	}
	c := &oktaCluster{emu: emulator.New(emulator.Options{Users: users, AuthnPerUserPerSecond: -1, LockoutThreshold: -1, RateLimit: 1 << 30})}
	emuSrv := httptest.NewServer(c.emu)
	t.Cleanup(func() { c.emu.Close(); emuSrv.Close() })
	for i := range dirs {
		args := append([]string{"--data", dirs[i], "--storage", dsn, "--node", fmt.Sprintf("n%d", i+1),
			"--rotation-lease", failoverLease.String(), "--target-rate", "0", "--heartbeat-interval", "0"}, flags...)
		c.nodes = append(c.nodes, startServer(t, args...))
		c.tokens = append(c.tokens, c.nodes[i].token(t, creds))
	}
	if c.db, err = sql.Open("pgx", dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.db.Close() })

	field := func(typ, value string) map[string]any { return map[string]any{"type": typ, "value": []string{value}} }
	var org struct {
		UID string `json:"uid"`
	}
	c.nodes[0].apiJSON(t, c.tokens[0], "POST", "/records", map[string]any{"type": "login", "title": "Okta API Access Details",
		"folder": "Okta", "fields": []any{field("url", emuSrv.URL), field("password", c.emu.Token())}}, http.StatusCreated, &org)
	c.org = org.UID
	settings := map[string]any{"method": "general", "connector": "okta", "resource_uid": c.org}
	if schedule != nil {
		settings["schedule"] = schedule
	}
	c.uids = make([]string, users)
	inParallel(t, users, 8, func(i int) error {
		var rec struct {
			UID string `json:"uid"`
		}
		n := i % 3
		if err := callJSON(c.nodes[n], c.tokens[n], "POST", "/records", map[string]any{"type": "pamUser",
			"title": fmt.Sprintf("okta user %d", i+1), "folder": "Okta",
			"fields": []any{field("login", emulator.SeedLogin(i+1)), field("password", emulator.SeedPassword(i+1))}},
			http.StatusCreated, &rec); err != nil {
			return err
		}
		c.uids[i] = rec.UID
		return callJSON(c.nodes[n], c.tokens[n], "PUT", "/records/"+rec.UID+"/rotation", settings, http.StatusOK, nil)
	})
	return c
}
