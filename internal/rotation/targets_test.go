package rotation

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/keyturn/keyturn/internal/vault"
)

// One target's operations are spaced by its rate once its burst is spent, and another
// target's are not held back by them.
func TestTargetsSpaceOperationsPerTarget(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		tg := newTargets(2, 1, realClock{}) // 2 a second, 1 at once
		ctx := context.Background()
		start := time.Now()
		for range 5 {
			if _, err := tg.wait(ctx, "rest https://a.example.com"); err != nil {
				t.Fatal(err)
			}
		}
		if took := time.Since(start); took != 2*time.Second {
			t.Fatalf("5 operations at 2/s with a burst of 1 took %v, want 2s", took)
		}
		before := time.Now()
		if waited, err := tg.wait(ctx, "rest https://b.example.com"); err != nil || waited != 0 {
			t.Fatalf("another target: waited %v, %v", waited, err)
		}
		if waited := time.Since(before); waited != 0 {
			t.Fatalf("another target waited %v", waited)
		}
		if waited, err := tg.wait(ctx, "rest https://a.example.com"); err != nil || waited != 500*time.Millisecond {
			t.Fatalf("the next operation on the first target: waited %v, %v; want 500ms", waited, err)
		}
		// A caller that stops waiting gets its context's error, and no operation.
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := tg.wait(cctx, "rest https://a.example.com"); err == nil {
			t.Fatal("a wait longer than the context allowed returned nil")
		}
		// Its token went back: the caller after it waits no longer than if it had never come.
		after := time.Now()
		if _, err := tg.wait(ctx, "rest https://a.example.com"); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(after); took != 400*time.Millisecond { // 500 ms after the last, of which 100 passed
			t.Fatalf("after a cancelled wait the next took %v, want 400ms", took)
		}
	})
}

func TestTargetsUnlimited(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		tg := newTargets(-1, 0, realClock{})
		start := time.Now()
		for range 1000 {
			if _, err := tg.wait(context.Background(), "rest https://a.example.com"); err != nil {
				t.Fatal(err)
			}
		}
		if took := time.Since(start); took != 0 {
			t.Fatalf("an unlimited target waited %v", took)
		}
		if len(tg.by) != 0 {
			t.Fatalf("an unlimited engine kept %d limiters", len(tg.by))
		}
	})
}

func TestTargetKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		conn, url, hostPort, resource, want string
	}{
		{"okta", "https://Acme.okta.com/", "", "r1", "okta https://acme.okta.com"},
		{"okta", "https://acme.okta.com/api/v1", "", "r2", "okta https://acme.okta.com"}, // one org, whichever record
		{"rest", "https://acme.okta.com", "", "r1", "rest https://acme.okta.com"},        // another connector's own budget
		{"rest", "http://10.0.0.5:8080/change", "", "r1", "rest http://10.0.0.5:8080"},
		{"rest", "", "", "r3", "rest record:r3"},
		{"rest", "not a url", "", "r4", "rest record:r4"},
		{"postgresql", "postgres://DB.example:5432/app?sslmode=require", "", "r5", "postgresql postgres://db.example:5432"},
		{"postgresql", "", "db.example:5433", "r6", "postgresql db.example:5433"}, // one server, whichever database
		{"postgresql", "", "db.example:5433", "r7", "postgresql db.example:5433"},
		{"mysql", "mysql://DB.example?tls=false", "", "r5", "mysql mysql://db.example:3306"}, // the default port
		{"mysql", "mysql://db.example:3306", "", "r6", "mysql mysql://db.example:3306"},      // the same server
		{"mysql", "mysql://db.example:3307", "", "r6", "mysql mysql://db.example:3307"},      // another server
		{"ldap", "ldap://DIR.example", "", "r8", "ldap ldap://dir.example:389"},              // the default port
		{"ldap", "ldap://dir.example:389", "", "r9", "ldap ldap://dir.example:389"},          // the same server
		{"ldap", "ldaps://dir.example", "", "r9", "ldap ldaps://dir.example:636"},
	} {
		if got := targetKey(tc.conn, tc.url, tc.hostPort, tc.resource); got != tc.want {
			t.Errorf("targetKey(%q, %q, %q, %q) = %q, want %q", tc.conn, tc.url, tc.hostPort, tc.resource, got, tc.want)
		}
	}
}

