// Package sshdtest starts a real OpenSSH server for tests, from Debian's openssh-server
// (/usr/sbin/sshd): one server per call, in a temporary directory, on a free loopback port,
// with its own ed25519 host key, password logins checked against /etc/shadow (UsePAM no), and
// root allowed in with a key made for the test. Every command root runs through that key is
// recorded (authorized_keys command=), so tests can read exactly what a client asked to run.
//
// It must run as root (it creates Linux users and sudoers rules). Without sshd (or, for
// SudoAdmin, sudo), or not as root, tests are skipped, except in CI (CI=true), where that is a
// failure.
package sshdtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SSHD is the server binary.
const SSHD = "/usr/sbin/sshd"

// Server is a running sshd.
type Server struct {
	Dir        string // temporary directory holding the config, keys, log and command record
	Host       string // 127.0.0.1
	Port       int
	HostKey    string // the server's public host key, authorized_keys format
	AdminKey   []byte // root's private key (OpenSSH format)
	LogPath    string // sshd's log (LogLevel DEBUG3)
	recordPath string
	keysDir    string // per-user authorized keys (<keysDir>/<login>), readable by every user
}

// URL returns ssh://host:port.
func (s *Server) URL() string { return "ssh://" + net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Commands returns the commands root ran through the admin key, in order.
func (s *Server) Commands(tb testing.TB) []string {
	tb.Helper()
	b, err := os.ReadFile(s.recordPath)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		tb.Fatalf("sshdtest: %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// Log returns what sshd logged so far.
func (s *Server) Log(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		tb.Fatalf("sshdtest: %v", err)
	}
	return string(b)
}

func unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("sshdtest: "+format, args...)
	}
	tb.Skipf("sshdtest: "+format, args...)
}

