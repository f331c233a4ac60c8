package rotation_test

import (
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/vault"
)

func TestGeneralRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{})
	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	run := f.rotate()
	if run.Status != rotation.StatusSucceeded || run.State != string(rotation.StateSucceeded) {
		t.Fatalf("run %+v", run)
	}
	now := f.current()
	if now == "initial-Pw1!" || f.target.password("alice") != now {
		t.Fatalf("vault %q, target %q", now, f.target.password("alice"))
	}
	if f.stateOf("initial-Pw1!") != vault.StatePrevious || f.stateOf(now) != vault.StateCurrent {
		t.Fatalf("versions %+v", f.versions())
	}
	if len(now) != 20 {
		t.Fatalf("default complexity gives length 20, got %d", len(now))
	}
}

func TestScriptsOnlyRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{})
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, VerifyWith: "rest"})
	f.attach(f.user, "change.py", changeScript)
	run := f.rotate()
	if run.Status != rotation.StatusSucceeded {
		t.Fatalf("run %+v", run)
	}
	if f.target.password("alice") != f.current() || f.current() == "initial-Pw1!" {
		t.Fatalf("vault %q, target %q", f.current(), f.target.password("alice"))
	}
	if len(run.ExecLog) != 1 || run.ExecLog[0].ReturnCode != 0 || !strings.Contains(run.ExecLog[0].Stdout, "changed password of alice") {
		t.Fatalf("exec log %+v", run.ExecLog)
	}
}

func TestLyingScriptIsCaughtByVerification(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{})
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, VerifyWith: "rest"})
	f.attach(f.user, "liar.sh", liarScript)
	run := f.rotate()
	if run.Status == rotation.StatusSucceeded || run.Error == nil || run.Error.Code != "verification_failed" {
		t.Fatalf("run %+v", run)
	}
	if f.current() != "initial-Pw1!" || f.target.password("alice") != "initial-Pw1!" {
		t.Fatalf("vault %q, target %q", f.current(), f.target.password("alice"))
	}
}

func TestIssuedKeyRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{})
	f.settingsFor(f.robot, rotation.Settings{Method: rotation.MethodGeneral, Connector: "opa"})
	run := f.rotateUID(f.robot)
	if run.Status != rotation.StatusSucceeded {
		t.Fatalf("run %+v", run)
	}
	secretValue, keyID := f.robotKey()
	if secretValue == "initial-key-secret" || keyID == "key-0" || keyID == "" {
		t.Fatalf("the record holds %q / %q", secretValue, keyID)
	}
	if !f.target.keyWorks("robot", keyID, secretValue) || f.target.keyCount("robot") != 1 {
		t.Fatalf("the target does not hold exactly the new key (%d keys)", f.target.keyCount("robot"))
	}
	if f.target.keyWorks("robot", "key-0", "initial-key-secret") {
		t.Fatal("the old key was not retired")
	}
}
