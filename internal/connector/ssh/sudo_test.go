package ssh_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/connector"
	sshconn "github.com/keyturn/keyturn/internal/connector/ssh"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/sshdtest"
)

const adminPassword = "Adm-pw-7c2e91d04b"

// sudoAccount describes the user login on srv administered by the non-root admin, logging in
// with adminPW, or with key when it is not nil.
func sudoAccount(srv *sshdtest.Server, login, admin, adminPW string, key []byte) connector.Account {
	t := connector.Target{
		URL:        srv.URL(),
		AdminLogin: admin,
		Fields:     map[string]string{sshconn.HostKeyField: srv.HostKey},
		Secrets:    map[string]secret.Secret{},
	}
	if key != nil {
		t.Secrets[sshconn.PrivateKeyField] = secret.New(key)
	} else {
		t.AdminSecret = secret.FromString(adminPW)
	}
	return connector.Account{Login: login, Target: t}
}

// adminLogsIn checks that the admin's own password still logs in (nothing rotated it).
func adminLogsIn(t *testing.T, c *sshconn.Connector, srv *sshdtest.Server, admin, pw string) {
	t.Helper()
	acct := sudoAccount(srv, admin, "root", "", srv.AdminKey)
	if err := c.Verify(context.Background(), acct, secret.FromString(pw)); err != nil {
		t.Fatalf("the admin's own password no longer logs in: %v", err)
	}
}

// noneOf fails when text holds any of the secrets.
func noneOf(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Fatalf("%s holds a password", where)
		}
	}
}

// commandsRun returns the commands sshd ran for clients, in order, from its log: the text
// each session's shell was given, and so every process's command line.
func commandsRun(t *testing.T, srv *sshdtest.Server) []string {
	t.Helper()
	const mark = "mm_audit_run_command entering command "
	var cmds []string
	for _, line := range strings.Split(srv.Log(t), "\n") {
		if _, cmd, ok := strings.Cut(line, mark); ok {
			cmds = append(cmds, strings.TrimRight(cmd, "\r"))
		}
	}
	return cmds
}

// logsHoldNoSecret reads sshd's log (and the system's auth and sudo logs, where there are
// any: this machine has no syslog, so sudo's and PAM's messages go nowhere): no password is in
// them, and every command the admin's sessions ran is one of the fixed ones for the target.
func logsHoldNoSecret(t *testing.T, srv *sshdtest.Server, acct connector.Account, secrets ...string) {
	t.Helper()
	log := srv.Log(t)
	if !strings.Contains(log, " for "+acct.Target.AdminLogin+" from ") {
		t.Fatalf("sshd's log does not record the admin's login, so it proves nothing:\n%s", log)
	}
	noneOf(t, "sshd's log", log, secrets...)
	cmds := commandsRun(t, srv)
	if len(cmds) == 0 {
		t.Fatal("sshd's log records no command, so the check of the commands proves nothing")
	}
	allowed := sshconn.Commands(acct.Target)
	for _, cmd := range cmds {
		if !slices.Contains(allowed, cmd) {
			t.Fatalf("the admin ran %q, not one of %q", cmd, allowed)
		}
		noneOf(t, "a command", cmd, secrets...)
	}
	for _, path := range []string{"/var/log/auth.log", "/var/log/secure", "/var/log/sudo.log"} {
		if b, err := os.ReadFile(path); err == nil {
			noneOf(t, path, string(b), secrets...)
		}
	}
}

func setPassword(t *testing.T, login, pw string) {
	t.Helper()
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(login + ":" + pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v: %s", err, out)
	}
}

// A non-root admin with a password and a sudoers rule asking for it: sudo reads the admin's
// password from stdin, chpasswd the account's line; the new password logs in, the old one is
// refused, the admin's own password is untouched, and no password is in sshd's log or the
// commands. A second rotation to the same candidate (a resumed run) succeeds too.
func TestSudoPasswordAdminRotates(t *testing.T) {
	srv := sshdtest.Start(t)
	login := sshdtest.User(t, oldPassword)
	admin, _ := srv.SudoAdmin(t, adminPassword, sshdtest.SudoPassword)
	acct := sudoAccount(srv, login, admin, adminPassword, nil)
	c := sshconn.New(0)
	wantPasswords(t, c, acct, oldPassword, newPassword)
	for range 2 {
		if err := c.Rotate(context.Background(), acct, secret.FromString(oldPassword), secret.FromString(newPassword)); err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		wantPasswords(t, c, acct, newPassword, oldPassword)
	}
	adminLogsIn(t, c, srv, admin, adminPassword)
	logsHoldNoSecret(t, srv, acct, oldPassword, newPassword, adminPassword)
	// Each rotation: the probe (sudo wants a password), the password check, the change.
	cmds := commandsRun(t, srv)
	allowed := sshconn.Commands(acct.Target)
	probe, withPW := allowed[0], allowed[len(allowed)-1]
	if want := []string{probe, withPW, withPW, probe, withPW, withPW}; !slices.Equal(cmds, want) {
		t.Fatalf("the admin ran %q, want %q", cmds, want)
	}
}

// A non-root admin logging in with a key and a NOPASSWD rule runs sudo -n chpasswd.
func TestSudoKeyAdminRotates(t *testing.T) {
	srv := sshdtest.Start(t)
	login := sshdtest.User(t, oldPassword)
	admin, key := srv.SudoAdmin(t, adminPassword, sshdtest.SudoNoPassword)
	acct := sudoAccount(srv, login, admin, "", key)
	c := sshconn.New(0)
	if err := c.Rotate(context.Background(), acct, secret.FromString(oldPassword), secret.FromString(newPassword)); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	wantPasswords(t, c, acct, newPassword, oldPassword)
	adminLogsIn(t, c, srv, admin, adminPassword)
	logsHoldNoSecret(t, srv, acct, oldPassword, newPassword)
	if cmds := commandsRun(t, srv); len(cmds) != 2 || cmds[0] != cmds[1] || !strings.HasPrefix(cmds[0], "sudo -n ") {
		t.Fatalf("the admin ran %q, want sudo -n chpasswd twice (the probe, the change)", cmds)
	}
}

