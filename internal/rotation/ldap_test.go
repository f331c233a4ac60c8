package rotation_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/connector"
	ldapconn "github.com/keyturn/keyturn/internal/connector/ldap"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/slapdtest"
	"github.com/keyturn/keyturn/internal/vault"
)

// ldapAccount is a directory account on a real slapd and its pamUser, rotated by the ldap
// connector through a pamDirectory resource (ldap:// with StartTLS, the server's certificate
// pinned as the CA).
type ldapAccount struct {
	uid  string // the pamUser
	acct connector.Account
}

// ldapFixture starts slapd with a password admin and makes one account per change mode
// (admin, user), each with its pamUser set to the ldap connector.
func ldapFixture(t *testing.T, f *fixture) (admin, user ldapAccount) {
	t.Helper()
	srv := slapdtest.Start(t)
	const adminPW = "Crash-admin-Pw1!"
	adminDN := srv.AddAdmin(t, adminPW)
	resource := f.create(vault.Record{Type: "pamDirectory", Title: "OpenLDAP", Fields: []vault.Field{
		field("url", srv.URL()), field("login", adminDN), field("password", adminPW),
	}, Custom: []vault.Field{custom(ldapconn.FieldCACertificate, srv.CACert)}})
	mk := func(mode string) ldapAccount {
		_, dn := srv.AddUser(t, ldapInitial)
		user := f.create(vault.Record{Type: "pamUser", Title: dn, Fields: []vault.Field{
			field("login", dn), field("password", ldapInitial),
		}, Custom: []vault.Field{custom(ldapconn.FieldChangeMode, mode)}})
		f.settingsFor(user, rotation.Settings{Method: rotation.MethodGeneral, Connector: "ldap", ResourceUID: resource})
		return ldapAccount{uid: user, acct: connector.Account{Login: dn, Target: connector.Target{URL: srv.URL(),
			Fields: map[string]string{ldapconn.FieldCACertificate: srv.CACert}}}}
	}
	return mk(ldapconn.ModeAdmin), mk(ldapconn.ModeUser)
}

const ldapInitial = "Initial-ldap-Pw-5d2a"

// aroundTheChange are failpoints every general run reaches: just before the change is sent,
// just after it returned, and after it was recorded.
var aroundTheChange = []string{"effect:start", "effect:done", "state:target_changed"}

// binds reports whether password binds as the account.
func (a ldapAccount) binds(t *testing.T, password string) bool {
	t.Helper()
	err := ldapconn.New(0).Verify(context.Background(), a.acct, secret.FromString(password))
	if err != nil && !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("bind as %s: %v", a.acct.Login, err)
	}
	return err == nil
}

// The engine rotates directory accounts through the ldap connector, as the admin and as the
// account itself: the vault's new current password binds and the initial one is refused.
func TestLDAPConnectorThroughTheEngine(t *testing.T) {
	f := newFixture(t, fixtureOptions{connectors: map[string]connector.Connector{"ldap": ldapconn.New(0)}})
	admin, user := ldapFixture(t, f)
	for _, a := range []ldapAccount{admin, user} {
		for i := range 2 {
			run := f.rotateUID(a.uid)
			if run.Status != rotation.StatusSucceeded {
				t.Fatalf("%s, rotation %d: %s %+v", a.acct.Login, i, run.Status, run.Error)
			}
		}
		cur := f.currentOf(a.uid)
		if cur == ldapInitial || !a.binds(t, cur) {
			t.Fatalf("%s: the vault's current password does not bind", a.acct.Login)
		}
		if a.binds(t, ldapInitial) {
			t.Fatalf("%s: the initial password still binds", a.acct.Login)
		}
	}
}

// TestCrashLDAPKeepsALivePassword rotates real slapd accounts with the ldap connector (as the
// admin and as the account with its old password) in child engines killed at random
// failpoints: after every kill a password slapd accepts is current or pending in the vault,
// and the resumed run ends with the vault's current the one slapd accepts.
func TestCrashLDAPKeepsALivePassword(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test starts many processes")
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 11))
	t.Logf("seed %d", seed)
	f := newFixture(t, fixtureOptions{connectors: map[string]connector.Connector{"ldap": ldapconn.New(0)}})
	stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	f.engine.Stop(stop) // the fixture's own engine must not run the child's rotations
	cancel()
	admin, user := ldapFixture(t, f)

	kills := map[string]int{}
	for round := 0; round < 6; round++ {
		a, mode := admin, "admin"
		if round%2 == 1 {
			a, mode = user, "user"
		}
		rotate := true
		for attempt := 0; attempt < 3; attempt++ {
			fp := failpoints[rng.IntN(len(failpoints))]
			if attempt == 0 { // every round dies once around the change on the directory
				fp = aroundTheChange[rng.IntN(len(aroundTheChange))]
			}
			if !runChild(t, f, a.uid, fp, rotate) {
				break
			}
			kills[mode]++
			rotate = false
			vs, err := f.vault.Versions(context.Background(), f.scope, a.uid)
			if err != nil {
				t.Fatal(err)
			}
			live := false
			for _, v := range vs {
				if (v.State == vault.StateCurrent || v.State == vault.StatePending) && a.binds(t, v.Value.Reveal()) {
					live = true
				}
			}
			if !live {
				t.Fatalf("round %d (%s), killed at %s: no password slapd accepts is current or pending", round, mode, fp)
			}
		}
		if runChild(t, f, a.uid, "", false) {
			t.Fatal("a child without a failpoint was killed")
		}
		run := f.latestRunOf(a.uid)
		if run.Status != rotation.StatusSucceeded {
			t.Fatalf("round %d (%s): run after recovery %s: %+v", round, mode, run.Status, run.Error)
		}
		if !a.binds(t, f.currentOf(a.uid)) {
			t.Fatalf("round %d (%s): run %s ended %s; slapd refuses the vault's current password", round, mode, run.ID, run.Status)
		}
	}
	for _, a := range []ldapAccount{admin, user} {
		if f.currentOf(a.uid) == ldapInitial {
			t.Fatalf("%s: no rotation changed the password", a.acct.Login)
		}
	}
	if kills["admin"] == 0 || kills["user"] == 0 {
		t.Fatalf("kills by mode %v: a mode was never killed", kills)
	}
	t.Logf("kills by mode %v", kills)
}
