//go:build linux

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/examples"
	"github.com/keyturn/keyturn/internal/emulator"
)

// The crash suite: the real server (this test binary running main(), as the other tests here
// do) is killed with SIGKILL at random moments while it rotates Okta, OPA and REST credentials,
// natively and through PAM scripts; after every kill it is started again, left to settle, and
// every credential is checked against the emulator. CI runs a short version; the full one is
//
//	go test -count=1 -timeout 2h -run TestCrashSuite ./cmd/keyturn -crash.kills=500 -v
var (
	crashKills = flag.Int("crash.kills", 24, "crash suite: SIGKILLs of the server (the full suite: 500)")
	crashUsers = flag.Int("crash.users", 4, "crash suite: users of each kind")
	crashSeed  = flag.Uint64("crash.seed", 0, "crash suite: random seed (0: from the clock)")
	crashOnly  = flag.String("crash.kinds", "", "crash suite: the kinds of credential to rotate, comma-separated (default: all)")
	crashAgain = flag.Float64("crash.again", 0.3, "crash suite: chance of killing a restarted server again before it has settled")
)

// Kinds of credential the suite rotates.
const (
	kindOkta         = "okta"          // native okta connector
	kindOPA          = "opa"           // native opa connector: a service user's API key
	kindREST         = "rest"          // declarative REST (admin set password), verified with Authn
	kindRESTNoVerify = "rest-noverify" // declarative REST (change_password) without a verify request
	kindScript       = "script"        // scripts_only, the corrected example script, verify_with okta
	kindFork         = "fork"          // scripts_only, a script whose child changes the password later
	kindForkDetached = "fork-detached" // the same, its child leaving the script's process group
)

var crashKinds = []string{kindOkta, kindOPA, kindREST, kindRESTNoVerify, kindScript, kindFork, kindForkDetached}

// verifiable reports whether the engine can ask the target which password works for a kind.
func verifiable(kind string) bool { return kind != kindRESTNoVerify }

// forkScript hands the password change to a child that sleeps 0-2 s, and exits 0 after 0-1 s
// itself: the child may change the password after the script has exited. DETACH is replaced
// with "set -m" (job control: the child gets its own process group) or nothing.
const forkScript = `#!/usr/bin/env bash
set -euo pipefail
IFS= read -r line
params=$(printf '%s' "$line" | base64 -d)
records=$(printf '%s' "$params" | jq -r '.records' | base64 -d)
api=$(printf '%s' "$records" | jq -c 'map(select(.title == "Okta API Access Details")) | first // empty')
org=$(printf '%s' "$api" | jq -r '.url')
login=$(printf '%s' "$params" | jq -r '.user')
okta() { # okta METHOD PATH [BODY]
  local method=$1 path=$2 body=${3-}
  local args=(--silent --show-error --fail-with-body --config - -X "$method")
  [ -z "$body" ] || args+=(--data-binary @/dev/fd/3)
  {
    printf 'header = "Authorization: SSWS %s"\n' "$(printf '%s' "$api" | jq -r '.password')"
    printf 'header = "Accept: application/json"\n'
    printf 'header = "Content-Type: application/json"\n'
  } | curl "${args[@]}" "$org$path" 3< <(printf '%s' "$body")
}
change() {
  sleep "$1"
  user_id=$(okta GET "/api/v1/users/$(jq -rn --arg l "$login" '$l|@uri')" | jq -r '.id')
  body=$(printf '%s' "$params" | jq -c '{oldPassword: {value: .oldPassword}, newPassword: {value: .newPassword}}')
  okta POST "/api/v1/users/$user_id/credentials/change_password" "$body" >/dev/null
}
child=$(( RANDOM % 2000 )) parent=$(( RANDOM % 1000 ))
DETACH
( change "$(( child / 1000 )).$(printf '%03d' $(( child % 1000 )))" ) </dev/null >/dev/null 2>&1 &
sleep "0.$(printf '%03d' "$parent")"
echo "the change of $login is under way"
`

