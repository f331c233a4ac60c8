package ldap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/slapdtest"
)

var seq atomic.Int64

// fixture is a slapd with a password admin and an account, and the account's record as the
// connector sees it (ldap:// with StartTLS, trusting the server's certificate).
type fixture struct {
	srv     *slapdtest.Server
	acct    connector.Account
	uid, dn string
	adminPW secret.Secret
	oldPW   secret.Secret
}

func setup(t *testing.T) fixture {
	t.Helper()
	srv := slapdtest.Start(t)
	n := seq.Add(1)
	f := fixture{srv: srv,
		adminPW: secret.FromString(fmt.Sprintf("Adm1n-pw-%d-zq(*)\\", n)),
		oldPW:   secret.FromString(fmt.Sprintf("Old-pw-%d-xk\"é", n))}
	admin := srv.AddAdmin(t, f.adminPW.Reveal())
	f.uid, f.dn = srv.AddUser(t, f.oldPW.Reveal())
	f.acct = connector.Account{Login: f.dn, Target: connector.Target{
		URL: srv.URL(), AdminLogin: admin, AdminSecret: f.adminPW,
		Fields: map[string]string{FieldCACertificate: srv.CACert},
	}}
	return f
}

func (f fixture) verify(t *testing.T, pw secret.Secret) error {
	t.Helper()
	return New(0).Verify(context.Background(), f.acct, pw)
}

// mustBind fails the test unless pw binds as the account.
func (f fixture) mustBind(t *testing.T, pw secret.Secret, what string) {
	t.Helper()
	if err := f.verify(t, pw); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// mustNotBind fails the test unless the directory refuses pw for the account.
func (f fixture) mustNotBind(t *testing.T, pw secret.Secret, what string) {
	t.Helper()
	if err := f.verify(t, pw); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("%s: %v, want ErrRejected", what, err)
	}
}

// assertHashed checks that slapd stores the account's password as a salted hash, not as sent.
func (f fixture) assertHashed(t *testing.T, pw secret.Secret) {
	t.Helper()
	stored := f.srv.UserPassword(t, f.dn)
	if len(stored) != 1 || !strings.HasPrefix(stored[0], "{SSHA}") || strings.Contains(stored[0], pw.Reveal()) {
		t.Fatalf("the stored userPassword is %q, want one {SSHA} hash", stored)
	}
}

