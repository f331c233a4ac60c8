package rotation_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	ldapconn "github.com/keyturn/keyturn/internal/connector/ldap"
	"github.com/keyturn/keyturn/internal/connector/mysql"
	"github.com/keyturn/keyturn/internal/connector/postgresql"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/mariadbtest"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
	"github.com/keyturn/keyturn/internal/testenv/slapdtest"
	"github.com/keyturn/keyturn/internal/vault"
)

// selfTarget is a real server with an admin whose resource allows self-rotation, and two
// pamUsers rotated through that resource: the admin's own account and another one.
type selfTarget struct {
	resource, admin, other string // record uids
	adminLogin, otherLogin string
	adminInitial           string
	logsIn                 func(login, password string) bool
	connector              string
	selfField              string
}

// newSelfPG makes a superuser admin role and another role on the test's PostgreSQL server
// (which asks for passwords), a pamDatabase with "PostgreSQL Self Rotation" = true, and the
// two pamUsers.
func newSelfPG(t *testing.T, f *fixture) *selfTarget {
	t.Helper()
	superURL := pgtest.RequirePasswords(t)
	u, err := url.Parse(superURL)
	if err != nil {
		t.Fatal(err)
	}
	n := fmt.Sprintf("%d_%d", os.Getpid(), time.Now().UnixNano())
	st := &selfTarget{adminLogin: "self_admin_" + n, otherLogin: "self_app_" + n, adminInitial: "self-admin-Pw1!",
		connector: "postgresql", selfField: postgresql.FieldSelfRotation}
	const otherInitial = "self-app-Pw1!"
	db, err := sql.Open("pgx", superURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"CREATE ROLE " + st.adminLogin + " WITH LOGIN SUPERUSER PASSWORD '" + st.adminInitial + "'",
		"CREATE ROLE " + st.otherLogin + " WITH LOGIN PASSWORD '" + otherInitial + "'"} {
		if _, err := db.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	target := "postgres://" + u.Host + "/postgres?sslmode=disable"
	st.logsIn = func(login, pw string) bool {
		acct := connector.Account{Login: login, Target: connector.Target{URL: target, Fields: map[string]string{}}}
		return postgresql.New().Verify(context.Background(), acct, secret.FromString(pw)) == nil
	}
	st.records(t, f, vault.Record{Type: "pamDatabase", Title: "PostgreSQL", Fields: []vault.Field{
		field("url", target), field("login", st.adminLogin), field("password", st.adminInitial),
	}, Custom: []vault.Field{custom(postgresql.FieldSelfRotation, "true")}}, st.adminLogin, st.otherLogin, otherInitial)
	return st
}

// newSelfMariaDB makes an admin with CREATE USER and another account on the test's MariaDB, a
// pamDatabase with "MySQL Self Rotation" = true, and the two pamUsers.
func newSelfMariaDB(t *testing.T, f *fixture) *selfTarget {
	t.Helper()
	srv := mariadbtest.Start(t)
	root := srv.Root(t)
	n := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	st := &selfTarget{adminLogin: "kt_sadm_" + n, otherLogin: "kt_sapp_" + n, adminInitial: "self-admin-Pw1",
		connector: "mysql", selfField: mysql.SelfRotationField}
	const otherInitial = "self-app-Pw1"
	for _, q := range []string{
		"CREATE USER '" + st.adminLogin + "'@'%' IDENTIFIED BY '" + st.adminInitial + "'",
		"GRANT CREATE USER ON *.* TO '" + st.adminLogin + "'@'%'",
		"CREATE USER '" + st.otherLogin + "'@'%' IDENTIFIED BY '" + otherInitial + "'",
	} {
		if _, err := root.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	target := "mysql://" + srv.Addr() + "?tls=false"
	st.logsIn = func(login, pw string) bool {
		acct := connector.Account{Login: login, Target: connector.Target{URL: target}}
		return mysql.New(0).Verify(context.Background(), acct, secret.FromString(pw)) == nil
	}
	st.records(t, f, vault.Record{Type: "pamDatabase", Title: "MariaDB", Fields: []vault.Field{
		field("url", target), field("login", st.adminLogin), field("password", st.adminInitial),
	}, Custom: []vault.Field{custom(mysql.SelfRotationField, "true")}}, st.adminLogin, st.otherLogin, otherInitial)
	return st
}

// newSelfLDAP makes a password admin and an account on a real slapd, a pamDirectory with
// "LDAP Self Rotation" = true, and the two pamUsers (the admin's login its DN, in capitals:
// the directory compares DNs case-insensitively).
func newSelfLDAP(t *testing.T, f *fixture) *selfTarget {
	t.Helper()
	srv := slapdtest.Start(t)
	st := &selfTarget{adminInitial: "Self-admin-Pw1!", connector: "ldap", selfField: ldapconn.FieldSelfRotation}
	st.adminLogin = srv.AddAdmin(t, st.adminInitial)
	_, st.otherLogin = srv.AddUser(t, ldapInitial)
	st.logsIn = func(login, pw string) bool {
		acct := connector.Account{Login: login, Target: connector.Target{URL: srv.URL(),
			Fields: map[string]string{ldapconn.FieldCACertificate: srv.CACert}}}
		return ldapconn.New(0).Verify(context.Background(), acct, secret.FromString(pw)) == nil
	}
	st.records(t, f, vault.Record{Type: "pamDirectory", Title: "OpenLDAP", Fields: []vault.Field{
		field("url", srv.URL()), field("login", st.adminLogin), field("password", st.adminInitial),
	}, Custom: []vault.Field{custom(ldapconn.FieldCACertificate, srv.CACert), custom(ldapconn.FieldSelfRotation, "true")}},
		strings.ToUpper(st.adminLogin), st.otherLogin, ldapInitial)
	return st
}

// records creates the resource and both pamUsers, each set to rotate through the resource.
func (st *selfTarget) records(t *testing.T, f *fixture, resource vault.Record, adminUserLogin, otherLogin, otherInitial string) {
	t.Helper()
	st.resource = f.create(resource)
	st.admin = f.create(vault.Record{Type: "pamUser", Title: "admin", Fields: []vault.Field{
		field("login", adminUserLogin), field("password", st.adminInitial)}})
	st.other = f.create(vault.Record{Type: "pamUser", Title: "app", Fields: []vault.Field{
		field("login", otherLogin), field("password", otherInitial)}})
	for _, uid := range []string{st.admin, st.other} {
		f.settingsFor(uid, rotation.Settings{Method: rotation.MethodGeneral, Connector: st.connector, ResourceUID: st.resource})
	}
	if !st.logsIn(st.adminLogin, st.adminInitial) || !st.logsIn(otherLogin, otherInitial) {
		t.Fatal("the initial passwords do not log in")
	}
}

// resourcePassword is the password the resource record holds.
func (st *selfTarget) resourcePassword(f *fixture) string {
	f.t.Helper()
	return f.currentOf(st.resource)
}

// auditOf returns the team's audit events of a type about a record.
func auditOf(f *fixture, typ, recordUID string) []auditEntry {
	f.t.Helper()
	events, err := f.dv.DB.AuditEvents(context.Background(), f.scope.TeamID, 0, 100000)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []auditEntry
	for _, e := range events {
		if e.Type == typ && e.RecordUID == recordUID {
			out = append(out, auditEntry{details: string(e.Details)})
		}
	}
	return out
}

type auditEntry struct{ details string }

// assertAdminInStep checks that the admin's pamUser and the resource both hold the admin's
// working password, which is no longer the initial one.
func (st *selfTarget) assertAdminInStep(f *fixture, when string) {
	f.t.Helper()
	cur, res := f.currentOf(st.admin), st.resourcePassword(f)
	if cur == st.adminInitial {
		f.t.Fatalf("%s: the admin's password was not rotated", when)
	}
	if !st.logsIn(st.adminLogin, cur) {
		f.t.Fatalf("%s: the admin pamUser's current password does not log in", when)
	}
	if res != cur || !st.logsIn(st.adminLogin, res) {
		f.t.Fatalf("%s: the resource record holds a password other than the admin's working one (same as the pamUser's: %v; logs in: %v)",
			when, res == cur, st.logsIn(st.adminLogin, res))
	}
}

// TestSelfRotationUpdatesTheResource rotates a resource's admin account through its own
// resource (self-rotation allowed) on real PostgreSQL, MariaDB and slapd servers: the resource
// record then holds the admin's new password, which logs in, with the old one kept as a
// previous version and an audit event without the password; and a rotation of another account
// through the same resource, which logs in as the admin, succeeds. On the code before, the
// resource kept the old admin password and that second rotation failed with the admin refused.
func TestSelfRotationUpdatesTheResource(t *testing.T) {
	for name, mk := range map[string]func(*testing.T, *fixture) *selfTarget{
		"postgresql": newSelfPG, "mysql": newSelfMariaDB, "ldap": newSelfLDAP,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{connectors: map[string]connector.Connector{
				"postgresql": postgresql.New(), "mysql": mysql.New(0), "ldap": ldapconn.New(0)}})
			st := mk(t, f)
			for i := range 2 { // twice: the second self-rotation logs in with what the first set
				if run := f.rotateUID(st.admin); run.Status != rotation.StatusSucceeded {
					t.Fatalf("self-rotation %d: %s %+v", i, run.Status, run.Error)
				}
				if run := f.rotateUID(st.other); run.Status != rotation.StatusSucceeded {
					t.Fatalf("rotating another account after self-rotation %d: %s %+v", i, run.Status, run.Error)
				}
				st.assertAdminInStep(f, fmt.Sprintf("after self-rotation %d", i))
				if cur := f.currentOf(st.other); !st.logsIn(st.otherLogin, cur) {
					t.Fatalf("after self-rotation %d: the other account's current password does not log in", i)
				}
			}
			if st.logsIn(st.adminLogin, st.adminInitial) {
				t.Fatal("the admin's initial password still logs in")
			}
			vs, err := f.vault.Versions(context.Background(), f.scope, st.resource)
			if err != nil {
				t.Fatal(err)
			}
			states := map[string]string{}
			for _, v := range vs {
				states[v.Value.Reveal()] = v.State
			}
			if states[st.adminInitial] != vault.StatePrevious || states[st.resourcePassword(f)] != vault.StateCurrent {
				t.Fatalf("the resource's password versions: the initial one %q, the new one %q; want previous, current",
					states[st.adminInitial], states[st.resourcePassword(f)])
			}
			events := auditOf(f, audit.RotationResourceUpdated, st.resource)
			if len(events) != 2 {
				t.Fatalf("%d %s events for the resource, want 2", len(events), audit.RotationResourceUpdated)
			}
			for _, e := range events {
				if strings.Contains(e.details, st.adminInitial) || strings.Contains(e.details, st.resourcePassword(f)) || !strings.Contains(e.details, st.admin) {
					t.Fatalf("the audit event's details hold a password or miss the account: %s", e.details)
				}
			}
			if n := len(auditOf(f, audit.RotationResourceUpdated, st.other)) + len(auditOf(f, audit.RotationResourceKept, st.resource)); n != 0 {
				t.Fatalf("%d unexpected resource events", n)
			}
		})
	}
}