// A run is admitted with a typical run's tokens taken; runs that find none wait on the
// target's list and are handed back in their order, each once its tokens are there.
func TestTargetsAdmitInTurn(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		tg := newTargets(2, 2, realClock{}) // 2 a second; a run takes 2 tokens
		var mu sync.Mutex
		var released []string
		release := func(run string) {
			mu.Lock()
			defer mu.Unlock()
			released = append(released, run)
		}
		got := func() []string {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(released)
		}
		const a = "rest https://a.example.com"
		if ok, paid := tg.admit(a, "r1", false, release); !ok || paid != 2 {
			t.Fatalf("the first run: %v %d", ok, paid)
		}
		for _, run := range []string{"r2", "r3"} {
			if ok, _ := tg.admit(a, run, false, release); ok {
				t.Fatalf("%s was admitted with the tokens spent", run)
			}
		}
		if ok, paid := tg.admit("rest https://b.example.com", "x1", false, release); !ok || paid != 2 {
			t.Fatal("another target's run was held back")
		}
		if r := got(); len(r) != 0 {
			t.Fatalf("handed back at once: %v", r)
		}
		time.Sleep(time.Second) // 2 tokens
		if r := got(); !slices.Equal(r, []string{"r2"}) {
			t.Fatalf("after 1 s: %v, want r2", r)
		}
		// A new run does not jump the list; the one handed back passes without a second look.
		if ok, _ := tg.admit(a, "r4", false, release); ok {
			t.Fatal("r4 jumped the waiting list")
		}
		if ok, paid := tg.admit(a, "r2", false, release); !ok || paid != 2 {
			t.Fatalf("r2 handed back was refused: %v %d", ok, paid)
		}
		// A run asked for by hand goes ahead of the scheduled ones, behind earlier urgent ones.
		for _, run := range []string{"u1", "u2"} {
			if ok, _ := tg.admit(a, run, true, release); ok {
				t.Fatalf("%s was admitted with the tokens spent", run)
			}
		}
		time.Sleep(4 * time.Second)
		if r := got(); !slices.Equal(r, []string{"r2", "u1", "u2", "r3", "r4"}) {
			t.Fatalf("after 5 s: %v", r)
		}
		// The hand-backs took their tokens: nothing is left for an operation now.
		if tg.allow(a) {
			t.Fatal("a token was left over after the hand-backs")
		}
	})
}

// The rate limits keep the time of the clock they are given, not the system's: a wait ends,
// and a waiting run is handed back, when that clock has moved on, however long real time
// passes meanwhile.
func TestTargetsFollowTheirClock(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		clock := NewManualClock()
		tg := newTargets(2, 1, clock) // 2 a second, 1 at once
		ctx := context.Background()
		const a = "rest https://a.example.com"
		if waited, err := tg.wait(ctx, a); err != nil || waited != 0 {
			t.Fatalf("the burst's operation: waited %v, %v", waited, err)
		}
		done := make(chan time.Duration, 1)
		go func() {
			waited, _ := tg.wait(ctx, a)
			done <- waited
		}()
		ended := func() bool {
			synctest.Wait()
			return len(done) > 0
		}
		time.Sleep(time.Hour) // the system's time
		if ended() {
			t.Fatal("a wait ended while the rate limit's clock stood still")
		}
		clock.Advance(499 * time.Millisecond)
		if ended() {
			t.Fatal("a wait ended 1 ms before its token")
		}
		clock.Advance(time.Millisecond)
		if waited := <-done; waited != 500*time.Millisecond {
			t.Fatalf("waited %v, want 500ms", waited)
		}

		released := make(chan string, 1)
		if ok, _ := tg.admit(a, "r1", false, func(run string) { released <- run }); ok {
			t.Fatal("r1 was admitted with the tokens spent")
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if len(released) > 0 {
			t.Fatal("a run was handed back while the rate limit's clock stood still")
		}
		clock.Advance(500 * time.Millisecond)
		if run := <-released; run != "r1" {
			t.Fatalf("handed back %q, want r1", run)
		}
		if ok, paid := tg.admit(a, "r1", false, nil); !ok || paid != 1 {
			t.Fatalf("r1 handed back: %v %d", ok, paid)
		}
	})
}

