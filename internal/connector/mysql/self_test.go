package mysql

import (
	"testing"

	"github.com/keyturn/keyturn/internal/connector"
)

// TestIsSelf proves IsSelf, which the engine asks to keep the resource's admin password in
// step, says yes exactly when Rotate takes the self-rotation path: the login is the admin's
// (compared as Rotate compares them, case-insensitively) and self-rotation is allowed.
func TestIsSelf(t *testing.T) {
	acct := func(login, admin, self string) connector.Account {
		return connector.Account{Login: login, Target: connector.Target{AdminLogin: admin, Fields: map[string]string{SelfRotationField: self}}}
	}
	for _, c := range []struct {
		acct connector.Account
		want bool
	}{
		{acct("admin", "admin", "true"), true},
		{acct("ADMIN", "admin", " True "), true},
		{acct("admin", "admin", "false"), false},
		{acct("app", "admin", "true"), false},
		{acct("", "", "true"), false},
	} {
		if got := New(0).IsSelf(c.acct); got != c.want {
			t.Errorf("IsSelf(login %q, admin %q, self %q) = %v", c.acct.Login, c.acct.Target.AdminLogin, c.acct.Target.Fields[SelfRotationField], got)
		}
	}
}
