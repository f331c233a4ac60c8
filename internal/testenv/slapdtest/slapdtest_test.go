package slapdtest

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/keyturn/keyturn/internal/testenv/procs"
)

// TestStart proves the server runs on ldap:// with StartTLS and on ldaps:// with the
// certificate it hands out, that AddUser's password binds and is stored hashed, and that the
// log records binds and extended operations.
func TestStart(t *testing.T) {
	if os.Getenv("SLAPDTEST_CHILD") == "1" {
		t.Skip("run by TestSlapdDiesWithTheTestBinary")
	}
	s := Start(t)
	const pw = "Us3r-pw-slapdtest"
	_, dn := s.AddUser(t, pw)

	c, err := ldap.DialURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(s.TLSConfig()); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	if err := c.Bind(dn, pw); err != nil {
		t.Fatalf("bind as the user over StartTLS: %v", err)
	}
	if err := c.Bind(dn, "wrong-"+pw); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("bind with a wrong password: %v, want invalid credentials", err)
	}
	tc, err := ldap.DialURL(s.LDAPSURL(), ldap.DialWithTLSConfig(s.TLSConfig()))
	if err != nil {
		t.Fatalf("dial ldaps: %v", err)
	}
	defer tc.Close()
	if err := tc.Bind(dn, pw); err != nil {
		t.Fatalf("bind as the user over ldaps: %v", err)
	}

	stored := s.UserPassword(t, dn)
	if len(stored) != 1 || !strings.HasPrefix(stored[0], "{SSHA}") {
		t.Fatalf("stored userPassword %q, want one {SSHA} hash", stored)
	}
	log := s.Log(t)
	for _, want := range []string{`BIND dn="` + dn + `" method=128`, "EXT oid=1.3.6.1.4.1.4203.1.11.1", "PASSMOD id=", "STARTTLS"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not record %q", want)
		}
	}
	if strings.Contains(log, pw) {
		t.Error("the log holds the password")
	}
}

// TestSlapdDiesWithTheTestBinary proves a test binary killed while its slapd runs leaves no
// slapd behind: a child test binary starts one and is killed with SIGKILL.
func TestSlapdDiesWithTheTestBinary(t *testing.T) {
	if os.Getenv("SLAPDTEST_CHILD") == "1" {
		s, cmd, _ := start(t)
		os.Stdout.WriteString("slapd " + strconv.Itoa(cmd.Process.Pid) + " " + s.URL() + "\n")
		select {} // until killed
	}
	if _, err := os.Stat(Slapd); err != nil {
		unavailable(t, "%s is missing (install slapd)", Slapd)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSlapdDiesWithTheTestBinary$", "-test.v")
	// The child's temporary directories go under this test's, which is removed at its end.
	cmd.Env = append(procs.QuickExit(os.Environ()), "SLAPDTEST_CHILD=1", "TMPDIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "slapd" {
			pid, _ = strconv.Atoi(f[1])
			break
		}
	}
	if pid == 0 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("the child did not report its slapd")
	}
	if !procs.Alive(pid) {
		t.Fatalf("the child's slapd %d is not running", pid)
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for procs.Alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if procs.Alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("slapd %d outlived the killed test binary", pid)
	}
}
