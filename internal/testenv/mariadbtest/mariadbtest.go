// Package mariadbtest starts a real MariaDB server for tests, from the binaries installed on the
// machine (Debian's mariadb-server package): one server per test binary, started on first use
// in a temporary directory on a free loopback port, with the general log (every statement) and
// the error log in files the tests can read. Call Main from TestMain so that the server is
// stopped and its directory removed when the tests end; a watcher process does the same if the
// test binary dies first.
//
// Without the binaries, tests that ask for the server are skipped, except in CI (CI=true),
// where that is a failure.
package mariadbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Server is the running test server.
type Server struct {
	Host       string // 127.0.0.1
	Port       int    // its TCP port on Host
	Socket     string // its Unix socket, where root logs in without a password
	GeneralLog string // the file every statement the server receives is written to
	ErrorLog   string // the server's error log
	dir        string
	cmd        *exec.Cmd
	started    time.Duration
}

var (
	once   sync.Once
	srv    *Server
	srvErr error
)

// Main runs the tests and then stops the server if one was started. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(mariadbtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

// Start returns the shared server, starting it on first use. It skips the test when MariaDB is
// not installed, and fails it in CI.
func Start(tb testing.TB) *Server {
	tb.Helper()
	once.Do(func() { srv, srvErr = start() })
	if srvErr != nil {
		if errors.Is(srvErr, errNotInstalled) && os.Getenv("CI") != "true" {
			tb.Skipf("mariadbtest: %v", srvErr)
		}
		tb.Fatalf("mariadbtest: %v", srvErr)
	}
	return srv
}

// StartupTime is how long the server took to initialise its data directory and accept
// connections.
func (s *Server) StartupTime() time.Duration { return s.started }

// Addr is host:port of the server's TCP listener.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Root opens a connection pool as root over the Unix socket; it is closed when the test ends.
func (s *Server) Root(tb testing.TB) *sql.DB {
	tb.Helper()
	db, err := s.root()
	if err != nil {
		tb.Fatalf("mariadbtest: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func (s *Server) root() (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = s.Socket
	cfg.InterpolateParams = true
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("root connector: %w", err)
	}
	return sql.OpenDB(c), nil
}

var errNotInstalled = errors.New("MariaDB is not installed (no mariadbd and mariadb-install-db; apt-get install mariadb-server)")

func binaries() (server, install string, err error) {
	install, err = exec.LookPath("mariadb-install-db")
	if err != nil {
		return "", "", errNotInstalled
	}
	for _, p := range []string{"/usr/sbin/mariadbd", "/usr/bin/mariadbd"} {
		if _, err := os.Stat(p); err == nil {
			return p, install, nil
		}
	}
	if p, err := exec.LookPath("mariadbd"); err == nil {
		return p, install, nil
	}
	return "", "", errNotInstalled
}

func start() (*Server, error) {
	t0 := time.Now()
	bin, install, err := binaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "keyturn-mariadb-")
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", dir: dir, Socket: filepath.Join(dir, "mysqld.sock"),
		GeneralLog: filepath.Join(dir, "general.log"), ErrorLog: filepath.Join(dir, "error.log")}
	data := filepath.Join(dir, "data")
	args := []string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal",
		"--skip-test-db", "--skip-name-resolve"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	if out, err := exec.Command(install, args...).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mariadb-install-db: %w: %s", err, out)
	}
	// A port found free may be taken before the server binds it: try a few.
	for try := 0; ; try++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.Port = port
		err = s.run(bin, data)
		if err == nil {
			break
		}
		if try == 2 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := s.watch(); err != nil {
		s.stop()
		return nil, err
	}
	s.started = time.Since(t0)
	return s, nil
}

// run starts mariadbd on s.Port and waits until root can log in over the socket.
func (s *Server) run(bin, data string) error {
	args := []string{"--no-defaults", "--datadir=" + data, "--socket=" + s.Socket, "--port=" + strconv.Itoa(s.Port),
		"--bind-address=127.0.0.1", "--skip-name-resolve", "--pid-file=" + filepath.Join(s.dir, "mysqld.pid"),
		"--general-log=1", "--general-log-file=" + s.GeneralLog, "--log-error=" + s.ErrorLog, "--log-warnings=4",
		"--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=32M", "--max-connections=300",
		"--skip-log-bin"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.cmd = cmd
	db, err := s.root()
	if err != nil {
		s.stop()
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-exited:
			s.cmd = nil
			log, _ := os.ReadFile(s.ErrorLog)
			return fmt.Errorf("mariadbd exited: %v\n%s", werr, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.ErrorLog)
			_ = cmd.Process.Kill()
			s.cmd = nil
			return fmt.Errorf("mariadbd did not accept connections within 60s: %v\n%s", err, log)
		}
	}
}

// watch starts a process, in its own session, that stops the server and removes its directory
// once this test binary has gone: a test that panics or times out leaves nothing.
func (s *Server) watch() error {
	pid := s.cmd.Process.Pid
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null; do sleep 1; done; kill -KILL %d 2>/dev/null; `+
		`while kill -0 %d 2>/dev/null; do sleep 0.2; done; rm -rf %q`, os.Getpid(), pid, pid, s.dir)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the watcher: %w", err)
	}
	return cmd.Process.Release()
}

// stop kills the server (its data is thrown away) and removes its directory.
func (s *Server) stop() error {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		deadline := time.Now().Add(30 * time.Second)
		for syscall.Kill(s.cmd.Process.Pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		s.cmd = nil
	}
	return os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop stops the server if one was started, for test binaries whose TestMain already runs the
// tests through another Main (pgtest.Main).
func Stop() {
	if srv != nil {
		if err := srv.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "mariadbtest:", err)
		}
	}
}
