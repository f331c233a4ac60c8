package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/testenv/procs"
)

// asUser runs this test binary as keyturn under another uid and gid, copied where that user
// can execute it, and returns its exit code and stderr; it is stopped after wait.
func asUser(t *testing.T, uid, gid uint32, wait time.Duration, args ...string) (int, string) {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "keyturn-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "keyturn")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = procs.QuickExit([]string{"KEYTURN_TEST_MAIN=1", "PATH=/usr/bin:/bin", "HOME=/"})
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(wait):
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done
		return -1, stderr.String() // still serving after wait
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// chownTree gives a data directory to uid:gid.
func chownTree(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestServerNotRootRefusesUnsandboxedScripts starts a server as an unprivileged user: it
// cannot sandbox scripts, so it refuses to start and says what to do, unless the operator
// accepts unsandboxed scripts (a warning is logged) or disables scripts.
func TestServerNotRootRefusesUnsandboxedScripts(t *testing.T) {
	t.Parallel()
	base, err := os.MkdirTemp("/var/tmp", "keyturn-data-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(base, "data")
	initVault(t, data)
	chownTree(t, data, 65534, 65534)

	code, stderr := asUser(t, 65534, 65534, 30*time.Second, "server", "--listen", "127.0.0.1:0", "--data", data)
	if code != 1 {
		t.Fatalf("not root, scripts enabled: exit %d, want 1\n%s", code, stderr)
	}
	for _, want := range []string{"cannot be sandboxed", "allow_unsandboxed_scripts", "disable_scripts", "root"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, stderr)
		}
	}

	code, stderr = asUser(t, 65534, 65534, 3*time.Second, "server", "--listen", "127.0.0.1:0", "--data", data, "--allow-unsandboxed-scripts")
	if code != -1 || !strings.Contains(stderr, `"level":"WARN"`) || !strings.Contains(stderr, "unsandboxed") || !strings.Contains(stderr, `"isolation":"unsandboxed"`) {
		t.Errorf("allow_unsandboxed_scripts: exit %d (want still serving), no warning:\n%s", code, stderr)
	}
	code, stderr = asUser(t, 65534, 65534, 3*time.Second, "server", "--listen", "127.0.0.1:0", "--data", data, "--disable-scripts")
	if code != -1 || !strings.Contains(stderr, `"isolation":"disabled"`) {
		t.Errorf("disable_scripts: exit %d (want still serving):\n%s", code, stderr)
	}
}

// TestServerRefusesAnOpenDataDirectory: scripts run as another user, so a data directory that
// other users may enter is refused.
func TestServerRefusesAnOpenDataDirectory(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	initVault(t, data)
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := keyturn(t, "server", "--listen", "127.0.0.1:0", "--data", data)
	if code != 1 || !strings.Contains(stderr, "chmod 700") {
		t.Errorf("exit %d, want 1 with a chmod hint:\n%s", code, stderr)
	}
	s := startServer(t, "--data", data, "--disable-scripts") // scripts off: nobody else runs here
	s.stop(t)
}