// TestSelfRotationKeepsAResourcePasswordSetMeanwhile edits the resource's password by hand
// while a self-rotation runs (after the change, before the commit): the rotation still makes
// the admin's new password the pamUser's current, but leaves the hand-set password on the
// resource, and records that it did (an audit event), instead of silently replacing it.
func TestSelfRotationKeepsAResourcePasswordSetMeanwhile(t *testing.T) {
	const handSet = "hand-set-Pw9!"
	var (
		mu   sync.Mutex
		edit func()
	)
	f := newFixture(t, fixtureOptions{
		connectors: map[string]connector.Connector{"postgresql": postgresql.New()},
		engine: rotation.Options{Failpoint: func(name string) {
			mu.Lock()
			defer mu.Unlock()
			if name == "effect:done" && edit != nil {
				edit()
				edit = nil
			}
		}},
	})
	st := newSelfPG(t, f)
	mu.Lock()
	edit = func() {
		rec, err := f.vault.Get(context.Background(), f.scope, st.resource)
		if err != nil {
			t.Error(err)
			return
		}
		for i := range rec.Fields {
			if rec.Fields[i].Type == "password" {
				rec.Fields[i] = field("password", handSet)
			}
		}
		if _, err := f.vault.Update(context.Background(), vault.Scope{TeamID: f.scope.TeamID, Actor: "someone"}, rec); err != nil {
			t.Error(err)
		}
	}
	mu.Unlock()
	if run := f.rotateUID(st.admin); run.Status != rotation.StatusSucceeded {
		t.Fatalf("self-rotation: %s %+v", run.Status, run.Error)
	}
	if cur := f.currentOf(st.admin); cur == st.adminInitial || !st.logsIn(st.adminLogin, cur) {
		t.Fatal("the admin pamUser's current password is not the working new one")
	}
	if got := st.resourcePassword(f); got != handSet {
		t.Fatalf("the resource's password was replaced (is the hand-set one: %v, the initial: %v)", got == handSet, got == st.adminInitial)
	}
	if n := len(auditOf(f, audit.RotationResourceKept, st.resource)); n != 1 {
		t.Fatalf("%d %s events, want 1", n, audit.RotationResourceKept)
	}
	if n := len(auditOf(f, audit.RotationResourceUpdated, st.resource)); n != 0 {
		t.Fatalf("%d %s events, want none", n, audit.RotationResourceUpdated)
	}
}

