package script_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/procs"
)

// The tests that need a server to die run one: this test binary again, running a script.
func TestMain(m *testing.M) {
	if os.Getenv("KEYTURN_SCRIPT_SERVER") != "" {
		os.Exit(scriptServer())
	}
	if os.Getenv("KEYTURN_SCRIPT_CHOOSE") != "" {
		_, _, err := script.Choose(context.Background(), "nobody", false, false)
		fmt.Println(err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// scriptServer runs the script in KEYTURN_SCRIPT_SERVER with the default runner, as a server
// would, and reports the recorded process on stdout before the script runs.
func scriptServer() int {
	content, err := os.ReadFile(os.Getenv("KEYTURN_SCRIPT_SERVER"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	r := script.NewRunner(script.Options{})
	s := script.Script{Name: "server.sh", Content: content, Started: func(_ context.Context, p script.Process) error {
		fmt.Printf("%d %d %s\n", p.PID, p.Start, p.Boot)
		return nil
	}}
	res, err := r.Run(context.Background(), s, secret.FromString("pw"), nil)
	fmt.Fprintln(os.Stderr, res.ReturnCode, res.Stderr, err)
	return 0
}

// sandbox returns the sandbox of the tests, which run as root (as CI does).
func sandbox(t *testing.T) *script.Sandbox {
	t.Helper()
	sb, err := script.NewSandbox(script.Sandboxed, "")
	if err != nil {
		t.Fatalf("the tests run as root, as CI does: %v", err)
	}
	return &sb
}

// TestScriptCannotReadTheServersSecrets runs, under a server running as root, a script that
// tries to read the data directory's master key and database, the server's environment and
// memory, and another run's private directory: every read fails.
func TestScriptCannotReadTheServersSecrets(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := datadir.Init(ctx, data, "alpha", datadir.Unseal{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"master.key", "keyturn.db"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Fatalf("the data directory has no %s: %v", f, err)
		}
	}
	// The "server" is this process, running as root.
	t.Setenv("KEYTURN_TEST_SERVER_SECRET", "s3rver-env-Secret")
	r := script.NewRunner(script.Options{Sandbox: sandbox(t)})

	// Another run, which keeps a file in its private directory while the probe looks for it.
	out := procs.SharedDir(t)
	other := "#!/bin/bash\necho other-run-secret > \"$TMPDIR/other.txt\"\ntouch " + out + "/other-ready\n" +
		"while [ ! -e " + out + "/probe-done ]; do sleep 0.02; done\n"
	otherDone := make(chan error, 1)
	go func() {
		res, err := r.Run(ctx, script.Script{Name: "other.sh", Content: []byte(other), Timeout: 30 * time.Second}, secret.Secret{}, nil)
		if err == nil && res.ReturnCode != 0 {
			err = fmt.Errorf("other run: %+v", res)
		}
		otherDone <- err
	}()
	for range 1000 {
		if _, err := os.Stat(out + "/other-ready"); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	server := strconv.Itoa(os.Getpid())
	probes := map[string]string{
		"master.key":  "cat " + data + "/master.key",
		"database":    "cat " + data + "/keyturn.db",
		"data dir":    "ls " + data,
		"environ":     "cat /proc/" + server + "/environ",
		"mem":         "head -c 16 /proc/" + server + "/mem",
		"other run":   "cat /proc/[0-9]*/root/tmp/other.txt /proc/[0-9]*/cwd/other.txt /tmp/other.txt",
		"host proc":   "umount /proc && cat /proc/" + server + "/environ",
		"become root": "su -c id root </dev/null",
	}
	for name, cmd := range probes {
		sh := "#!/bin/bash\n" + cmd + " >" + out + "/got 2>/dev/null\necho \"rc=$?\"\n"
		res, err := r.Run(ctx, script.Script{Name: "probe.sh", Content: []byte(sh)}, secret.Secret{}, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, _ := os.ReadFile(out + "/got")
		if res.Stdout == "rc=0\n" || len(got) > 0 {
			t.Errorf("%s: the script read it (%q, %d bytes)", name, res.Stdout, len(got))
		}
		for _, leak := range []string{"s3rver-env-Secret", "other-run-secret"} {
			if strings.Contains(string(got), leak) {
				t.Errorf("%s: the script read %q", name, leak)
			}
		}
	}
	// The probes ran as the script user, not as root.
	res, err := r.Run(ctx, script.Script{Name: "id.sh", Content: []byte("#!/bin/sh\nid -u; id -g; id -G\n")}, secret.Secret{}, nil)
	if err != nil || res.Stdout != "65534\n65534\n65534\n" {
		t.Errorf("id: %q %v", res.Stdout, err)
	}
	_ = os.WriteFile(out+"/probe-done", nil, 0o666)
	if err := <-otherDone; err != nil {
		t.Fatal(err)
	}
}

// TestScriptsDieWithTheServer kills a server with SIGKILL while its script runs: the script,
// a child it started in a new session (setsid) that would change the target a second later,
// and everything else in its sandbox die at once, so nothing changes the target afterwards.
func TestScriptsDieWithTheServer(t *testing.T) {
	out := procs.SharedDir(t)
	marker := procs.Marker()
	sh := "#!/bin/bash\n" +
		"setsid bash -c 'sleep 1; echo changed > " + out + "/changed' </dev/null >/dev/null 2>&1 &\n" +
		"touch " + out + "/started\nexec sleep " + marker + "\n"
	file := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(file, []byte(sh), 0o600); err != nil {
		t.Fatal(err)
	}
	before := leftovers(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KEYTURN_SCRIPT_SERVER="+file)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 256)
	n, _ := stdout.Read(line) // the recorded process, before the script ran
	fields := strings.Fields(string(line[:n]))
	if len(fields) != 3 {
		t.Fatalf("recorded process: %q", line[:n])
	}
	for range 1000 {
		if _, err := os.Stat(out + "/started"); err == nil && len(procs.With(marker)) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(procs.With(marker)) == 0 {
		t.Fatal("the script did not start")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for len(procs.With(marker)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if pids := procs.With(marker); len(pids) > 0 {
		t.Errorf("the script outlived its server: %v", pids)
	}
	time.Sleep(1500 * time.Millisecond) // past the child's change
	if _, err := os.Stat(out + "/changed"); err == nil {
		t.Error("a process the script started changed the target after the server died")
	}
	if after := leftovers(t); after > before {
		t.Errorf("the killed server left %d private script directories or files in %s", after-before, os.TempDir())
	}
}

// leftovers counts the keyturn-script* entries in the system's temp directory.
func leftovers(t *testing.T) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "keyturn-script*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// TestKillStopsALeftScript kills, through its recorded Process, a sandboxed script whose
// server still runs (what a successor does when the death signal was missed): the script and
// the child it started in a new session die, and Kill says so.
func TestKillStopsALeftScript(t *testing.T) {
	t.Parallel()
	out := procs.SharedDir(t)
	marker := procs.Marker()
	sh := "#!/bin/bash\nsetsid sleep " + marker + " </dev/null >/dev/null 2>&1 &\nsleep 1000\n"
	r := script.NewRunner(script.Options{Sandbox: sandbox(t)})
	recorded := make(chan script.Process, 1)
	done := make(chan script.Result, 1)
	go func() {
		res, _ := r.Run(context.Background(), script.Script{Name: "left.sh", Content: []byte(sh), Timeout: time.Minute,
			Started: func(_ context.Context, p script.Process) error { recorded <- p; return nil }}, secret.Secret{}, nil)
		done <- res
	}()
	p := <-recorded
	for range 1000 {
		if len(procs.With(marker)) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(procs.With(marker)) == 0 {
		t.Fatal("the script's child did not start")
	}
	if err := script.Kill(context.Background(), p, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if pids := procs.With(marker); len(pids) > 0 {
		t.Errorf("the script's child outlived Kill: %v", pids)
	}
	if res := <-done; res.ReturnCode != 128+int(syscall.SIGKILL) {
		t.Errorf("the script ended with %d, want killed", res.ReturnCode)
	}
	// A pid reused by another process, or a process that ended, is left alone.
	if err := script.Kill(context.Background(), p, time.Second); err != nil {
		t.Errorf("a second Kill: %v", err)
	}
	self := script.Process{PID: os.Getpid(), Start: p.Start + 1, Boot: p.Boot}
	if err := script.Kill(context.Background(), self, time.Second); err != nil {
		t.Errorf("another process's pid: %v", err)
	}
	_ = out
}

// TestLeftDirectoriesRemoved: an unsandboxed runner removes the private directories of
// servers that died without removing them, and keeps those of servers that still run.
func TestLeftDirectoriesRemoved(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	// A process that has ended: its pid and start time name no running process.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("keyturn-script-%d.1-123", cmd.Process.Pid)
	st, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(st)
	start := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[19]
	alive := fmt.Sprintf("keyturn-script-%d.%s-456", os.Getpid(), start)
	for _, d := range []string{dead, alive, "keyturn-script-old-format", "other"} {
		if err := os.MkdirAll(filepath.Join(tmp, d, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	unsb, _ := script.NewSandbox(script.Unsandboxed, "")
	script.NewRunner(script.Options{TempDir: tmp, Sandbox: &unsb})
	for _, d := range []string{alive, "keyturn-script-old-format", "other"} {
		if _, err := os.Stat(filepath.Join(tmp, d)); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, dead)); !os.IsNotExist(err) {
		t.Errorf("the dead server's %s is still there: %v", dead, err)
	}
}

// TestCheckRefusesAPrivilegedSandbox starts a server whose capability bounding set lacks
// CAP_SETPCAP (as a careless systemd unit or container would): setpriv then cannot empty the
// script's bounding set and does not say so. The server must refuse to run scripts rather than
// run them with capabilities left; the same server with every capability gets its sandbox.
func TestCheckRefusesAPrivilegedSandbox(t *testing.T) {
	choose := func(prefix ...string) string {
		argv := append(prefix, os.Args[0], "-test.run=^$")
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "KEYTURN_SCRIPT_CHOOSE=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := choose(); got != "<nil>" {
		t.Fatalf("as root with every capability, Choose: %s", got)
	}
	got := choose("setpriv", "--bounding-set=-setpcap", "--inh-caps=-setpcap")
	for _, want := range []string{"PAM scripts cannot be sandboxed", "scripts would run with privileges", "CapBnd"} {
		if !strings.Contains(got, want) {
			t.Errorf("without CAP_SETPCAP, Choose says %q; want it to refuse, with %q", got, want)
		}
	}
}
