package rotation_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/connector"
	sshconn "github.com/keyturn/keyturn/internal/connector/ssh"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/sshdtest"
	"github.com/keyturn/keyturn/internal/vault"
)

const sshInitial = "Initial-ssh-Pw-7c1e"

// sshFixture is the fixture with a Linux user on a real sshd, a resource record pinning the
// server's host key and holding root's private key, and a pamUser set to the ssh connector.
func sshFixture(t *testing.T) (*fixture, *sshdtest.Server, string, string) {
	srv := sshdtest.Start(t)
	login := sshdtest.User(t, sshInitial)
	f := newFixture(t, fixtureOptions{connectors: map[string]connector.Connector{"ssh": sshconn.New(0)}})
	key := vault.Field{Type: "secret", Label: sshconn.PrivateKeyField, Value: field("secret", string(srv.AdminKey)).Value}
	resource := f.create(vault.Record{Type: "pamMachine", Title: "ssh host", Fields: []vault.Field{
		field("url", srv.URL()), field("login", "root"),
	}, Custom: []vault.Field{custom(sshconn.HostKeyField, srv.HostKey), key}})
	user := f.create(vault.Record{Type: "pamUser", Title: login, Fields: []vault.Field{
		field("login", login), field("password", sshInitial),
	}})
	f.settingsFor(user, rotation.Settings{Method: rotation.MethodGeneral, Connector: "ssh", ResourceUID: resource})
	return f, srv, login, user
}

// sshWorks reports whether password logs in as login over SSH.
func sshWorks(t *testing.T, srv *sshdtest.Server, login, password string) bool {
	t.Helper()
	acct := connector.Account{Login: login, Target: connector.Target{URL: srv.URL(), Fields: map[string]string{sshconn.HostKeyField: srv.HostKey}}}
	err := sshconn.New(0).Verify(context.Background(), acct, secret.FromString(password))
	if err != nil && !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("ssh login as %s: %v", login, err)
	}
	return err == nil
}

// The engine rotates a Linux account through the ssh connector: the vault's new current
// password logs in over SSH and the old one is refused.
func TestSSHConnectorThroughTheEngine(t *testing.T) {
	f, srv, login, user := sshFixture(t)
	for i := range 2 {
		run := f.rotateUID(user)
		if run.Status != rotation.StatusSucceeded {
			t.Fatalf("rotation %d: %s %+v", i, run.Status, run.Error)
		}
	}
	cur := f.currentOf(user)
	if cur == sshInitial || !sshWorks(t, srv, login, cur) {
		t.Fatal("the vault's current password does not log in over SSH")
	}
	if sshWorks(t, srv, login, sshInitial) {
		t.Fatal("the initial password still logs in")
	}
}

// A crash around the change on the target (the engine killed at each of these failpoints)
// resumes to a current password that logs in over SSH, with a live one in the vault meanwhile.
func TestSSHConnectorResumesAfterCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test starts processes")
	}
	f, srv, login, user := sshFixture(t)
	stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	f.engine.Stop(stop)
	cancel()
	for _, fp := range []string{"state:pending_saved", "effect:start", "effect:done", "state:target_changed", "state:verified"} {
		if !runChild(t, f, user, fp, true) {
			t.Fatalf("the child did not reach %s", fp)
		}
		vs, err := f.vault.Versions(context.Background(), f.scope, user)
		if err != nil {
			t.Fatal(err)
		}
		live := false
		for _, v := range vs {
			if (v.State == vault.StateCurrent || v.State == vault.StatePending) && sshWorks(t, srv, login, v.Value.Reveal()) {
				live = true
			}
		}
		if !live {
			t.Fatalf("killed at %s: no password that logs in is current or pending", fp)
		}
		if runChild(t, f, user, "", false) {
			t.Fatal("a child without a failpoint was killed")
		}
		run := f.latestRunOf(user)
		if run.Status != rotation.StatusSucceeded {
			t.Fatalf("killed at %s: the resumed run ended %s %+v", fp, run.Status, run.Error)
		}
		if !sshWorks(t, srv, login, f.currentOf(user)) {
			t.Fatalf("killed at %s: the current password does not log in over SSH", fp)
		}
	}
}