// Start starts an sshd for this test; it is stopped when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if _, err := os.Stat(SSHD); err != nil {
		unavailable(tb, "%s is missing (install openssh-server)", SSHD)
	}
	if os.Geteuid() != 0 {
		unavailable(tb, "the SSH tests create Linux users and must run as root")
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		tb.Fatalf("sshdtest: %v", err)
	}
	dir := tb.TempDir()
	s := &Server{Dir: dir, Host: "127.0.0.1", LogPath: filepath.Join(dir, "sshd.log"), recordPath: filepath.Join(dir, "commands")}
	keygen := func(path string) {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sshdtest", "-f", path).CombinedOutput()
		if err != nil {
			tb.Fatalf("sshdtest: ssh-keygen: %v: %s", err, out)
		}
	}
	keygen(filepath.Join(dir, "host_ed25519"))
	keygen(filepath.Join(dir, "admin_ed25519"))
	hostPub := readFile(tb, filepath.Join(dir, "host_ed25519.pub"))
	adminPub := readFile(tb, filepath.Join(dir, "admin_ed25519.pub"))
	s.HostKey = strings.TrimSpace(string(hostPub))
	s.AdminKey = readFile(tb, filepath.Join(dir, "admin_ed25519"))

	// Root's key may only run the recorder, which logs the command asked for and runs it.
	recorder := filepath.Join(dir, "record.sh")
	writeFile(tb, recorder, 0o755, fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> %s\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n", s.recordPath))
	writeFile(tb, filepath.Join(dir, "authorized_keys"), 0o600, fmt.Sprintf("command=%q %s", recorder, adminPub))
	// sshd reads a user's authorized keys as that user: a non-root admin's keys must be in a
	// directory every user can enter (the test's own temporary directory is not).
	keysDir, err := os.MkdirTemp("", "sshdtest-keys-")
	if err != nil {
		tb.Fatalf("sshdtest: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(keysDir) })
	if err := os.Chmod(keysDir, 0o755); err != nil {
		tb.Fatalf("sshdtest: %v", err)
	}
	s.keysDir = keysDir

	for attempt := 0; ; attempt++ {
		s.Port = freePort(tb)
		writeFile(tb, filepath.Join(dir, "sshd_config"), 0o600, strings.Join([]string{
			"ListenAddress " + net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
			"HostKey " + filepath.Join(dir, "host_ed25519"),
			"PidFile " + filepath.Join(dir, "sshd.pid"),
			"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys") + " " + filepath.Join(keysDir, "%u"),
			"PasswordAuthentication yes",
			"KbdInteractiveAuthentication no",
			"PubkeyAuthentication yes",
			"UsePAM no",
			"PermitRootLogin prohibit-password",
			"StrictModes no",
			"LogLevel DEBUG3",
			"MaxStartups 100",
			"",
		}, "\n"))
		logf, err := os.Create(s.LogPath)
		if err != nil {
			tb.Fatalf("sshdtest: %v", err)
		}
		cmd := exec.Command(SSHD, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			tb.Fatalf("sshdtest: start sshd: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
		if waitListening(s.Host, s.Port, exited) {
			tb.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			return s
		}
		_ = cmd.Process.Kill()
		<-exited
		if attempt == 2 {
			tb.Fatalf("sshdtest: sshd did not start:\n%s", readFile(tb, s.LogPath))
		}
	}
}

// waitListening waits until the port accepts connections, or sshd exits.
func waitListening(host string, port int, exited <-chan struct{}) bool {
	for range 500 {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port))); err == nil {
			c.Close()
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// User creates a Linux user kt_<random> with password (set through chpasswd's stdin) and
// deletes it when the test ends; it returns the login.
func User(tb testing.TB, password string) string {
	tb.Helper()
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	login := "kt_" + hex.EncodeToString(b[:])
	if out, err := exec.Command("useradd", "-M", "-s", "/bin/bash", login).CombinedOutput(); err != nil {
		tb.Fatalf("sshdtest: useradd: %v: %s", err, out)
	}
	tb.Cleanup(func() {
		// sshd's session process for the user's last login may still be ending (userdel then
		// exits 8, "user is currently used by process"): wait for it a while.
		var out []byte
		var err error
		for range 250 {
			out, err = exec.Command("userdel", login).CombinedOutput()
			var exit *exec.ExitError
			if err == nil || !errors.As(err, &exit) || exit.ExitCode() != 8 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			tb.Errorf("sshdtest: userdel %s: %v: %s", login, err, out)
		}
	})
	cmd := exec.Command("chpasswd")
	cmd.Stdin = bytes.NewBufferString(login + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("sshdtest: chpasswd: %v: %s", err, out)
	}
	return login
}

// SudoRule is the sudoers rule SudoAdmin gives the admin for chpasswd.
type SudoRule int

const (
	// SudoPassword lets the admin run chpasswd as root after giving its own password.
	SudoPassword SudoRule = iota
	// SudoNoPassword lets the admin run chpasswd as root without a password (NOPASSWD).
	SudoNoPassword
	// SudoRootPassword lets the admin run chpasswd as root after giving root's password
	// (targetpw), which the admin does not know: sudo refuses the admin's own password.
	SudoRootPassword
	// SudoNone writes no rule: sudo refuses the admin.
	SudoNone
)

// SudoAdmin creates a non-root Linux user with password, whose returned private key the server
// also accepts, and gives it rule: a file /etc/sudoers.d/<login>, checked by visudo before it
// is put in place and removed when the test ends (with sudo's timestamp for the user).
func (s *Server) SudoAdmin(tb testing.TB, password string, rule SudoRule) (login string, key []byte) {
	tb.Helper()
	if _, err := exec.LookPath("sudo"); err != nil {
		unavailable(tb, "sudo is missing (install sudo)")
	}
	chpasswd, err := exec.LookPath("chpasswd")
	if err != nil {
		tb.Fatalf("sshdtest: %v", err)
	}
	login = User(tb, password)
	key, pub := NewKey(tb)
	writeFile(tb, filepath.Join(s.keysDir, login), 0o644, pub+"\n")
	if rule == SudoNone {
		return login, key
	}
	tag := ""
	defaults := "!lecture"
	switch rule {
	case SudoNoPassword:
		tag = "NOPASSWD: "
	case SudoRootPassword:
		defaults += ", targetpw"
	}
	path := filepath.Join("/etc/sudoers.d", login)
	tmp := path + ".tmp" // sudo ignores names holding a dot until the rename
	writeFile(tb, tmp, 0o440, fmt.Sprintf("Defaults:%s %s\n%s ALL=(root) %s%s\n", login, defaults, login, tag, chpasswd))
	if out, err := exec.Command("visudo", "-c", "-q", "-f", tmp).CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		tb.Fatalf("sshdtest: visudo rejects the rule: %v: %s", err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		tb.Fatalf("sshdtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := os.Remove(path); err != nil {
			tb.Errorf("sshdtest: %v", err)
		}
		_ = os.RemoveAll(filepath.Join("/run/sudo/ts", login))
	})
	return login, key
}

// NewKey returns a fresh private key (OpenSSH format) and its public key line, for tests that
// need a key the server does not know or a host key it does not have.
func NewKey(tb testing.TB) (private []byte, public string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput(); err != nil {
		tb.Fatalf("sshdtest: ssh-keygen: %v: %s", err, out)
	}
	return readFile(tb, path), strings.TrimSpace(string(readFile(tb, path+".pub")))
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("sshdtest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("sshdtest: %v", err)
	}
	return b
}

func writeFile(tb testing.TB, path string, mode os.FileMode, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		tb.Fatalf("sshdtest: %v", err)
	}
}
