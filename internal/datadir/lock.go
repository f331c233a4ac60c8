package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockFileName is the file in the data directory that a server holds an exclusive lock on.
const LockFileName = "lock"

// InUseError says that another process holds the data directory's lock. PID is 0 when that
// process's id could not be read.
type InUseError struct {
	Dir string
	PID int
}

func (e *InUseError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("data directory in use by another process (%s is locked)", filepath.Join(e.Dir, LockFileName))
	}
	return fmt.Sprintf("data directory in use by pid %d", e.PID)
}

// Lock is an exclusive lock on a data directory, held until Release or until the process
// ends (a crash releases it too).
type Lock struct {
	f *os.File
}

// LockExclusive takes the exclusive lock on dir, without waiting: when another process holds
// it, the error is an *InUseError naming that process. The lock file (0600) holds the
// holder's pid. Its descriptor is close-on-exec, so scripts and other children never inherit
// the lock.
func LockExclusive(dir string) (*Lock, error) {
	path := filepath.Join(dir, LockFileName)
	// os.OpenFile opens with O_CLOEXEC.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the lock file: %w", err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &InUseError{Dir: dir, PID: holder(path)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write the lock file: %w", err)
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up. The lock file stays: removing it would let two processes lock
// two different files of the same name.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// holder reads the pid in the lock file. The holder writes it just after locking, so an empty
// file is read again for a short while.
func holder(path string) int {
	for range 50 {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}
