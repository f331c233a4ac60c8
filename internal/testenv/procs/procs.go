// Package procs finds the processes a test started by a marker in their command lines, and
// makes a directory that a sandboxed script and the test can both use.
package procs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Marker returns a unique number to put in a command line (e.g. `sleep MARKER`), which tags a
// test's processes, whatever pid namespace they run in.
func Marker() string {
	return fmt.Sprintf("1000%d.%d", os.Getpid(), time.Now().UnixNano()%1e9)
}

// With returns the host pids of the live processes (not zombies) whose command line holds
// marker.
func With(marker string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmd), marker) || !Alive(pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// Alive reports whether pid runs: it exists and is not a zombie waiting for a parent that
// does not reap (PID 1 of a container may not).
func Alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// Wait waits up to d until n processes hold marker, and returns them (fewer when d ran out).
func Wait(marker string, n int, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		pids := With(marker)
		if len(pids) >= n || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SharedDir returns a directory, removed after the test, that a sandboxed script (another
// user, with a private /tmp) can write and the test can read: under /var/tmp, mode 0777.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "keyturn-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// QuickExit returns env (a child's environment) with the race detector's one-second sleep at
// exit turned off (GORACE atexit_sleep_ms=0), keeping the GORACE options env already has: for
// a test that runs a race-built binary as a child many times. A race the child finds is still
// reported, and still makes it exit non-zero.
func QuickExit(env []string) []string {
	gorace := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GORACE="); ok {
			gorace = v
		}
	}
	return append(env, "GORACE="+strings.TrimSpace(gorace+" atexit_sleep_ms=0"))
}
