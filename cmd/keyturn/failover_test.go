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
	emu := emulator.New(emulator.Options{Users: users, AuthnPerUserPerSecond: -1, LockoutThreshold: -1, RateLimit: 1 << 30})
	emuSrv := httptest.NewServer(emu)
	t.Cleanup(func() { emu.Close(); emuSrv.Close() })

	nodes := make([]*server, 3)
	for i := range nodes {
		nodes[i] = startServer(t, "--data", dirs[i], "--storage", dsn, "--node", fmt.Sprintf("n%d", i+1),
			"--rotation-lease", failoverLease.String(), "--target-rate", "0", "--heartbeat-interval", "0")
	}
	tokens := make([]string, 3)
	for i, n := range nodes {
		tokens[i] = n.token(t, creds)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// The records: the org's, and one pamUser a user, rotated natively.
	field := func(typ, value string) map[string]any { return map[string]any{"type": typ, "value": []string{value}} }
	var api struct {
		UID string `json:"uid"`
	}
	nodes[0].apiJSON(t, tokens[0], "POST", "/records", map[string]any{"type": "login", "title": "Okta API Access Details",
		"folder": "Okta", "fields": []any{field("url", emuSrv.URL), field("password", emu.Token())}}, http.StatusCreated, &api)
	uids := make([]string, users)
	inParallel(t, users, 8, func(i int) error {
		var rec struct {
			UID string `json:"uid"`
		}
		if err := callJSON(nodes[i%3], tokens[i%3], "POST", "/records", map[string]any{"type": "pamUser",
			"title": fmt.Sprintf("okta user %d", i+1), "folder": "Okta",
			"fields": []any{field("login", emulator.SeedLogin(i+1)), field("password", emulator.SeedPassword(i+1))}},
			http.StatusCreated, &rec); err != nil {
			return err
		}
		uids[i] = rec.UID
		return callJSON(nodes[i%3], tokens[i%3], "PUT", "/records/"+rec.UID+"/rotation",
			map[string]any{"method": "general", "connector": "okta", "resource_uid": api.UID}, http.StatusOK, nil)
	})

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
