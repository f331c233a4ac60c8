package rotation_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/connector/mysql"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/mariadbtest"
	"github.com/keyturn/keyturn/internal/vault"
)

// TestCrashMySQLKeepsALivePassword rotates a real MariaDB account with the mysql connector in
// child engines killed at random failpoints: after every kill a password MariaDB accepts is
// current or pending in the vault, and the resumed run ends with the vault's current the one
// MariaDB accepts.
func TestCrashMySQLKeepsALivePassword(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test starts many processes")
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d", seed)
	srv := mariadbtest.Start(t)
	root := srv.Root(t)
	ctx := context.Background()
	// Names of their own, so that the test can run again (-count) on the binary's one server.
	n := rng.Uint32()
	admin, login := fmt.Sprintf("kt_crash_admin_%08x", n), fmt.Sprintf("kt_crash_user_%08x", n)
	const initial = "initial-Pw1!"
	for _, q := range []string{
		"CREATE USER '" + admin + "'@'%' IDENTIFIED BY 'crash-admin-Pw1'",
		"GRANT CREATE USER ON *.* TO '" + admin + "'@'%'",
		"CREATE USER '" + login + "'@'%' IDENTIFIED BY '" + initial + "'",
	} {
		if _, err := root.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	f := newFixture(t, fixtureOptions{connectors: map[string]connector.Connector{"mysql": mysql.New(0)}})
	stop, cancel := context.WithTimeout(ctx, 5*time.Second)
	f.engine.Stop(stop) // the fixture's own engine must not run the child's rotations
	cancel()
	res := f.create(vault.Record{Type: "pamDatabase", Title: "MariaDB", Fields: []vault.Field{
		field("url", "mysql://"+srv.Addr()+"?tls=false"), field("login", admin), field("password", "crash-admin-Pw1"),
	}})
	user := f.create(vault.Record{Type: "pamUser", Title: login, Fields: []vault.Field{field("login", login), field("password", initial)}})
	f.settingsFor(user, rotation.Settings{Method: rotation.MethodGeneral, Connector: "mysql", ResourceUID: res})
	acct := connector.Account{Login: login, Target: connector.Target{URL: "mysql://" + srv.Addr() + "?tls=false"}}
	accepted := func(pw string) bool { return mysql.New(0).Verify(ctx, acct, secret.FromString(pw)) == nil }

	kills := 0
	for round := 0; round < 4; round++ {
		rotate := true
		for attempt := 0; attempt < 3; attempt++ {
			fp := failpoints[rng.IntN(len(failpoints))]
			if !runChild(t, f, user, fp, rotate) {
				break
			}
			kills++
			rotate = false
			vs, err := f.vault.Versions(ctx, f.scope, user)
			if err != nil {
				t.Fatal(err)
			}
			live := false
			for _, v := range vs {
				if (v.State == vault.StateCurrent || v.State == vault.StatePending) && accepted(v.Value.Reveal()) {
					live = true
				}
			}
			if !live {
				t.Fatalf("round %d, killed at %s: no password MariaDB accepts is current or pending", round, fp)
			}
		}
		if runChild(t, f, user, "", false) {
			t.Fatal("a child without a failpoint was killed")
		}
		run := f.latestRunOf(user)
		if run.Status != rotation.StatusSucceeded {
			t.Fatalf("round %d: run after recovery %s: %+v", round, run.Status, run.Error)
		}
		if cur := f.currentOf(user); !accepted(cur) {
			t.Fatalf("round %d: run %s ended %s; MariaDB refuses the vault's current password", round, run.ID, run.Status)
		}
	}
	if f.currentOf(user) == initial {
		t.Fatal("no rotation changed the password")
	}
	t.Logf("%d kills", kills)
}
