//go:build !linux

package script

import "os/exec"

// awaitExit waits for cmd's process and reaps it. Without waitid(WNOWAIT), the caller kills
// the rest of the group after the reaping, when the group id could in theory be reused.
func awaitExit(cmd *exec.Cmd) waitResult {
	return waitResult{reaped: true, err: cmd.Wait()}
}
