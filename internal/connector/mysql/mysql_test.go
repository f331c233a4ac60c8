package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/mariadbtest"
)

func TestMain(m *testing.M) { os.Exit(mariadbtest.Main(m)) }

var seq atomic.Int64

// fixture is an admin and an account on the shared server, with their passwords.
type fixture struct {
	srv     *mariadbtest.Server
	root    *sql.DB
	acct    connector.Account
	adminPW secret.Secret
	oldPW   secret.Secret
}

// setup creates an admin with CREATE USER and an account user@host with a password, both fresh
// for this test. The passwords hold quotes and backslashes, so that quoting is exercised.
func setup(t *testing.T, user, host string) fixture {
	t.Helper()
	srv := mariadbtest.Start(t)
	root := srv.Root(t)
	n := seq.Add(1)
	ctx := context.Background()
	admin := fmt.Sprintf("kt_admin_%d", n)
	f := fixture{srv: srv, root: root,
		adminPW: secret.FromString(fmt.Sprintf("Adm1n'pw\\%d-zq", n)),
		oldPW:   secret.FromString(fmt.Sprintf("Old'pw\\%d-xk", n))}
	if user == "" {
		user = fmt.Sprintf("kt_user_%d", n)
	}
	mustExec(t, root, "CREATE USER ?@'%' IDENTIFIED BY ?", admin, f.adminPW.Reveal())
	mustExec(t, root, "GRANT CREATE USER ON *.* TO ?@'%'", admin)
	mustExec(t, root, "CREATE USER ?@? IDENTIFIED BY ?", user, host, f.oldPW.Reveal())
	_ = ctx
	f.acct = connector.Account{Login: user, Target: connector.Target{
		URL:        fmt.Sprintf("mysql://%s?tls=false", srv.Addr()),
		AdminLogin: admin, AdminSecret: f.adminPW,
		Fields: map[string]string{},
	}}
	if host != "%" {
		f.acct.Target.Fields[AccountHostField] = host
	}
	return f
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestRotate proves a rotation makes the new password log in and the old one refused, and
// that a second rotation to the same candidate (a run resumed after a crash) succeeds too.
func TestRotate(t *testing.T) {
	f := setup(t, "", "%")
	c := New(0)
	ctx := context.Background()
	if err := c.Verify(ctx, f.acct, f.oldPW); err != nil {
		t.Fatalf("the old password before rotation: %v", err)
	}
	newPW := secret.FromString("N3w'pw\\\"rot-" + t.Name())
	if err := c.Rotate(ctx, f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if err := c.Verify(ctx, f.acct, newPW); err != nil {
		t.Fatalf("the new password: %v", err)
	}
	if err := c.Verify(ctx, f.acct, f.oldPW); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("the old password after rotation: %v, want ErrRejected", err)
	}
	// Resumed after a crash after the change: the engine changes again to the same candidate.
	if err := c.Rotate(ctx, f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate again with the same candidate: %v", err)
	}
	if err := c.Verify(ctx, f.acct, newPW); err != nil {
		t.Fatalf("the new password after the repeat: %v", err)
	}
}

// TestRotateAccountHost proves the account's host part comes from the record: two accounts
// with the same name on different hosts, and only the named one changes.
func TestRotateAccountHost(t *testing.T) {
	f := setup(t, "", "127.0.0.1")
	other := secret.FromString("0ther-pw-host")
	mustExec(t, f.root, "CREATE USER ?@'10.9.9.9' IDENTIFIED BY ?", f.acct.Login, other.Reveal())
	c := New(0)
	ctx := context.Background()
	newPW := secret.FromString("N3w-host-pw")
	if err := c.Rotate(ctx, f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if err := c.Verify(ctx, f.acct, newPW); err != nil {
		t.Fatalf("the new password: %v", err)
	}
	var got string
	if err := f.root.QueryRow("SELECT authentication_string FROM mysql.user WHERE user = ? AND host = '10.9.9.9'", f.acct.Login).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != NativeHash(other) {
		t.Fatalf("the account on the other host changed: %s", got)
	}
	// Without the field the account is user@'%', which does not exist here.
	delete(f.acct.Target.Fields, AccountHostField)
	err := c.Rotate(ctx, f.acct, newPW, secret.FromString("x-unused-1"))
	var ce *connector.Error
	if !errors.As(err, &ce) || ce.Code != "no_such_account" || ce.Transient || !connector.IsNotChanged(err) {
		t.Fatalf("rotate user@'%%' that does not exist: %v, want permanent no_such_account, not changed", err)
	}
}

// TestRotateQuotesNames proves a login with quotes and backslashes is quoted, not injected.
func TestRotateQuotesNames(t *testing.T) {
	f := setup(t, `kt_o'dd\"u`+fmt.Sprint(seq.Add(1)), "%")
	c := New(0)
	ctx := context.Background()
	newPW := secret.FromString("N3w-quoted-pw")
	if err := c.Rotate(ctx, f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if err := c.Verify(ctx, f.acct, newPW); err != nil {
		t.Fatalf("the new password: %v", err)
	}
}

// TestWrongAdmin proves a wrong admin password fails permanently, as not changed, and leaves
// the account's password as it was.
func TestWrongAdmin(t *testing.T) {
	f := setup(t, "", "%")
	c := New(0)
	ctx := context.Background()
	f.acct.Target.AdminSecret = secret.FromString("wrong-admin-pw-qq")
	newPW := secret.FromString("N3w-never-set")
	err := c.Rotate(ctx, f.acct, f.oldPW, newPW)
	var ce *connector.Error
	if !errors.As(err, &ce) || ce.Code != "admin_rejected" || connector.IsTransient(err) || !connector.IsNotChanged(err) {
		t.Fatalf("rotate with a wrong admin: %v, want permanent admin_rejected, not changed", err)
	}
	if strings.Contains(err.Error(), "wrong-admin-pw-qq") || strings.Contains(err.Error(), "N3w-never-set") {
		t.Fatalf("the error holds a password: %v", err)
	}
	if err := c.Verify(ctx, f.acct, f.oldPW); err != nil {
		t.Fatalf("the old password after a failed rotation: %v", err)
	}
	if err := c.Verify(ctx, f.acct, newPW); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("the new password after a failed rotation: %v, want ErrRejected", err)
	}
}

// TestSelfRotation proves the admin's own account is refused unless the record allows it, and
// rotates with the old password when it does.
func TestSelfRotation(t *testing.T) {
	f := setup(t, "", "%")
	c := New(0)
	ctx := context.Background()
	self := f.acct
	self.Login = f.acct.Target.AdminLogin
	newPW := secret.FromString("N3w-self-pw")
	err := c.Rotate(ctx, self, f.adminPW, newPW)
	var ce *connector.Error
	if !errors.As(err, &ce) || ce.Code != "mysql_self_rotation" || !connector.IsNotChanged(err) {
		t.Fatalf("rotate the admin's own account: %v, want mysql_self_rotation", err)
	}
	if err := c.Verify(ctx, self, f.adminPW); err != nil {
		t.Fatalf("the admin password after the refusal: %v", err)
	}
	self.Target.Fields = map[string]string{SelfRotationField: "true"}
	if err := c.Rotate(ctx, self, f.adminPW, newPW); err != nil {
		t.Fatalf("explicit self-rotation: %v", err)
	}
	if err := c.Verify(ctx, self, newPW); err != nil {
		t.Fatalf("the admin's new password: %v", err)
	}
	if err := c.Verify(ctx, self, f.adminPW); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("the admin's old password: %v, want ErrRejected", err)
	}
}

// TestConnectionRefused proves an unreachable server is a transient error that proves nothing
// changed, and that Verify cannot tell (not ErrRejected).
func TestConnectionRefused(t *testing.T) {
	acct := connector.Account{Login: "u", Target: connector.Target{URL: "mysql://127.0.0.1:1?tls=false",
		AdminLogin: "admin", AdminSecret: secret.FromString("adm-pw-conn")}}
	c := New(0)
	ctx := context.Background()
	err := c.Rotate(ctx, acct, secret.FromString("old-pw-conn"), secret.FromString("new-pw-conn"))
	if !connector.IsTransient(err) || !connector.IsNotChanged(err) {
		t.Fatalf("rotate against a closed port: %v, want transient, not changed", err)
	}
	err = c.Verify(ctx, acct, secret.FromString("new-pw-conn"))
	if !connector.IsTransient(err) || errors.Is(err, connector.ErrRejected) {
		t.Fatalf("verify against a closed port: %v, want transient", err)
	}
}

// TestBadURL proves a record without a mysql:// url is refused before anything is sent.
func TestBadURL(t *testing.T) {
	for _, u := range []string{"", "https://db.example:3306", "mysql://db.example?tls=maybe"} {
		acct := connector.Account{Login: "u", Target: connector.Target{URL: u, AdminLogin: "a", AdminSecret: secret.FromString("p")}}
		err := New(0).Rotate(context.Background(), acct, secret.Secret{}, secret.FromString("n"))
		var ce *connector.Error
		if !errors.As(err, &ce) || ce.Code != "mysql_bad_url" || !connector.IsNotChanged(err) {
			t.Errorf("url %q: %v, want mysql_bad_url", u, err)
		}
	}
}

// TestNativeHash checks the hash against the server's own PASSWORD().
func TestNativeHash(t *testing.T) {
	srv := mariadbtest.Start(t)
	root := srv.Root(t)
	for _, pw := range []string{"a", "Old'pw\\1", "ünïcode-pw"} {
		var want string
		if err := root.QueryRow("SELECT PASSWORD(?)", pw).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if got := NativeHash(secret.FromString(pw)); got != want {
			t.Errorf("NativeHash(%q) = %s, server says %s", pw, got, want)
		}
	}
}

// TestLogsHoldNoPassword runs rotations, good and failed, and then reads the server's general
// log (every statement) and error log: no clear password, new, old or admin, is in either.
func TestLogsHoldNoPassword(t *testing.T) {
	f := setup(t, "", "%")
	c := New(0)
	ctx := context.Background()
	newPW := secret.FromString("Cl3ar-new-pw-must-not-log")
	if err := c.Rotate(ctx, f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if err := c.Verify(ctx, f.acct, newPW); err != nil {
		t.Fatal(err)
	}
	_ = c.Verify(ctx, f.acct, f.oldPW)
	bad := f.acct
	bad.Target.AdminSecret = secret.FromString("wrong-admin-must-not-log")
	_ = c.Rotate(ctx, bad, newPW, secret.FromString("never-new-must-not-log"))
	if _, err := f.root.Exec("FLUSH LOGS"); err != nil {
		t.Fatal(err)
	}
	general, err := os.ReadFile(f.srv.GeneralLog)
	if err != nil {
		t.Fatal(err)
	}
	errLog, err := os.ReadFile(f.srv.ErrorLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(general), "ALTER USER '"+f.acct.Login+"'") {
		t.Fatalf("the general log does not hold the ALTER USER: the check below would prove nothing")
	}
	for name, log := range map[string][]byte{"general log": general, "error log": errLog} {
		for _, pw := range []string{newPW.Reveal(), "wrong-admin-must-not-log", "never-new-must-not-log"} {
			if strings.Contains(string(log), pw) {
				t.Errorf("the %s holds the password %q", name, pw)
			}
		}
	}
}