// TestSelfRotationRollbackRestoresTheResource fails a post-rotation script of a PostgreSQL
// self-rotation with "Rollback On Post Rotation Fail" on: the rollback logs in as the admin
// with the new password (the resource's, once committed), sets the old one back, and the
// pamUser and the resource both hold the old password again, which logs in.
func TestSelfRotationRollbackRestoresTheResource(t *testing.T) {
	f := newFixture(t, fixtureOptions{connectors: map[string]connector.Connector{"postgresql": postgresql.New()}})
	st := newSelfPG(t, f)
	rec, err := f.vault.Get(context.Background(), f.scope, st.admin)
	if err != nil {
		t.Fatal(err)
	}
	rec.Custom = append(rec.Custom, custom("Rollback On Post Rotation Fail", "true"))
	if _, err := f.vault.Update(context.Background(), f.scope, rec); err != nil {
		t.Fatal(err)
	}
	f.attach(st.admin, "fail.sh", "#!/bin/sh\necho failing >&2\nexit 3\n")
	run := f.rotateUID(st.admin)
	if run.Status != rotation.StatusFailed || run.Error == nil || !strings.Contains(run.Error.Message, "rolled back to the old password") {
		t.Fatalf("run %s %+v, want failed and rolled back", run.Status, run.Error)
	}
	if cur, res := f.currentOf(st.admin), st.resourcePassword(f); cur != st.adminInitial || res != st.adminInitial {
		t.Fatalf("after the rollback the pamUser holds the initial password: %v, the resource: %v", cur == st.adminInitial, res == st.adminInitial)
	}
	if !st.logsIn(st.adminLogin, st.adminInitial) {
		t.Fatal("the admin's initial password does not log in after the rollback")
	}
	if run := f.rotateUID(st.other); run.Status != rotation.StatusSucceeded {
		t.Fatalf("rotating another account after the rollback: %s %+v", run.Status, run.Error)
	}
}

