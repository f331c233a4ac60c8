package script

import (
	"os/exec"
	"syscall"
	"unsafe"
)

// Constants of waitid(2).
const (
	pPID    = 1
	wExited = 0x4
	wNoWait = 0x1000000
)

// awaitExit blocks until cmd's process has exited and leaves it unreaped (a zombie), so that
// its pid, which is also its process group id, cannot be reused before the caller has killed
// the rest of the group and called cmd.Wait.
func awaitExit(cmd *exec.Cmd) waitResult {
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(cmd.Process.Pid),
			uintptr(unsafe.Pointer(&info)), wExited|wNoWait, 0, 0)
		switch errno {
		case 0:
			return waitResult{}
		case syscall.EINTR:
			continue
		}
		return waitResult{reaped: true, err: cmd.Wait()}
	}
}