// A pamDatabase's pamHostname ({"hostName", "port"}) reaches the connector as host:port, and
// so keys the server's rate limit.
func TestAccountOfPamHostname(t *testing.T) {
	t.Parallel()
	str := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	resource := vault.Record{Type: "pamDatabase", Fields: []vault.Field{
		{Type: "pamHostname", Value: []json.RawMessage{json.RawMessage(`{"hostName":"db.example","port":"5433"}`)}},
		{Type: "login", Value: []json.RawMessage{str("admin")}},
	}, Custom: []vault.Field{{Type: "text", Label: "Database", Value: []json.RawMessage{str("crm")}}}}
	user := vault.Record{Type: "pamUser", Fields: []vault.Field{{Type: "login", Value: []json.RawMessage{str("app")}}}}
	a := accountOf(user, &resource)
	if got := a.Target.Fields["pamHostname"]; got != "db.example:5433" {
		t.Fatalf("pamHostname = %q, want db.example:5433", got)
	}
	if a.Target.Fields["Database"] != "crm" || a.Target.AdminLogin != "admin" || a.Login != "app" {
		t.Fatalf("account %+v", a)
	}
	if got := targetKey("postgresql", a.Target.URL, a.Target.Fields["pamHostname"], "r1"); got != "postgresql db.example:5433" {
		t.Fatalf("target key %q", got)
	}
}

// A pamUser cannot override what only its resource may say: the pinned host key, TLS, the
// server, or the admin's self-rotation; its own fields (an account host) it may set.
func TestAccountOfKeepsTheResourcesTrust(t *testing.T) {
	t.Parallel()
	str := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	text := func(label, v string) vault.Field {
		return vault.Field{Type: "text", Label: label, Value: []json.RawMessage{str(v)}}
	}
	resource := vault.Record{Type: "pamMachine", Fields: []vault.Field{{Type: "login", Value: []json.RawMessage{str("root")}}},
		Custom: []vault.Field{text("SSH Host Key", "ssh-ed25519 AAAApinned"), text("SSL Mode", "verify-full"), text("Database", "crm"),
			text("LDAP StartTLS", "true"), text("LDAP CA Certificate", "PEM pinned"), text("LDAP Directory Type", "active_directory")}}
	user := vault.Record{Type: "pamUser", Fields: []vault.Field{{Type: "login", Value: []json.RawMessage{str("root")}}},
		Custom: []vault.Field{text("SSH Host Key", "ssh-ed25519 AAAAattacker"), text("SSH Self Rotation", "true"),
			text("PostgreSQL Self Rotation", "true"), text("MySQL Self Rotation", "true"), text("SSL Mode", "disable"),
			text("Database", "other"), text("MySQL Account Host", "10.0.0.%"),
			text("LDAP StartTLS", "false"), text("LDAP CA Certificate", "PEM attacker"), text("LDAP Directory Type", "openldap"),
			text("LDAP Self Rotation", "true"), text("LDAP Change Mode", "user")}}
	f := accountOf(user, &resource).Target.Fields
	if f["SSH Host Key"] != "ssh-ed25519 AAAApinned" || f["SSL Mode"] != "verify-full" || f["Database"] != "crm" ||
		f["LDAP StartTLS"] != "true" || f["LDAP CA Certificate"] != "PEM pinned" || f["LDAP Directory Type"] != "active_directory" {
		t.Errorf("the pamUser overrode its resource: %v", f)
	}
	for _, k := range []string{"SSH Self Rotation", "PostgreSQL Self Rotation", "MySQL Self Rotation", "LDAP Self Rotation"} {
		if _, ok := f[k]; ok {
			t.Errorf("the pamUser turned on %s", k)
		}
	}
	if f["MySQL Account Host"] != "10.0.0.%" || f["LDAP Change Mode"] != "user" {
		t.Errorf("the pamUser's own account host is lost: %v", f)
	}
}
