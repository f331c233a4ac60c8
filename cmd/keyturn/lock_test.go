package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/testenv/procs"
)

// TestSecondServerOnOneDataDirectoryRefuses starts a server, then a second one on the same
// data directory: the second exits 1 naming the first's pid and writes nothing (no recovery,
// no audit event). Once the first is SIGKILLed, its lock is gone and a new server starts.
func TestSecondServerOnOneDataDirectoryRefuses(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	creds := initVault(t, dir)
	first := startServer(t, "--data", dir)
	token := first.token(t, creds)
	status, before := first.call(t, "GET", "/v1/teams/acme/audit_events?limit=1000", token, nil)
	if status != 200 {
		t.Fatalf("audit events: %d %s", status, before)
	}

	second := exec.Command(os.Args[0], "server", "--data", dir, "--listen", "127.0.0.1:0")
	second.Env = append(procs.QuickExit(os.Environ()), "KEYTURN_TEST_MAIN=1")
	var stderr bytes.Buffer
	second.Stderr = &stderr
	done := make(chan error, 1)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- second.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = second.Process.Kill()
		t.Fatal("the second server did not exit: it runs beside the first")
	}
	if code := second.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("second server: exit %d, want 1 (stderr %q)", code, stderr.String())
	}
	want := fmt.Sprintf("data directory in use by pid %d", first.cmd.Process.Pid)
	if !bytes.Contains(stderr.Bytes(), []byte(want)) {
		t.Fatalf("second server said %q, want %q", stderr.String(), want)
	}
	if status, after := first.call(t, "GET", "/v1/teams/acme/audit_events?limit=1000", token, nil); status != 200 || !bytes.Equal(before, after) {
		t.Fatalf("the audit trail changed after a refused start:\nbefore %s\nafter  %s", before, after)
	}

	if st, err := os.Stat(filepath.Join(dir, "lock")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v %v", st, err)
	}

	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	third := startServer(t, "--data", dir)
	third.token(t, creds)
	third.stop(t)
}