func codeOf(err error) string {
	var ce *connector.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

// TestRotateAsAdmin proves a rotation by the admin (Password Modify over StartTLS) makes the new
// password bind and the old one refused, that slapd stores it hashed, and that a second
// rotation to the same candidate (a run resumed after a crash) succeeds too.
func TestRotateAsAdmin(t *testing.T) {
	f := setup(t)
	c := New(0)
	ctx := context.Background()
	f.mustBind(t, f.oldPW, "the old password before rotation")
	newPW := secret.FromString(`N3w-pw-"rot"\(*)-` + t.Name())
	if err := c.Rotate(ctx, f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	f.mustBind(t, newPW, "the new password")
	f.mustNotBind(t, f.oldPW, "the old password after rotation")
	f.assertHashed(t, newPW)
	if err := c.Rotate(ctx, f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate again with the same candidate: %v", err)
	}
	f.mustBind(t, newPW, "the new password after the repeat")
	log := f.srv.Log(t)
	if !strings.Contains(log, `PASSMOD id="`+f.dn+`" new`) || strings.Contains(log, `PASSMOD id="`+f.dn+`" old`) {
		t.Fatal("slapd's log does not show an admin's Password Modify (with no old password) of the account")
	}
	if !strings.Contains(log, "STARTTLS") {
		t.Fatal("slapd's log shows no StartTLS: the bind went in clear")
	}
}

// TestRotateAsUser proves the user mode: no admin at all, the account changes its own password
// with the old one; a repeat after the change (the old password no longer binds) succeeds
// because the new one binds; a wrong old password that is not the new one fails, unchanged.
func TestRotateAsUser(t *testing.T) {
	f := setup(t)
	f.acct.Target.AdminLogin, f.acct.Target.AdminSecret = "", secret.Secret{}
	f.acct.Target.Fields[FieldChangeMode] = ModeUser
	c := New(0)
	ctx := context.Background()
	newPW := secret.FromString("N3w-user-pw-" + t.Name())
	if err := c.Rotate(ctx, f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate as the user: %v", err)
	}
	f.mustBind(t, newPW, "the new password")
	f.mustNotBind(t, f.oldPW, "the old password after rotation")
	f.assertHashed(t, newPW)
	if !strings.Contains(f.srv.Log(t), `PASSMOD id="`+f.dn+`" old new`) {
		t.Fatal("slapd's log does not show a Password Modify with the old password")
	}
	if err := c.Rotate(ctx, f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate again after the change (a resumed run): %v", err)
	}
	err := c.Rotate(ctx, f.acct, secret.FromString("not-the-password"), secret.FromString("never-set-pw"))
	if codeOf(err) != "auth_rejected" || connector.IsTransient(err) || !connector.IsNotChanged(err) {
		t.Fatalf("rotate with a wrong old password: %v, want permanent auth_rejected, not changed", err)
	}
	f.mustBind(t, newPW, "the password after a refused change")
}

// TestRotateOverLDAPS proves the connector rotates and verifies over ldaps://.
func TestRotateOverLDAPS(t *testing.T) {
	f := setup(t)
	f.acct.Target.URL = f.srv.LDAPSURL()
	newPW := secret.FromString("N3w-ldaps-pw")
	if err := New(0).Rotate(context.Background(), f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate over ldaps: %v", err)
	}
	f.mustBind(t, newPW, "the new password over ldaps")
	f.mustNotBind(t, f.oldPW, "the old password over ldaps")
}

// TestUntrustedCertificate proves a server whose certificate the records do not trust is
// refused, permanently and before any bind, over StartTLS and over ldaps://.
func TestUntrustedCertificate(t *testing.T) {
	f := setup(t)
	delete(f.acct.Target.Fields, FieldCACertificate)
	for _, u := range []string{f.srv.URL(), f.srv.LDAPSURL()} {
		f.acct.Target.URL = u
		err := New(0).Rotate(context.Background(), f.acct, f.oldPW, secret.FromString("never-set-tls"))
		if codeOf(err) != "ldap_tls_untrusted" || connector.IsTransient(err) || !connector.IsNotChanged(err) {
			t.Fatalf("%s with an untrusted certificate: %v, want permanent ldap_tls_untrusted, not changed", u, err)
		}
	}
	f.acct.Target.Fields[FieldCACertificate] = f.srv.CACert
	f.mustBind(t, f.oldPW, "the old password")
}

// TestPlainLDAP proves StartTLS can be turned off for OpenLDAP (the log then shows none).
func TestPlainLDAP(t *testing.T) {
	f := setup(t)
	f.acct.Target.Fields[FieldStartTLS] = "false"
	newPW := secret.FromString("N3w-plain-pw")
	if err := New(0).Rotate(context.Background(), f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	f.mustBind(t, newPW, "the new password")
	if strings.Contains(f.srv.Log(t), "STARTTLS") {
		t.Fatal("StartTLS was used although the record turned it off")
	}
}

// TestWrongAdmin proves a wrong admin password fails permanently, as not changed, with no
// password in the error, and leaves the account's password as it was.
func TestWrongAdmin(t *testing.T) {
	f := setup(t)
	f.acct.Target.AdminSecret = secret.FromString("wrong-admin-pw-qq")
	newPW := secret.FromString("N3w-never-set")
	err := New(0).Rotate(context.Background(), f.acct, f.oldPW, newPW)
	if codeOf(err) != "admin_rejected" || connector.IsTransient(err) || !connector.IsNotChanged(err) {
		t.Fatalf("rotate with a wrong admin: %v, want permanent admin_rejected, not changed", err)
	}
	for _, pw := range []string{"wrong-admin-pw-qq", "N3w-never-set", f.oldPW.Reveal()} {
		if strings.Contains(err.Error(), pw) {
			t.Fatalf("the error holds a password: %v", err)
		}
	}
	f.mustBind(t, f.oldPW, "the old password after a failed rotation")
	f.mustNotBind(t, newPW, "the new password after a failed rotation")
}

// TestAdminWithoutRights proves an admin DN that may not write userPassword fails permanently,
// not changed (slapd answers insufficientAccessRights).
func TestAdminWithoutRights(t *testing.T) {
	f := setup(t)
	lesserPW := secret.FromString("Lesser-admin-pw")
	_, lesser := f.srv.AddUser(t, lesserPW.Reveal())
	f.acct.Target.AdminLogin, f.acct.Target.AdminSecret = lesser, lesserPW
	err := New(0).Rotate(context.Background(), f.acct, f.oldPW, secret.FromString("N3w-never-set"))
	if codeOf(err) != "forbidden" || connector.IsTransient(err) || !connector.IsNotChanged(err) {
		t.Fatalf("rotate as an admin without rights: %v, want permanent forbidden, not changed", err)
	}
	f.mustBind(t, f.oldPW, "the old password")
}

// TestSelfRotation proves the admin's own DN (however it is spelled) is refused unless the
// record allows it, and rotates with the old password when it does.
func TestSelfRotation(t *testing.T) {
	f := setup(t)
	c := New(0)
	ctx := context.Background()
	self := f.acct
	self.Login = strings.ToUpper(f.acct.Target.AdminLogin) // the same DN, another spelling
	self.Target.Fields = map[string]string{FieldCACertificate: f.srv.CACert}
	newPW := secret.FromString("N3w-self-pw")
	err := c.Rotate(ctx, self, f.adminPW, newPW)
	if codeOf(err) != "ldap_self_rotation" || connector.IsTransient(err) || !connector.IsNotChanged(err) {
		t.Fatalf("rotate the admin's own DN: %v, want permanent ldap_self_rotation, not changed", err)
	}
	if err := c.Verify(ctx, self, f.adminPW); err != nil {
		t.Fatalf("the admin password after the refusal: %v", err)
	}
	self.Target.Fields[FieldSelfRotation] = "true"
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

// TestSelfRotationNeedsTheAdminsDN proves that IsSelf, which the engine asks to keep the
// resource's password in step, knows every self-rotation Rotate carries out: a login that is
// a name the directory finds to be the admin is refused (nothing changed), and the admin's DN
// however spelled is a self-rotation only when the record allows it.
func TestSelfRotationNeedsTheAdminsDN(t *testing.T) {
	f := setup(t)
	c := New(0)
	ctx := context.Background()
	admin := f.acct.Target.AdminLogin
	byName := f.acct
	byName.Login = strings.TrimPrefix(strings.Split(admin, ",")[0], "cn=")
	byName.Target.Fields = map[string]string{FieldCACertificate: f.srv.CACert, FieldSelfRotation: "true",
		FieldBaseDN: slapdtest.Suffix, FieldLoginAttribute: "cn"}
	if c.IsSelf(byName) {
		t.Fatal("IsSelf of a login that is not a DN")
	}
	err := c.Rotate(ctx, byName, f.adminPW, secret.FromString("N3w-by-name"))
	if codeOf(err) != "ldap_self_rotation" || !connector.IsNotChanged(err) {
		t.Fatalf("a self-rotation by name: %v, want ldap_self_rotation, not changed", err)
	}
	self := byName
	self.Login = strings.ToUpper(admin)
	if err := c.Verify(ctx, self, f.adminPW); err != nil {
		t.Fatalf("the admin's password after the refusal: %v", err)
	}
	if !c.IsSelf(self) {
		t.Fatal("IsSelf of the admin's DN in capitals, self-rotation allowed: false")
	}
	self.Target.Fields = map[string]string{FieldSelfRotation: "false"}
	if c.IsSelf(self) {
		t.Fatal("IsSelf with self-rotation not allowed")
	}
	if c.IsSelf(f.acct) {
		t.Fatal("IsSelf of another account")
	}
}

// TestLoginLookup proves a login that is not a DN is looked up under the base DN, and that an
// unknown one fails permanently without a change.
func TestLoginLookup(t *testing.T) {
	f := setup(t)
	c := New(0)
	ctx := context.Background()
	byName := f.acct
	byName.Login = f.uid
	err := c.Rotate(ctx, byName, f.oldPW, secret.FromString("never-set-lookup"))
	if codeOf(err) != "ldap_no_base_dn" || !connector.IsNotChanged(err) {
		t.Fatalf("a login without a base DN: %v, want ldap_no_base_dn", err)
	}
	byName.Target.Fields[FieldBaseDN] = slapdtest.Suffix
	newPW := secret.FromString("N3w-lookup-pw")
	if err := c.Rotate(ctx, byName, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate by login: %v", err)
	}
	if err := c.Verify(ctx, byName, newPW); err != nil {
		t.Fatalf("verify by login: %v", err)
	}
	f.mustBind(t, newPW, "the new password, by DN")
	byName.Login = "kt-nobody-*"
	err = c.Rotate(ctx, byName, newPW, secret.FromString("never-set-lookup"))
	if codeOf(err) != "no_such_account" || connector.IsTransient(err) || !connector.IsNotChanged(err) {
		t.Fatalf("rotate an unknown login: %v, want permanent no_such_account", err)
	}
}

// TestUnreachable proves an unreachable directory is a transient error that proves nothing
// changed, and that Verify cannot tell (not ErrRejected).
func TestUnreachable(t *testing.T) {
	acct := connector.Account{Login: "uid=u,dc=example", Target: connector.Target{URL: "ldap://127.0.0.1:1",
		AdminLogin: "cn=admin,dc=example", AdminSecret: secret.FromString("adm-pw-conn")}}
	c := New(0)
	ctx := context.Background()
	err := c.Rotate(ctx, acct, secret.FromString("old-pw-conn"), secret.FromString("new-pw-conn"))
	if codeOf(err) != "connection" || !connector.IsTransient(err) || !connector.IsNotChanged(err) {
		t.Fatalf("rotate against a closed port: %v, want transient connection, not changed", err)
	}
	err = c.Verify(ctx, acct, secret.FromString("new-pw-conn"))
	if !connector.IsTransient(err) || errors.Is(err, connector.ErrRejected) {
		t.Fatalf("verify against a closed port: %v, want transient", err)
	}
	for _, pw := range []string{"adm-pw-conn", "old-pw-conn", "new-pw-conn"} {
		if strings.Contains(err.Error(), pw) {
			t.Fatalf("the error holds a password: %v", err)
		}
	}
}

// TestLogsHoldNoPassword runs rotations, good and failed, as the admin and as the user, and
// then reads slapd's log at level stats: it records the binds and Password Modify operations,
// and holds no password, new, old or admin.
func TestLogsHoldNoPassword(t *testing.T) {
	f := setup(t)
	c := New(0)
	ctx := context.Background()
	newPW := secret.FromString("Cl3ar-new-pw-must-not-log")
	if err := c.Rotate(ctx, f.acct, f.oldPW, newPW); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	f.mustBind(t, newPW, "the new password")
	_ = f.verify(t, f.oldPW)
	user := f.acct
	user.Target.Fields = map[string]string{FieldCACertificate: f.srv.CACert, FieldChangeMode: ModeUser, FieldStartTLS: "false"}
	userPW := secret.FromString("Cl3ar-user-pw-must-not-log")
	if err := c.Rotate(ctx, user, newPW, userPW); err != nil {
		t.Fatalf("rotate as the user: %v", err)
	}
	bad := f.acct
	bad.Target.AdminSecret = secret.FromString("wrong-admin-must-not-log")
	_ = c.Rotate(ctx, bad, userPW, secret.FromString("never-new-must-not-log"))
	log := f.srv.Log(t)
	for _, want := range []string{`BIND dn="` + f.dn + `" method=128`, `BIND dn="` + strings.ToLower(f.acct.Target.AdminLogin) + `" method=128`,
		"EXT oid=1.3.6.1.4.1.4203.1.11.1", `PASSMOD id="` + f.dn + `" new`, "PASSMOD id=\"" + f.dn + "\" old new", "RESULT tag=97 err=49"} {
		if !strings.Contains(strings.ToLower(log), strings.ToLower(want)) {
			t.Errorf("slapd's log does not record %q: the check below would prove little", want)
		}
	}
	for _, pw := range []string{newPW.Reveal(), f.oldPW.Reveal(), userPW.Reveal(), f.adminPW.Reveal(), "wrong-admin-must-not-log", "never-new-must-not-log"} {
		if strings.Contains(log, pw) {
			t.Errorf("slapd's log holds the password %q", pw)
		}
	}
}

// TestBadTarget proves records the connector cannot use are refused before anything is sent.
func TestBadTarget(t *testing.T) {
	for _, tc := range []struct {
		url    string
		fields map[string]string
		admin  string
		code   string
	}{
		{"", nil, "cn=a", "ldap_bad_target"},
		{"https://dir.example", nil, "cn=a", "ldap_bad_target"},
		{"ldap://user:pw@dir.example", nil, "cn=a", "ldap_bad_target"},
		{"ldap://dir.example/dc=example?uid", nil, "cn=a", "ldap_bad_target"},
		{"ldap://dir.example", map[string]string{FieldStartTLS: "maybe"}, "cn=a", "ldap_bad_target"},
		{"ldap://dir.example", map[string]string{FieldDirectoryType: "novell"}, "cn=a", "ldap_bad_target"},
		{"ldap://dir.example", map[string]string{FieldChangeMode: "root"}, "cn=a", "ldap_bad_target"},
		{"ldap://dir.example", map[string]string{FieldCACertificate: "not a pem"}, "cn=a", "ldap_bad_target"},
		{"ldap://dir.example", nil, "admin@example.com", "ldap_bad_admin"},
		{"ldap://dir.example", nil, "", "ldap_no_admin"},
	} {
		acct := connector.Account{Login: "uid=u,dc=example", Target: connector.Target{URL: tc.url, Fields: tc.fields,
			AdminLogin: tc.admin, AdminSecret: secret.FromString("p")}}
		err := New(0).Rotate(context.Background(), acct, secret.FromString("o"), secret.FromString("n"))
		if codeOf(err) != tc.code || !connector.IsNotChanged(err) || connector.IsTransient(err) {
			t.Errorf("url %q fields %v admin %q: %v, want %s, not changed", tc.url, tc.fields, tc.admin, err, tc.code)
		}
	}
}

// BenchmarkRotate measures whole rotations (a connection with StartTLS, the admin's bind,
// Password Modify, then a fresh connection and bind as the account) against slapd, with and
// without StartTLS, beside the bare Password Modify on one open connection bound as the admin,
// by the same loop.
func BenchmarkRotate(b *testing.B) {
	srv := slapdtest.Start(b)
	adminPW := secret.FromString("Bench-admin-pw")
	admin := srv.AddAdmin(b, adminPW.Reveal())
	_, dn := srv.AddUser(b, "Bench-0")
	ctx := context.Background()
	for _, tc := range []struct{ name, startTLS string }{{"connector_starttls", "true"}, {"connector_plain", "false"}} {
		b.Run(tc.name, func(b *testing.B) {
			a := connector.Account{Login: dn, Target: connector.Target{URL: srv.URL(), AdminLogin: admin, AdminSecret: adminPW,
				Fields: map[string]string{FieldCACertificate: srv.CACert, FieldStartTLS: tc.startTLS}}}
			c := New(0)
			for i := 0; b.Loop(); i++ {
				next := secret.FromString(fmt.Sprintf("Bench-%s-%d", tc.name, i+1))
				if err := c.Rotate(ctx, a, secret.Secret{}, next); err != nil {
					b.Fatal(err)
				}
				if err := c.Verify(ctx, a, next); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
		})
	}
	b.Run("bare_passmod", func(b *testing.B) {
		conn, err := ldap.DialURL(srv.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Bind(admin, adminPW.Reveal()); err != nil {
			b.Fatal(err)
		}
		for i := 0; b.Loop(); i++ {
			if _, err := conn.PasswordModify(ldap.NewPasswordModifyRequest(dn, "", fmt.Sprintf("Bench-bare-%d", i))); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "passmods/s")
	})
}