// An admin logging in with a password whose sudoers rule needs none: sudo asks nothing, so
// the admin's password must not be sent, for chpasswd would read it as a "user:password" line.
// The admin's password here is "<admin>:…", which chpasswd would take as a new password for
// the admin itself. The rotation works and the admin's password stays as it was.
func TestSudoPasswordAdminWithNoPasswordRule(t *testing.T) {
	srv := sshdtest.Start(t)
	login := sshdtest.User(t, oldPassword)
	admin, _ := srv.SudoAdmin(t, adminPassword, sshdtest.SudoNoPassword)
	adminPW := admin + ":Hijacked-5d1a"
	setPassword(t, admin, adminPW)
	acct := sudoAccount(srv, login, admin, adminPW, nil)
	c := sshconn.New(0)
	err := c.Rotate(context.Background(), acct, secret.FromString(oldPassword), secret.FromString(newPassword))
	adminLogsIn(t, c, srv, admin, adminPW)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	wantPasswords(t, c, acct, newPassword, oldPassword)
	logsHoldNoSecret(t, srv, acct, oldPassword, newPassword, adminPW)
}

// A wrong admin password: sshd refuses the login, nothing runs, the account is untouched.
func TestSudoWrongAdminPassword(t *testing.T) {
	srv := sshdtest.Start(t)
	login := sshdtest.User(t, oldPassword)
	admin, _ := srv.SudoAdmin(t, adminPassword, sshdtest.SudoPassword)
	acct := sudoAccount(srv, login, admin, "Wrong-admin-pw-61aa", nil)
	c := sshconn.New(0)
	err := c.Rotate(context.Background(), acct, secret.FromString(oldPassword), secret.FromString(newPassword))
	wantCode(t, err, "ssh_auth_refused", false)
	if !connector.IsNotChanged(err) {
		t.Fatalf("a refused admin login must prove nothing changed: %v", err)
	}
	noneOf(t, "the error", err.Error(), oldPassword, newPassword, "Wrong-admin-pw-61aa")
	wantPasswords(t, c, acct, oldPassword, newPassword)
	noneOf(t, "sshd's log", srv.Log(t), oldPassword, newPassword, "Wrong-admin-pw-61aa")
}

// sshd lets the admin in but sudo refuses its password (the rule asks for root's): the
// rotation fails as sudo_refused, proving nothing changed, and the new password is never
// sent: sudo saw one password attempt, not a second one made of the "user:password" line.
func TestSudoRefusesAdminPassword(t *testing.T) {
	srv := sshdtest.Start(t)
	login := sshdtest.User(t, oldPassword)
	admin, _ := srv.SudoAdmin(t, adminPassword, sshdtest.SudoRootPassword)
	acct := sudoAccount(srv, login, admin, adminPassword, nil)
	c := sshconn.New(0)
	err := c.Rotate(context.Background(), acct, secret.FromString(oldPassword), secret.FromString(newPassword))
	wantCode(t, err, "sudo_refused", false)
	if !connector.IsNotChanged(err) {
		t.Fatalf("a sudo refusal must prove nothing changed: %v", err)
	}
	if !strings.Contains(err.Error(), "1 incorrect password attempt") {
		t.Fatalf("sudo did not see exactly one password attempt: %v", err)
	}
	noneOf(t, "the error", err.Error(), oldPassword, newPassword, adminPassword)
	wantPasswords(t, c, acct, oldPassword, newPassword)
	adminLogsIn(t, c, srv, admin, adminPassword)
	logsHoldNoSecret(t, srv, acct, oldPassword, newPassword, adminPassword)
}

// An admin without any sudoers rule, logging in with a password or a key: a permanent
// sudo_refused naming sudo and chpasswd, proving nothing changed; the account is untouched.
func TestSudoNoRule(t *testing.T) {
	srv := sshdtest.Start(t)
	login := sshdtest.User(t, oldPassword)
	admin, key := srv.SudoAdmin(t, adminPassword, sshdtest.SudoNone)
	c := sshconn.New(0)
	for name, acct := range map[string]connector.Account{
		"password": sudoAccount(srv, login, admin, adminPassword, nil),
		"key":      sudoAccount(srv, login, admin, "", key),
	} {
		err := c.Rotate(context.Background(), acct, secret.FromString(oldPassword), secret.FromString(newPassword))
		var ce *connector.Error
		if !errors.As(err, &ce) || ce.Code != "sudo_refused" || ce.Transient || !connector.IsNotChanged(err) {
			t.Fatalf("%s admin without a sudo rule: %v, want permanent sudo_refused, not changed", name, err)
		}
		if !strings.Contains(err.Error(), "sudo") || !strings.Contains(err.Error(), "chpasswd") {
			t.Fatalf("%s admin: the error does not say sudo refused chpasswd: %v", name, err)
		}
		noneOf(t, "the error", err.Error(), oldPassword, newPassword, adminPassword)
		wantPasswords(t, c, acct, oldPassword, newPassword)
	}
	logsHoldNoSecret(t, srv, sudoAccount(srv, login, admin, adminPassword, nil), oldPassword, newPassword, adminPassword)
}
