package rotation_test

import (
	"context"
	"errors"
	"testing"

	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/vault"
)

// TestSentinelErrors checks that the errors callers branch on are sentinels found with
// errors.Is, and that they still carry the API's kind and code (409 not_configured, 409
// stale_revision).
func TestSentinelErrors(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fixtureOptions{})

	_, _, err := f.engine.Rotate(ctx, f.scope, f.user, rotation.TriggerOnDemand)
	if fe, ok := fault.As(err); !errors.Is(err, rotation.ErrNotConfigured) || !ok || fe.Kind != fault.Conflict || fe.Code != "not_configured" {
		t.Errorf("rotating a record without settings: %v, want rotation.ErrNotConfigured (409 not_configured)", err)
	}
	if _, err := f.engine.Info(ctx, f.scope, f.user); fault.KindOf(err) != fault.NotFound || errors.Is(err, rotation.ErrNotConfigured) {
		t.Errorf("the rotation info of a record without settings: %v, want a 404", err)
	}

	f.settings(rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest"})
	_, err = f.engine.SetSettings(ctx, f.scope, f.user, rotation.Settings{Method: rotation.MethodGeneral, Connector: "rest",
		ResourceUID: f.resource, Revision: 7})
	if fe, ok := fault.As(err); !errors.Is(err, vault.ErrStaleRevision) || !ok || fe.Kind != fault.Conflict || fe.Code != "stale_revision" {
		t.Errorf("settings saved with a stale revision: %v, want vault.ErrStaleRevision (409 stale_revision)", err)
	}
}