// restConfig rotates with Okta's admin set password and verifies with Authn.
const crashRESTConfig = `{
  "rotate": {"method": "POST", "url": "{{.URL}}/api/v1/users/{{.User}}",
             "headers": {"Authorization": "SSWS {{.AdminSecret}}", "Accept": "application/json"},
             "body": "{\"credentials\": {\"password\": {\"value\": \"{{.NewPassword}}\"}}}", "success": [200]},
  "verify": {"method": "POST", "url": "{{.URL}}/api/v1/authn",
             "body": "{\"username\": \"{{.User}}\", \"password\": \"{{.Password}}\"}", "success": [200], "rejected": [401]}
}`

// crashRESTNoVerifyConfig rotates with change_password (the pamUser's login is the Okta user
// id) and has no verify request: nothing can tell which password the target holds.
const crashRESTNoVerifyConfig = `{
  "rotate": {"method": "POST", "url": "{{.URL}}/api/v1/users/{{.User}}/credentials/change_password",
             "headers": {"Authorization": "SSWS {{.AdminSecret}}", "Accept": "application/json"},
             "body": "{\"oldPassword\": {\"value\": \"{{.OldPassword}}\"}, \"newPassword\": {\"value\": \"{{.NewPassword}}\"}}", "success": [200]}
}`

// crashUser is one rotated credential.
type crashUser struct {
	kind  string
	uid   string // the pamUser record
	login string // the pamUser's login: an Okta login, an Okta user id (rest-noverify) or an OPA service user
}

// crashSuite is the state of one run of the suite.
type crashSuite struct {
	t       *testing.T
	rng     *rand.Rand
	emu     *emulator.Emulator
	emuURL  string
	dataDir string
	scripts string // the servers' --script-dir
	creds   initOutput
	kinds   []string // the kinds rotated
	users   []*crashUser
	byUID   map[string]*crashUser
	client  *http.Client

	srv     *server
	dead    bool // srv has exited
	token   string
	servers map[int]bool // pids of every server started (never reaped by the suite)

	// Figures.
	kills, selfCrashes      int
	killsInRecovery         int // kills of a restarted server before it had settled
	rotateRequests          int
	lost                    map[string]int // by kind: checks that found the working credential not current
	heldPending             map[string]int // by kind: the working credential only pending, its run needs_attention
	needless                []string       // runs of verifiable kinds that needed attention while the current password worked
	orphansAfterSettle      int            // processes of killed servers still alive once the restart settled
	orphansNow              int            // of those, in this cycle
	orphansMax              int
	orphansKilled           int // of those, alive 30 s later: killed by the suite
	settleTimes             []time.Duration
	crashLogs               map[string][]string // why servers died by themselves: the log of each, by cause
	seenNeedsAttentionCheck map[string]bool     // runs and OPA losses already counted
}

func TestCrashSuite(t *testing.T) {
	for _, tool := range []string{"bash", "jq", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the crash suite's scripts need %s: %v", tool, err)
		}
	}
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-crash.seed=%d repeats the choices, not the timing)", seed, seed)
	s := &crashSuite{t: t, rng: rand.New(rand.NewPCG(seed, 0x6b6579747572)), byUID: map[string]*crashUser{},
		client: &http.Client{Timeout: 60 * time.Second}, servers: map[int]bool{},
		lost: map[string]int{}, crashLogs: map[string][]string{}, heldPending: map[string]int{}, seenNeedsAttentionCheck: map[string]bool{}}

	s.kinds = crashKinds
	if *crashOnly != "" {
		s.kinds = strings.Split(*crashOnly, ",")
		for _, k := range s.kinds {
			if !slices.Contains(crashKinds, k) {
				t.Fatalf("-crash.kinds: %q is not one of %s", k, strings.Join(crashKinds, ", "))
			}
		}
	}

	// Processes a killed server leaves behind are re-parented to this process, so that the
	// suite can find, count, reap and finally kill them.
	if err := setSubreaper(true); err != nil {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", err)
	}
	t.Cleanup(func() {
		for _, p := range s.leftovers() {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		s.reapLeftovers(5 * time.Second)
		_ = setSubreaper(false)
	})

	if os.Geteuid() != 0 {
		// Servers that sandbox scripts need root; elsewhere they must be allowed to run
		// them unsandboxed (an environment variable, which servers without the setting ignore).
		t.Setenv("KEYTURN_ALLOW_UNSANDBOXED_SCRIPTS", "true")
	}
	s.startEmulator()
	s.dataDir = filepath.Join(t.TempDir(), "data")
	s.creds = initVault(t, s.dataDir)
	s.scripts = t.TempDir()
	s.start()
	s.seed()

	for s.kills < *crashKills {
		s.cycle()
	}
	s.report()
}