// TestCrashSelfRotationResumesBothRecords kills child engines during PostgreSQL and LDAP
// self-rotations at each failpoint from the change on: after every kill a password the server
// accepts for the admin is current or pending in the vault, and the resumed run ends with the
// pamUser and the resource both holding the admin's working password, so that another account
// then rotates through the resource.
func TestCrashSelfRotationResumesBothRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test starts many processes")
	}
	for name, mk := range map[string]func(*testing.T, *fixture) *selfTarget{"postgresql": newSelfPG, "ldap": newSelfLDAP} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{connectors: map[string]connector.Connector{
				"postgresql": postgresql.New(), "ldap": ldapconn.New(0)}})
			stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			f.engine.Stop(stop) // the fixture's own engine must not run the child's rotations
			cancel()
			st := mk(t, f)
			for _, fp := range []string{"effect:done", "state:target_changed", "state:verified", "state:succeeded"} {
				if !runChild(t, f, st.admin, fp, true) {
					t.Fatalf("the child did not reach %s", fp)
				}
				live := false
				vs, err := f.vault.Versions(context.Background(), f.scope, st.admin)
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range vs {
					if (v.State == vault.StateCurrent || v.State == vault.StatePending) && st.logsIn(st.adminLogin, v.Value.Reveal()) {
						live = true
					}
				}
				if !live {
					t.Fatalf("killed at %s: no password the server accepts for the admin is current or pending", fp)
				}
				if runChild(t, f, st.admin, "", false) {
					t.Fatal("a child without a failpoint was killed")
				}
				if run := f.latestRunOf(st.admin); run.Status != rotation.StatusSucceeded {
					t.Fatalf("killed at %s: the resumed run %s %+v", fp, run.Status, run.Error)
				}
				st.assertAdminInStep(f, "killed at "+fp+" and resumed")
			}
			if runChild(t, f, st.other, "", true) {
				t.Fatal("a child without a failpoint was killed")
			}
			if run := f.latestRunOf(st.other); run.Status != rotation.StatusSucceeded {
				t.Fatalf("rotating another account after the self-rotations: %s %+v", run.Status, run.Error)
			}
			if !st.logsIn(st.otherLogin, f.currentOf(st.other)) {
				t.Fatal("the other account's current password does not log in")
			}
			var details []string
			for _, e := range auditOf(f, audit.RotationResourceUpdated, st.resource) {
				details = append(details, e.details)
			}
			if len(details) != 4 {
				t.Fatalf("%d %s events for 4 self-rotations: %v", len(details), audit.RotationResourceUpdated, details)
			}
		})
	}
}
