package rotation

// The params a rotation's scripts receive, as script params shows them.

import (
	"context"
	"encoding/json"

	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/vault"
)

// ScriptParams returns the decoded params the scripts of a pamUser record would receive in a
// rotation now, with a placeholder new password; secrets masked unless reveal.
func (e *Engine) ScriptParams(ctx context.Context, scope vault.Scope, uid string, reveal bool) (json.RawMessage, error) {
	rec, err := e.vault.Meta(ctx, scope, uid)
	if err != nil {
		return nil, err
	}
	if rec.Type != "pamUser" {
		return nil, fault.Invalidf("script params are those of a pamUser's rotation; %s is a %s record", uid, rec.Type)
	}
	j := &job{e: e, run: store.Run{TeamID: scope.TeamID, RecordUID: uid}}
	if err := j.load(ctx); err != nil {
		return nil, err
	}
	old, _ := j.user.Password()
	params := script.Params{Configuration: j.config, Resource: j.resource, User: j.user,
		NewPassword: secret.FromString("<the new password>"), OldPassword: secret.FromString(old)}
	if len(j.scripts) > 0 {
		params.Credentials = j.scripts[0].credentials
	}
	return params.Decoded(reveal)
}