// startEmulator serves the Okta and OPA emulator on loopback, with a little latency on every
// request so that kills land while calls are under way, and responses lost after the change was
// applied for the rest-noverify users' change_password calls.
func (s *crashSuite) startEmulator() {
	n := *crashUsers
	noVerify := map[string]bool{}
	var mu sync.Mutex
	s.emu = emulator.New(emulator.Options{
		Users:                 len(crashKinds) * n,
		AuthnPerUserPerSecond: -1,
		OPATeam:               "crash-opa",
		Faults: emulator.Faults{ResetRate: 0.1, AfterApply: true, Match: func(r *http.Request) bool {
			if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/credentials/change_password") {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			return noVerify[strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/users/"), "/")[0]]
		}},
	})
	for i := range n {
		id, _ := s.emu.UserID(emulator.SeedLogin(s.seedIndex(kindRESTNoVerify, i)))
		noVerify[id] = true
	}
	var jitterMu sync.Mutex
	jitter := rand.New(rand.NewPCG(s.rng.Uint64(), 1))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jitterMu.Lock()
		d := time.Duration(jitter.IntN(30)) * time.Millisecond
		jitterMu.Unlock()
		time.Sleep(d)
		s.emu.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(h)
	s.t.Cleanup(func() {
		s.emu.Close()
		srv.Close()
	})
	s.emuURL = srv.URL
}

// seedIndex is the emulator's seed user index of a kind's i-th user.
func (s *crashSuite) seedIndex(kind string, i int) int {
	return slices.Index(crashKinds, kind)*(*crashUsers) + i + 1
}

