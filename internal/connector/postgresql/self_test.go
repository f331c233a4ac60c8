package postgresql

import (
	"testing"

	"github.com/keyturn/keyturn/internal/connector"
)

// TestIsSelf proves IsSelf, which the engine asks to keep the resource's admin password in
// step, says yes exactly when Rotate would change the admin's own role: the same role name
// (quoted identifiers are case-sensitive) and self-rotation allowed.
func TestIsSelf(t *testing.T) {
	acct := func(login, admin, self string) connector.Account {
		return connector.Account{Login: login, Target: connector.Target{AdminLogin: admin, Fields: map[string]string{FieldSelfRotation: self}}}
	}
	for _, c := range []struct {
		acct connector.Account
		want bool
	}{
		{acct("admin", "admin", "true"), true},
		{acct("admin", "admin", "yes"), true},
		{acct("admin", "admin", ""), false},
		{acct("Admin", "admin", "true"), false},
		{acct("app", "admin", "true"), false},
		{acct("", "", "true"), false},
	} {
		if got := New().IsSelf(c.acct); got != c.want {
			t.Errorf("IsSelf(login %q, admin %q, self %q) = %v", c.acct.Login, c.acct.Target.AdminLogin, c.acct.Target.Fields[FieldSelfRotation], got)
		}
	}
}
