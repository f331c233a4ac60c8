package ssh_test

import (
	"testing"

	"github.com/keyturn/keyturn/internal/connector"
	sshconn "github.com/keyturn/keyturn/internal/connector/ssh"
)

// TestIsSelf proves IsSelf, which the engine asks to keep the resource's admin password in
// step, says yes exactly when Rotate would change the admin's own account: the same Linux
// login and self-rotation allowed.
func TestIsSelf(t *testing.T) {
	acct := func(login, admin, self string) connector.Account {
		return connector.Account{Login: login, Target: connector.Target{AdminLogin: admin, Fields: map[string]string{sshconn.SelfRotationField: self}}}
	}
	for _, c := range []struct {
		acct connector.Account
		want bool
	}{
		{acct("root", "root", "true"), true},
		{acct("ops", "ops", "TRUE"), true},
		{acct("root", "root", ""), false},
		{acct("Root", "root", "true"), false},
		{acct("app", "root", "true"), false},
	} {
		if got := sshconn.New(0).IsSelf(c.acct); got != c.want {
			t.Errorf("IsSelf(login %q, admin %q, self %q) = %v", c.acct.Login, c.acct.Target.AdminLogin, c.acct.Target.Fields[sshconn.SelfRotationField], got)
		}
	}
}
