package ssh_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/connector"
	sshconn "github.com/keyturn/keyturn/internal/connector/ssh"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/sshdtest"
)

const (
	oldPassword = "Old-pw-9f3c1a77e2"
	newPassword = "New-pw-b84d0e5512"
)

// account describes a user on srv, administered by root with the test's key.
func account(srv *sshdtest.Server, login string) connector.Account {
	return connector.Account{Login: login, Target: connector.Target{
		URL:        srv.URL(),
		AdminLogin: "root",
		Fields:     map[string]string{sshconn.HostKeyField: srv.HostKey},
		Secrets:    map[string]secret.Secret{sshconn.PrivateKeyField: secret.New(srv.AdminKey)},
	}}
}

func wantCode(t *testing.T, err error, code string, transient bool) {
	t.Helper()
	var ce *connector.Error
	if !errors.As(err, &ce) || ce.Code != code || ce.Transient != transient {
		t.Fatalf("error = %v, want code %q (transient %v)", err, code, transient)
	}
}

// wantPasswords checks over SSH that good logs in as the account and bad is refused.
func wantPasswords(t *testing.T, c *sshconn.Connector, acct connector.Account, good, bad string) {
	t.Helper()
	ctx := context.Background()
	if err := c.Verify(ctx, acct, secret.FromString(good)); err != nil {
		t.Fatalf("login with the password that should work: %v", err)
	}
	if err := c.Verify(ctx, acct, secret.FromString(bad)); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("login with the password that should be refused: err = %v, want ErrRejected", err)
	}
}

func noSecrets(t *testing.T, where, text string) {
	t.Helper()
	for _, pw := range []string{oldPassword, newPassword} {
		if strings.Contains(text, pw) {
			t.Fatalf("%s holds a password", where)
		}
	}
}

// Rotate changes the password through root's chpasswd fed on stdin: the new password logs in,
// the old one is refused, and neither the command root ran nor sshd's log holds a password.
// Rotating again with the same candidate (the engine resuming after a crash) changes nothing.
func TestRotateThenNewLogsInOldRefused(t *testing.T) {
	srv := sshdtest.Start(t)
	login := sshdtest.User(t, oldPassword)
	acct := account(srv, login)
	c := sshconn.New(0)
	wantPasswords(t, c, acct, oldPassword, newPassword)

	if err := c.Rotate(context.Background(), acct, secret.FromString(oldPassword), secret.FromString(newPassword)); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	wantPasswords(t, c, acct, newPassword, oldPassword)

	if err := c.Rotate(context.Background(), acct, secret.FromString(oldPassword), secret.FromString(newPassword)); err != nil {
		t.Fatalf("Rotate again with the same candidate: %v", err)
	}
	wantPasswords(t, c, acct, newPassword, oldPassword)

	cmds := srv.Commands(t)
	if len(cmds) != 2 || cmds[0] != sshconn.ChpasswdCommand || cmds[1] != sshconn.ChpasswdCommand {
		t.Fatalf("root ran %q, want chpasswd twice", cmds)
	}
	noSecrets(t, "the command root ran", strings.Join(cmds, "\n"))
	log := srv.Log(t)
	if !strings.Contains(log, "Accepted password for "+login) || !strings.Contains(log, "Failed password for "+login) {
		t.Fatalf("sshd's log does not record the logins, so it proves nothing:\n%s", log)
	}
	noSecrets(t, "sshd's log", log)
}

// A refused admin credential fails as a permanent error proving nothing changed, and the user's
// password is untouched.
func TestWrongAdminKeyLeavesUserUntouched(t *testing.T) {
	srv := sshdtest.Start(t)
	login := sshdtest.User(t, oldPassword)
	acct := account(srv, login)
	other, _ := sshdtest.NewKey(t)
	acct.Target.Secrets[sshconn.PrivateKeyField] = secret.New(other)
	c := sshconn.New(0)

	err := c.Rotate(context.Background(), acct, secret.FromString(oldPassword), secret.FromString(newPassword))
	wantCode(t, err, "ssh_auth_refused", false)
	if !connector.IsNotChanged(err) {
		t.Fatalf("a refused admin login must prove nothing changed: %v", err)
	}
	if cmds := srv.Commands(t); len(cmds) != 0 {
		t.Fatalf("root ran %q", cmds)
	}
	wantPasswords(t, c, acct, oldPassword, newPassword)
}