// api calls the server and decodes a JSON answer into out (when not nil); it fails the test
// on a transport error or an unexpected status.
func (s *crashSuite) api(method, path string, body any, want int, out any) {
	s.t.Helper()
	status, raw, err := s.do(method, path, body)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	if status != want {
		s.t.Fatalf("%s %s: %d %s", method, path, status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
}

func (s *crashSuite) do(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+s.srv.addr+"/v1/teams/acme"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

func crashField(typ, value string) map[string]any {
	return map[string]any{"type": typ, "value": []string{value}}
}

func (s *crashSuite) record(rec map[string]any) string {
	var out struct {
		UID string `json:"uid"`
	}
	s.api("POST", "/records", rec, http.StatusCreated, &out)
	return out.UID
}

// seed creates the resource records and, for each kind, its users with their rotation
// settings and scripts.
func (s *crashSuite) seed() {
	api := s.record(map[string]any{"type": "login", "title": "Okta API Access Details", "folder": "Crash/Okta",
		"fields": []any{crashField("url", s.emuURL), crashField("password", s.emu.Token())}})
	rest := s.record(map[string]any{"type": "login", "title": "REST endpoint", "folder": "Crash/REST",
		"fields": []any{crashField("url", s.emuURL), crashField("password", s.emu.Token())},
		"custom": []any{map[string]any{"type": "text", "label": "REST Rotation", "value": []string{crashRESTConfig}}}})
	restNoVerify := s.record(map[string]any{"type": "login", "title": "REST endpoint without verify", "folder": "Crash/REST",
		"fields": []any{crashField("url", s.emuURL), crashField("password", s.emu.Token())},
		"custom": []any{map[string]any{"type": "text", "label": "REST Rotation", "value": []string{crashRESTNoVerifyConfig}}}})
	adminID, adminSecret := s.emu.AdminKey()
	opaTeam := s.record(map[string]any{"type": "login", "title": "OPA team admin key", "folder": "Crash/OPA",
		"fields": []any{crashField("url", s.emuURL+"/v1/teams/"+s.emu.OPATeam()), crashField("login", adminID), crashField("password", adminSecret)}})

	scriptsOnly := map[string]any{"method": "scripts_only", "verify_with": "okta", "resource_uid": api}
	for _, kind := range s.kinds {
		for i := range *crashUsers {
			u := &crashUser{kind: kind}
			idx := s.seedIndex(kind, i)
			login, password := emulator.SeedLogin(idx), emulator.SeedPassword(idx)
			u.login = login
			rec := map[string]any{"type": "pamUser", "title": fmt.Sprintf("%s %02d", kind, i), "folder": "Crash/" + kind}
			switch kind {
			case kindOPA:
				name := fmt.Sprintf("crash-robot-%02d", i)
				if _, err := s.emu.CreateServiceUser(name); err != nil {
					s.t.Fatal(err)
				}
				keyID, keySecret, err := s.emu.AddServiceUserKey(name)
				if err != nil {
					s.t.Fatal(err)
				}
				u.login, password = name, keySecret
				rec["custom"] = []any{map[string]any{"type": "text", "label": "key_id", "value": []string{keyID}}}
			case kindRESTNoVerify:
				u.login, _ = s.emu.UserID(login)
			}
			rec["fields"] = []any{crashField("login", u.login), crashField("password", password)}
			u.uid = s.record(rec)
			var settings map[string]any
			var script []byte
			switch kind {
			case kindOkta:
				settings = map[string]any{"method": "general", "connector": "okta", "resource_uid": api}
			case kindOPA:
				settings = map[string]any{"method": "general", "connector": "opa", "resource_uid": opaTeam}
			case kindREST:
				settings = map[string]any{"method": "general", "connector": "rest", "resource_uid": rest}
			case kindRESTNoVerify:
				settings = map[string]any{"method": "general", "connector": "rest", "resource_uid": restNoVerify}
			case kindScript:
				settings, script = scriptsOnly, examples.OktaUserRotation
			case kindFork:
				settings, script = scriptsOnly, []byte(strings.Replace(forkScript, "DETACH\n", "", 1))
			case kindForkDetached:
				settings, script = scriptsOnly, []byte(strings.Replace(forkScript, "DETACH\n", "set -m\n", 1))
			}
			s.api("PUT", "/records/"+u.uid+"/rotation", settings, http.StatusOK, nil)
			if script != nil {
				s.api("POST", "/records/"+u.uid+"/scripts", map[string]any{"name": kind + ".sh",
					"content_base64": base64.StdEncoding.EncodeToString(script), "credential_uids": []string{api}}, http.StatusCreated, nil)
			}
			s.users = append(s.users, u)
			s.byUID[u.uid] = u
		}
	}
}

// start starts a server on the vault and takes a token.
func (s *crashSuite) start() {
	s.t.Helper()
	s.srv = startServer(s.t, "--data", s.dataDir, "--script-dir", s.scripts, "--target-rate", "0",
		"--rotation-backoff", "50ms", "--rotation-backoff-max", "500ms", "--heartbeat-interval", "0")
	s.dead = false
	s.servers[s.srv.cmd.Process.Pid] = true
	s.token = s.srv.token(s.t, s.creds)
}

// exitedOnItsOwn reports (and records) whether the server has died without being killed.
func (s *crashSuite) exitedOnItsOwn() bool {
	if s.dead {
		return true
	}
	select {
	case err := <-s.srv.exited:
		s.dead = true
		s.selfCrashes++
		why, end := logEnd(s.srv.stderr.String())
		s.crashLogs[why] = append(s.crashLogs[why], fmt.Sprintf("server pid %d exited by itself (%v) after kill %d; the end of its log:\n%s",
			s.srv.cmd.Process.Pid, err, s.kills, end))
		return true
	default:
		return false
	}
}

// died reports whether the server has died by itself, waiting a little for it: after a
// request failed, it may be dying.
func (s *crashSuite) died() bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s.exitedOnItsOwn() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// kill kills the server with SIGKILL and waits for it to be gone; it returns false when the
// server had died by itself.
func (s *crashSuite) kill() bool {
	if s.exitedOnItsOwn() {
		return false
	}
	if err := s.srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
	<-s.srv.exited
	s.dead = true
	s.kills++
	return true
}

func (s *crashSuite) stopServer() {
	if s.exitedOnItsOwn() {
		return
	}
	s.srv.stop(s.t)
	s.dead = true
}

// cycle rotates a random part of the users, kills the server after a random delay, starts it
// again (and now and then kills it again while it recovers), lets it settle and checks every
// credential.
func (s *crashSuite) cycle() {
	for _, u := range s.users {
		if s.rng.IntN(100) < 60 {
			status, raw, err := s.do("POST", "/records/"+u.uid+"/rotate", nil)
			if err != nil || (status != http.StatusAccepted && status != http.StatusOK) {
				if s.died() {
					break
				}
				s.t.Fatalf("rotate %s %s: %d %s %v", u.kind, u.login, status, raw, err)
			}
			s.rotateRequests++
		}
	}
	time.Sleep(time.Duration(s.rng.Int64N(int64(1500 * time.Millisecond))))
	s.kill()
	s.start()
	// Sometimes kill the restarted server again while it settles the runs the last one left.
	for s.kills < *crashKills && s.rng.Float64() < *crashAgain {
		time.Sleep(time.Duration(s.rng.Int64N(int64(time.Second))))
		if s.kill() {
			s.killsInRecovery++
		}
		s.start()
	}
	for {
		s.settle()
		if s.check() {
			return
		}
		s.start() // the server died while it was being checked
	}
}

// settle waits until no run is queued or running, then until every process the killed
// servers left is gone (killing what is still alive after 30 s), then for the runs again.
func (s *crashSuite) settle() {
	began := time.Now()
	s.waitRuns()
	s.settleTimes = append(s.settleTimes, time.Since(began))
	left := s.leftovers()
	alive := 0
	for _, p := range left {
		if p.state != 'Z' {
			alive++
		}
	}
	s.orphansAfterSettle += alive
	s.orphansNow = alive
	s.orphansMax = max(s.orphansMax, alive)
	deadline := time.Now().Add(30 * time.Second)
	for alive > 0 && time.Now().Before(deadline) {
		s.reapLeftovers(0)
		alive = 0
		for _, p := range s.leftovers() {
			if p.state != 'Z' {
				alive++
			}
		}
		if alive > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if alive > 0 {
		for _, p := range s.leftovers() {
			if p.state != 'Z' {
				s.orphansKilled++
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
	}
	s.reapLeftovers(5 * time.Second)
	s.waitRuns()
}

// waitRuns waits until no run is queued or running (the server may crash meanwhile: it is
// then started again).
func (s *crashSuite) waitRuns() {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if s.exitedOnItsOwn() {
			s.start()
		}
		busy := 0
		for _, status := range []string{"queued", "running"} {
			code, raw, err := s.do("GET", "/rotations?count=1000&status="+status, nil)
			if err != nil || code != http.StatusOK {
				if s.died() {
					s.start()
					busy = -1
					break
				}
				s.t.Fatalf("list %s runs: %d %s %v", status, code, raw, err)
			}
			var list struct {
				List []json.RawMessage `json:"list"`
			}
			if err := json.Unmarshal(raw, &list); err != nil {
				s.t.Fatal(err)
			}
			busy += len(list.List)
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("after kill %d, runs are still queued or running after 3 minutes", s.kills)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// crashRun is a run as the API shows it.
type crashRun struct {
	ID        string `json:"id"`
	RecordUID string `json:"record_uid"`
	Trigger   string `json:"trigger"`
	Status    string `json:"status"`
	State     string `json:"state"`
	Attempt   int64  `json:"attempt"`
	Error     *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (r crashRun) String() string {
	out := fmt.Sprintf("run %s (%s) %s/%s attempt %d", r.ID, r.Trigger, r.Status, r.State, r.Attempt)
	if r.Error != nil {
		out += fmt.Sprintf(": %s: %s", r.Error.Code, r.Error.Message)
	}
	return out
}

type crashVersion struct {
	Version int64  `json:"version"`
	State   string `json:"state"`
	Value   string `json:"value"`
}

// check compares, for every user, the credential the emulator accepts with the vault's. It
// returns false when the server died by itself meanwhile.
func (s *crashSuite) check() bool {
	type result struct {
		u        *crashUser
		versions []crashVersion
		runs     []crashRun
		keyID    string
	}
	results := make([]result, len(s.users))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var mu sync.Mutex
	var errs []string
	for i, u := range s.users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r := result{u: u}
			get := func(path string, out any) bool {
				code, raw, err := s.do("GET", path, nil)
				if err == nil && code == http.StatusOK {
					err = json.Unmarshal(raw, out)
				} else if err == nil {
					err = fmt.Errorf("%d %s", code, raw)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("GET %s: %v", path, err))
					mu.Unlock()
					return false
				}
				return true
			}
			var vs struct {
				List []crashVersion `json:"list"`
			}
			var runs struct {
				List []crashRun `json:"list"`
			}
			if !get("/records/"+u.uid+"/versions?reveal=true", &vs) || !get("/rotations?count=3&record_uid="+u.uid, &runs) {
				return
			}
			r.versions, r.runs = vs.List, runs.List
			if u.kind == kindOPA {
				var rec struct {
					Custom []struct {
						Label string            `json:"label"`
						Value []json.RawMessage `json:"value"`
					} `json:"custom"`
				}
				if !get("/records/"+u.uid, &rec) {
					return
				}
				for _, f := range rec.Custom {
					if f.Label == "key_id" && len(f.Value) > 0 {
						_ = json.Unmarshal(f.Value[0], &r.keyID)
					}
				}
			}
			results[i] = r
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		if s.died() {
			return false
		}
		s.t.Fatalf("after kill %d, reading the vault failed:\n%s", s.kills, strings.Join(errs, "\n"))
	}
	for _, r := range results {
		s.judge(r.u, r.versions, r.runs, r.keyID)
	}
	return true
}

// judge classifies one user: fine when the target accepts the vault's current credential;
// held as pending when it accepts only a pending one and the user's last run needs attention;
// lost otherwise.
func (s *crashSuite) judge(u *crashUser, versions []crashVersion, runs []crashRun, keyID string) {
	works := func(v crashVersion) bool {
		if u.kind == kindOPA {
			if v.State == "current" {
				return s.emu.ServiceKeyValid(keyID, v.Value)
			}
			ids, _ := s.emu.ServiceUserKeyIDs(u.login)
			for _, id := range ids {
				if s.emu.ServiceKeyValid(id, v.Value) {
					return true
				}
			}
			return false
		}
		pw, ok := s.emu.Password(u.login)
		return ok && pw == v.Value
	}
	var current, working *crashVersion
	for i := range versions {
		v := &versions[i]
		if v.State == "current" {
			current = v
		}
		if works(*v) && (working == nil || v.State == "current") {
			working = v
		}
	}
	last := crashRun{}
	if len(runs) > 0 {
		last = runs[0]
	}
	if current != nil && working == current {
		// A run that needs attention while the target still accepts the current password
		// could have asked the target, and failed instead.
		if verifiable(u.kind) && last.Status == "needs_attention" && !s.seenNeedsAttentionCheck[last.ID] {
			s.seenNeedsAttentionCheck[last.ID] = true
			msg := fmt.Sprintf("after kill %d: %s user %s (record %s): %s, although the target accepts the current password v%d",
				s.kills, u.kind, u.login, u.uid, last, current.Version)
			s.needless = append(s.needless, msg)
			s.t.Error(msg)
		}
		return
	}
	if working != nil && working.State == "pending" && last.Status == "needs_attention" {
		if !s.seenNeedsAttentionCheck[last.ID] {
			s.seenNeedsAttentionCheck[last.ID] = true
			s.heldPending[u.kind]++
		}
		s.repair(u, current)
		return
	}
	// An OPA key cannot be put back: count its loss once, not at every later check.
	lossKey := fmt.Sprintf("%s/%v", u.uid, versions)
	if u.kind == kindOPA && s.seenNeedsAttentionCheck[lossKey] {
		return
	}
	s.seenNeedsAttentionCheck[lossKey] = true
	s.lost[u.kind]++
	var vs []string
	for _, v := range versions {
		mark := ""
		if working != nil && v.Version == working.Version {
			mark = " <- the target accepts this one"
		}
		vs = append(vs, fmt.Sprintf("v%d %s%s", v.Version, v.State, mark))
	}
	var rs []string
	for _, r := range runs {
		rs = append(rs, r.String())
	}
	target := "the target accepts none of the vault's versions"
	if working != nil {
		target = fmt.Sprintf("the target accepts v%d (%s), not the current one", working.Version, working.State)
	}
	msg := fmt.Sprintf("after kill %d: LOST %s user %s (record %s): %s\n    versions: %s\n    runs, newest first: %s\n    script processes of killed servers alive when this restart had settled: %d",
		s.kills, u.kind, u.login, u.uid, target, strings.Join(vs, ", "), strings.Join(rs, "\n      "), s.orphansNow)
	s.t.Error(msg)
	s.repair(u, current)
}

// repair puts the vault's current password back on the target, as an operator would, so that
// one loss does not make every later rotation of the user fail. (OPA keys cannot be set.)
func (s *crashSuite) repair(u *crashUser, current *crashVersion) {
	if u.kind == kindOPA || current == nil {
		return
	}
	if err := s.emu.SetPassword(u.login, current.Value); err != nil {
		s.t.Fatal(err)
	}
}

// report lists every run by status and the figures.
func (s *crashSuite) report() {
	byStatus := map[string]int{}
	needsAttention := map[string]map[string]int{} // kind -> reason -> runs
	failed := map[string]map[string]int{}         // kind -> error code -> runs
	total := 0
	if s.exitedOnItsOwn() {
		s.start()
	}
	for offset := 0; ; offset += 1000 {
		var page struct {
			List []crashRun `json:"list"`
		}
		s.api("GET", "/rotations?count=1000&offset="+strconv.Itoa(offset), nil, http.StatusOK, &page)
		for _, r := range page.List {
			total++
			byStatus[r.Status]++
			if r.Status == "needs_attention" {
				kind := s.byUID[r.RecordUID].kind
				if needsAttention[kind] == nil {
					needsAttention[kind] = map[string]int{}
				}
				why := "?"
				if r.Error != nil {
					why = r.Error.Code + ": " + r.Error.Message
				}
				needsAttention[kind][why]++
			}
			if r.Status == "failed" {
				kind := s.byUID[r.RecordUID].kind
				if failed[kind] == nil {
					failed[kind] = map[string]int{}
				}
				code := "?"
				if r.Error != nil {
					code = r.Error.Code
				}
				failed[kind][code]++
			}
		}
		if len(page.List) < 1000 {
			break
		}
	}
	s.stopServer()
	entries, _ := os.ReadDir(s.scripts)
	dirs := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "keyturn-script-") {
			dirs++
		}
	}
	orphanKeys := 0
	for _, u := range s.users {
		if u.kind == kindOPA {
			ids, _ := s.emu.ServiceUserKeyIDs(u.login)
			orphanKeys += max(0, len(ids)-1)
		}
	}
	sort.Slice(s.settleTimes, func(i, j int) bool { return s.settleTimes[i] < s.settleTimes[j] })
	var b strings.Builder
	fmt.Fprintf(&b, "crash suite figures\n")
	fmt.Fprintf(&b, "  kills (SIGKILL): %d, of which %d hit a restarted server before it had settled; servers that died by themselves: %d\n",
		s.kills, s.killsInRecovery, s.selfCrashes)
	for why, logs := range s.crashLogs {
		fmt.Fprintf(&b, "    %d x %s\n", len(logs), why)
	}
	fmt.Fprintf(&b, "  users: %d (%d each of %s)\n", len(s.users), *crashUsers, strings.Join(s.kinds, ", "))
	fmt.Fprintf(&b, "  rotations asked for: %d; runs: %d", s.rotateRequests, total)
	for _, st := range []string{"succeeded", "failed", "needs_attention", "queued", "running"} {
		fmt.Fprintf(&b, ", %s %d", st, byStatus[st])
	}
	fmt.Fprintf(&b, "\n  checks of every credential: %d (one after each restart settled)\n", len(s.settleTimes))
	fmt.Fprintf(&b, "  LOST (the working credential is not the vault's current), must be 0: %d %v\n", sumOf(s.lost), s.lost)
	fmt.Fprintf(&b, "  working credential held only as pending, its run needs_attention: %d %v\n", sumOf(s.heldPending), s.heldPending)
	fmt.Fprintf(&b, "  runs needs_attention while the target accepted the vault's current password (verifiable kinds), must be 0: %d\n", len(s.needless))
	fmt.Fprintf(&b, "  runs needs_attention by kind and why:\n")
	for _, kind := range s.kinds {
		for why, n := range needsAttention[kind] {
			fmt.Fprintf(&b, "    %s: %d x %s\n", kind, n, why)
		}
	}
	fmt.Fprintf(&b, "  runs failed (the vault's current password still works) by kind and code:\n")
	for _, kind := range s.kinds {
		for code, n := range failed[kind] {
			fmt.Fprintf(&b, "    %s: %d x %s\n", kind, n, code)
		}
	}
	fmt.Fprintf(&b, "  script processes of killed servers alive once the restart settled: %d in all, at most %d at once; still alive 30 s later (killed by the suite): %d\n",
		s.orphansAfterSettle, s.orphansMax, s.orphansKilled)
	fmt.Fprintf(&b, "  keyturn-script-* directories left in --script-dir: %d\n", dirs)
	fmt.Fprintf(&b, "  OPA keys live on the target beyond the vault's current one: %d\n", orphanKeys)
	if n := len(s.settleTimes); n > 0 {
		fmt.Fprintf(&b, "  settling after a restart: median %s, max %s\n", s.settleTimes[n/2].Round(time.Millisecond), s.settleTimes[n-1].Round(time.Millisecond))
	}
	s.t.Log(b.String())

	if n := sumOf(s.lost); n > 0 {
		s.t.Errorf("%d credentials were lost: the target accepted a password the vault does not hold as current (details above)", n)
	}
	for why, logs := range s.crashLogs {
		s.t.Errorf("%d servers died by themselves: %s; the first:\n%s", len(logs), why, logs[0])
	}
	if len(s.needless) > 0 {
		s.t.Errorf("%d runs ended needs_attention although the engine could ask the target, which accepted the current password (details above)", len(s.needless))
	}
	if s.orphansAfterSettle > 0 {
		s.t.Errorf("%d processes started by killed servers were still alive after the restarted server had settled its runs", s.orphansAfterSettle)
	}
	if dirs > 0 {
		s.t.Errorf("%d keyturn-script-* directories were left in the script directory", dirs)
	}
}

func sumOf(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// logEnd returns why a server died, as the panic and its first function of keyturn, and the
// part of its log that says so: from the panic on (its first frames), or the last lines.
func logEnd(log string) (why, end string) {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") {
			why = l
			for _, f := range lines[i:] {
				if strings.HasPrefix(f, "github.com/keyturn/") {
					why += " in " + f[:max(0, strings.LastIndex(f, "("))]
					break
				}
			}
			return why, strings.Join(lines[i:min(len(lines), i+24)], "\n")
		}
	}
	return "no panic in the log", strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// setSubreaper makes this process the child subreaper of its descendants (prctl
// PR_SET_CHILD_SUBREAPER), so that what a killed server leaves behind becomes its child.
func setSubreaper(on bool) error {
	v := uintptr(0)
	if on {
		v = 1
	}
	const prSetChildSubreaper = 36
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetChildSubreaper, v, 0, 0, 0, 0); e != 0 {
		return e
	}
	return nil
}

// leftover is a process descended from this one that is not a server (nor under one).
type leftover struct {
	pid, ppid int
	state     byte
	cmd       string
}

// leftovers lists the processes left by killed servers: this process's children that are not
// servers, and their descendants.
func (s *crashSuite) leftovers() []leftover {
	entries, _ := os.ReadDir("/proc")
	all := map[int]leftover{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		all[pid] = leftover{pid: pid, ppid: ppid, state: f[0][0], cmd: strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))}
	}
	me := os.Getpid()
	var out []leftover
	var walk func(parent int)
	walk = func(parent int) {
		for _, p := range all {
			if p.ppid == parent && !(parent == me && s.servers[p.pid]) {
				out = append(out, p)
				walk(p.pid)
			}
		}
	}
	walk(me)
	return out
}

// reapLeftovers reaps this process's leftover children that have exited (never a server's,
// which os/exec reaps), waiting up to wait for the last ones.
func (s *crashSuite) reapLeftovers(wait time.Duration) {
	deadline := time.Now().Add(wait)
	me := os.Getpid()
	for {
		pending := 0
		for _, p := range s.leftovers() {
			if p.ppid != me {
				continue
			}
			var ws syscall.WaitStatus
			if pid, _ := syscall.Wait4(p.pid, &ws, syscall.WNOHANG, nil); pid != p.pid {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
