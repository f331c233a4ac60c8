// Package pgtest starts a real PostgreSQL server for tests, from the binaries installed on
// the machine (Debian's postgresql package, /usr/lib/postgresql/*/bin): one server per test
// binary, started on first use in a temporary directory on a free loopback port, and one fresh
// database per test. Call Main from TestMain so that the server is stopped and its directory
// removed when the tests end; a watcher process does the same if the test binary dies first.
//
// Without the binaries, tests that ask for a database are skipped, except in CI (CI=true),
// where that is a failure. KEYTURN_TEST_PG_DSN names an existing server to use instead (its
// user must be allowed to create databases).
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// EnvDSN names an existing server to use instead of starting one.
const EnvDSN = "KEYTURN_TEST_PG_DSN"

// superuser is the role initdb creates.
const superuser = "keyturn"

var (
	once    sync.Once
	srv     *server
	srvErr  error
	dbCount atomic.Int64
)

type server struct {
	dir   string // temporary directory holding data/, the socket and the log; "" for EnvDSN
	admin *url.URL
	pid   int // the postmaster's pid
}

// Main runs the tests and then stops the server if one was started. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if srv != nil {
		if err := srv.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
	return code
}

// DSN returns the URL of a new, empty database on the shared server, for this test only.
// It skips the test when PostgreSQL is not installed, and fails it in CI.
func DSN(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { srv, srvErr = start() })
	if srvErr != nil {
		if errors.Is(srvErr, errNotInstalled) && os.Getenv("CI") != "true" {
			tb.Skipf("pgtest: %v", srvErr)
		}
		tb.Fatalf("pgtest: %v", srvErr)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbCount.Add(1))
	admin, err := sql.Open("pgx", srv.admin.String())
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	u := *srv.admin
	u.Path = "/" + name
	return u.String()
}

var errNotInstalled = errors.New("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; apt-get install postgresql)")

// binDir returns the bin directory of the newest installed PostgreSQL.
func binDir() (string, error) {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		return "", errNotInstalled
	}
	slices.SortFunc(found, func(a, b string) int { return majorOf(a) - majorOf(b) })
	return filepath.Dir(found[len(found)-1]), nil
}

func majorOf(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

func start() (*server, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvDSN, err)
		}
		return &server{admin: u}, nil
	}
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "keyturn-pg-")
	if err != nil {
		return nil, err
	}
	s := &server{dir: dir}
	if err := s.initdb(bin); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A port found free may be taken before the server binds it: try a few.
	for try := 0; ; try++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		err = s.pgCtlStart(bin, port)
		if err == nil {
			s.admin = &url.URL{Scheme: "postgres", User: url.User(superuser), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
				Path: "/postgres", RawQuery: "sslmode=disable"}
			break
		}
		if try == 2 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	pid, err := s.postmasterPID()
	if err != nil {
		s.stop()
		return nil, err
	}
	s.pid = pid
	if err := s.watch(); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// asOwner runs a PostgreSQL program as the user that owns the data: initdb and the server
// refuse to run as root, so as root they run as postgres.
func asOwner(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func (s *server) initdb(bin string) error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root, initdb needs the user postgres: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return err
		}
	}
	out, err := asOwner(filepath.Join(bin, "initdb"), "-D", filepath.Join(s.dir, "data"), "-U", superuser, "--auth=trust",
		"-E", "UTF8", "--locale=C.UTF-8", "--no-sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w: %s", err, out)
	}
	return nil
}

func (s *server) pgCtlStart(bin string, port int) error {
	opts := strings.Join([]string{"-c listen_addresses=127.0.0.1", "-p", strconv.Itoa(port), "-k", s.dir,
		"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=200"}, " ")
	out, err := asOwner(filepath.Join(bin, "pg_ctl"), "-D", filepath.Join(s.dir, "data"), "-l", filepath.Join(s.dir, "server.log"),
		"-w", "-t", "60", "-o", opts, "start").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
		return fmt.Errorf("pg_ctl start: %w: %s\n%s", err, out, log)
	}
	return nil
}

func (s *server) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(first))
}

// watch starts a process, in its own session, that stops the server and removes its
// directory once this test binary has gone: a test that panics or times out leaves nothing.
func (s *server) watch() error {
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null; do sleep 1; done; kill -QUIT %d 2>/dev/null; `+
		`while kill -0 %d 2>/dev/null; do sleep 0.2; done; rm -rf %q`, os.Getpid(), s.pid, s.pid, s.dir)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the watcher: %w", err)
	}
	return cmd.Process.Release()
}

// stop shuts the server down (immediate shutdown: the data is thrown away) and removes its
// directory.
func (s *server) stop() error {
	if s.dir == "" {
		return nil
	}
	if s.pid > 0 {
		if err := syscall.Kill(s.pid, syscall.SIGQUIT); err == nil {
			deadline := time.Now().Add(30 * time.Second)
			for syscall.Kill(s.pid, 0) == nil && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
		}
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

// Server returns the shared server's superuser URL (database postgres) and the directory
// holding its data (data/, with pg_hba.conf) and its log (server.log), for tests that
// configure the server itself: authentication, logging. It skips or fails like DSN; with
// EnvDSN the directory is "" and such tests should skip.
func Server(tb testing.TB) (adminURL, dir string) {
	tb.Helper()
	DSN(tb) // starts the server, or skips
	return srv.admin.String(), srv.dir
}

var (
	passwordsOnce sync.Once
	passwordsErr  error
)

// RequirePasswords makes the shared server ask every role but the superuser for its password
// (SCRAM-SHA-256) over TCP, once per test binary, and returns the superuser URL. Tests of
// password changes need it: initdb's trust authentication accepts any password. It skips
// with EnvDSN, whose server cannot be reconfigured.
func RequirePasswords(tb testing.TB) (adminURL string) {
	tb.Helper()
	adminURL, dir := Server(tb)
	if dir == "" {
		tb.Skip("pgtest: an existing server (" + EnvDSN + ") cannot be reconfigured")
	}
	passwordsOnce.Do(func() { passwordsErr = requirePasswords(adminURL, dir) })
	if passwordsErr != nil {
		tb.Fatalf("pgtest: %v", passwordsErr)
	}
	return adminURL
}

func requirePasswords(adminURL, dir string) error {
	ctx := context.Background()
	hba := "local all all trust\nhost all " + superuser + " 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(dir, "data", "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return err
	}
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return err
	}
	defer admin.Close()
	for _, q := range []string{"ALTER SYSTEM SET password_encryption = 'scram-sha-256'",
		"CREATE ROLE pgtest_probe WITH LOGIN PASSWORD 'pgtest-probe'", "SELECT pg_reload_conf()"} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	// The reload is asynchronous: wait until a new session is asked for its password.
	u, _ := url.Parse(adminURL)
	u.User = url.UserPassword("pgtest_probe", "wrong")
	for {
		probe, err := sql.Open("pgx", u.String())
		if err != nil {
			return err
		}
		err = probe.PingContext(ctx)
		probe.Close()
		if err != nil && strings.Contains(err.Error(), "28P01") {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}