// A missing or wrong host key stops the connection before any login, so nothing runs.
func TestUnpinnedOrWrongHostKeyRefused(t *testing.T) {
	srv := sshdtest.Start(t)
	login := sshdtest.User(t, oldPassword)
	c := sshconn.New(0)
	_, otherPub := sshdtest.NewKey(t)
	for _, tc := range []struct {
		name, hostKey, code string
	}{
		{"unpinned", "", "ssh_host_key_missing"},
		{"wrong key", otherPub, "ssh_host_key_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acct := account(srv, login)
			acct.Target.Fields[sshconn.HostKeyField] = tc.hostKey
			err := c.Rotate(context.Background(), acct, secret.FromString(oldPassword), secret.FromString(newPassword))
			wantCode(t, err, tc.code, false)
			if !connector.IsNotChanged(err) {
				t.Fatalf("must prove nothing changed: %v", err)
			}
			err = c.Verify(context.Background(), acct, secret.FromString(oldPassword))
			wantCode(t, err, tc.code, false)
			if errors.Is(err, connector.ErrRejected) {
				t.Fatalf("a host key failure is not a refused password: %v", err)
			}
		})
	}
	if cmds := srv.Commands(t); len(cmds) != 0 {
		t.Fatalf("root ran %q", cmds)
	}
	if strings.Contains(srv.Log(t), "Accepted") {
		t.Fatal("someone logged in despite the host key")
	}
	wantPasswords(t, c, account(srv, login), oldPassword, newPassword)
}

// The host key may also be pinned as a known_hosts line.
func TestKnownHostsLinePins(t *testing.T) {
	srv := sshdtest.Start(t)
	login := sshdtest.User(t, oldPassword)
	acct := account(srv, login)
	acct.Target.Fields[sshconn.HostKeyField] = "[127.0.0.1]:" + strings.TrimPrefix(srv.URL(), "ssh://127.0.0.1:") + " " + srv.HostKey
	if err := sshconn.New(0).Verify(context.Background(), acct, secret.FromString(oldPassword)); err != nil {
		t.Fatalf("Verify with a known_hosts pin: %v", err)
	}
}

// The admin's own account is refused unless the record allows self-rotation.
func TestSelfRotationRefused(t *testing.T) {
	srv := sshdtest.Start(t)
	acct := account(srv, "root")
	err := sshconn.New(0).Rotate(context.Background(), acct, secret.Secret{}, secret.FromString(newPassword))
	wantCode(t, err, "ssh_self_rotation", false)
	if !connector.IsNotChanged(err) {
		t.Fatalf("must prove nothing changed: %v", err)
	}
	if cmds := srv.Commands(t); len(cmds) != 0 {
		t.Fatalf("root ran %q", cmds)
	}
}

// An unreachable server is transient (retried) and proves nothing changed.
func TestUnreachableIsTransient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, pub := sshdtest.NewKey(t)
	priv, _ := sshdtest.NewKey(t)
	acct := connector.Account{Login: "kt_nobody", Target: connector.Target{
		URL: "ssh://" + addr, AdminLogin: "root",
		Fields:  map[string]string{sshconn.HostKeyField: pub},
		Secrets: map[string]secret.Secret{sshconn.PrivateKeyField: secret.New(priv)},
	}}
	err = sshconn.New(0).Rotate(context.Background(), acct, secret.Secret{}, secret.FromString(newPassword))
	wantCode(t, err, "ssh_unreachable", true)
	if !connector.IsNotChanged(err) || !connector.IsTransient(err) {
		t.Fatalf("want a transient, not-changed error: %v", err)
	}
}

// TestSudoAdminPasswordWithALineBreakRefused proves an admin password holding a line break is
// refused before any connection: sudo would read up to the break and chpasswd would take the
// rest as another account's "user:password" line.
func TestSudoAdminPasswordWithALineBreakRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted, done := make(chan struct{}, 1), make(chan struct{})
	go func() {
		defer close(done)
		if c, err := l.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	_, pub := sshdtest.NewKey(t)
	for _, pw := range []string{"admin-pw\nroot:Chosen-by-me-1", "admin-pw\r\nroot:x", "admin\x00pw"} {
		acct := connector.Account{Login: "kt_someone", Target: connector.Target{
			URL: "ssh://" + l.Addr().String(), AdminLogin: "kt_admin", AdminSecret: secret.FromString(pw),
			Fields: map[string]string{sshconn.HostKeyField: pub},
		}}
		err := sshconn.New(0).Rotate(context.Background(), acct, secret.Secret{}, secret.FromString(newPassword))
		wantCode(t, err, "ssh_bad_admin_password", false)
		if !connector.IsNotChanged(err) || strings.Contains(err.Error(), "Chosen-by-me") {
			t.Fatalf("want a not-changed error without the password: %v", err)
		}
	}
	l.Close()
	<-done
	select {
	case <-accepted:
		t.Fatal("the connector connected with an admin password it must refuse")
	default:
	}
}

