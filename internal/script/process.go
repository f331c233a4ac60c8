package script

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process identifies a started script's process beyond the life of the server that started
// it, so that a successor can kill it before settling its run. PID is the sandbox's first
// process (whose death takes every process of the sandbox with it), or the script itself
// when it runs unsandboxed (its process group is killed too).
type Process struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // start time in clock ticks since boot (/proc/PID/stat, field 22)
	Boot  string `json:"boot"`  // the kernel's boot id: a pid and start time are unique within a boot
}

// IsZero reports whether p names no process.
func (p Process) IsZero() bool { return p.PID <= 0 }

// identify returns the Process of a running pid.
func identify(pid int) (Process, error) {
	start, _, err := procStat(pid)
	if err != nil {
		return Process{}, err
	}
	boot, err := bootID()
	if err != nil {
		return Process{}, err
	}
	return Process{PID: pid, Start: start, Boot: boot}, nil
}

// Kill kills p, with everything it started, if p is still the process it was (same boot, pid
// and start time), and waits up to wait for it to be gone. It returns nil when the process no
// longer runs (killed now, or gone before), and an error when it is still running after wait.
// A successor server calls it for every script its predecessor left before settling the run.
func Kill(ctx context.Context, p Process, wait time.Duration) error {
	if p.IsZero() {
		return nil
	}
	boot, err := bootID()
	if err != nil {
		return fmt.Errorf("kill script process %d: %w", p.PID, err)
	}
	if boot != p.Boot || !same(p) {
		return nil // the machine rebooted, or the process is gone (its pid may be reused)
	}
	// The group first: an unsandboxed script's pid is also its process group's id, and the
	// group's other members die with it; a sandbox's first process takes the whole sandbox.
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	if same(p) {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	deadline := time.Now().Add(wait)
	for same(p) {
		if time.Now().After(deadline) {
			return fmt.Errorf("script process %d is still running %s after SIGKILL", p.PID, wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kill script process %d: %w", p.PID, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// same reports whether p's pid still runs the process p started (a zombie has exited: a
// sandbox's first process becomes one only after every process of its sandbox is gone).
// Elsewhere reports whether p was started on another machine (or before this machine last
// booted): Kill cannot reach it from here.
func (p Process) Elsewhere() (bool, error) {
	boot, err := bootID()
	if err != nil {
		return false, err
	}
	return !p.IsZero() && boot != p.Boot, nil
}

func same(p Process) bool {
	start, state, err := procStat(p.PID)
	return err == nil && start == p.Start && state != 'Z' && state != 'X'
}

// procStat reads a process's start time and state from /proc/PID/stat.
func procStat(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces or parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0][0], err
}

// bootID returns the kernel's boot id.
func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