// Errors never show a password, even when chpasswd fails and its output comes back.
func TestErrorsHoldNoPassword(t *testing.T) {
	srv := sshdtest.Start(t)
	acct := account(srv, "kt_doesnotexist")
	err := sshconn.New(0).Rotate(context.Background(), acct, secret.FromString(oldPassword), secret.FromString(newPassword))
	wantCode(t, err, "chpasswd_failed", false)
	noSecrets(t, "the error", err.Error())
	if b, _ := os.ReadFile(filepath.Join(srv.Dir, "commands")); strings.Contains(string(b), newPassword) {
		t.Fatal("the command holds the password")
	}
}

// Commands never hold a secret, whichever admin logs in; a non-root admin's go through sudo.
func TestCommandIsFixed(t *testing.T) {
	for _, tgt := range []connector.Target{
		{AdminLogin: "root"},
		{AdminLogin: "ops", AdminSecret: secret.FromString(oldPassword)},
		{AdminLogin: "ops", Secrets: map[string]secret.Secret{sshconn.PrivateKeyField: secret.FromString("k")}},
	} {
		cmds := sshconn.Commands(tgt)
		for _, cmd := range cmds {
			if !strings.HasSuffix(cmd, "chpasswd") || (tgt.AdminLogin != "root") != strings.HasPrefix(cmd, "sudo ") {
				t.Fatalf("Commands(%s) = %q", tgt.AdminLogin, cmds)
			}
			noSecrets(t, "the command", cmd)
		}
	}
}

// BenchmarkRotate measures one rotation (admin login, chpasswd) against the local sshd.
func BenchmarkRotate(b *testing.B) {
	srv := sshdtest.Start(b)
	acct := account(srv, sshdtest.User(b, oldPassword))
	c := sshconn.New(0)
	for i := 0; b.Loop(); i++ {
		pw := secret.FromString(newPassword + strconv.Itoa(i))
		if err := c.Rotate(context.Background(), acct, secret.Secret{}, pw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify measures one verification (a password login as the user).
func BenchmarkVerify(b *testing.B) {
	srv := sshdtest.Start(b)
	acct := account(srv, sshdtest.User(b, oldPassword))
	c := sshconn.New(0)
	for b.Loop() {
		if err := c.Verify(context.Background(), acct, secret.FromString(oldPassword)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareChpasswd measures the server's own chpasswd run locally, without SSH, as the
// baseline of BenchmarkRotate.
func BenchmarkBareChpasswd(b *testing.B) {
	login := sshdtest.User(b, oldPassword)
	for i := 0; b.Loop(); i++ {
		cmd := exec.Command("chpasswd")
		cmd.Stdin = strings.NewReader(login + ":" + newPassword + strconv.Itoa(i) + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("chpasswd: %v: %s", err, out)
		}
	}
}

// A server that accepts the connection but never speaks SSH is a transient timeout, and no
// change was sent.
func TestSilentServerIsTransientTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	_, pub := sshdtest.NewKey(t)
	priv, _ := sshdtest.NewKey(t)
	acct := connector.Account{Login: "kt_nobody", Target: connector.Target{
		URL: "ssh://" + l.Addr().String(), AdminLogin: "root",
		Fields:  map[string]string{sshconn.HostKeyField: pub},
		Secrets: map[string]secret.Secret{sshconn.PrivateKeyField: secret.New(priv)},
	}}
	err = sshconn.New(100*time.Millisecond).Rotate(context.Background(), acct, secret.Secret{}, secret.FromString(newPassword))
	wantCode(t, err, "ssh_timeout", true)
	if !connector.IsNotChanged(err) {
		t.Fatalf("a handshake timeout must prove nothing changed: %v", err)
	}
}
