// Package rotation is keyturn's rotation engine: rotation settings, the crash-safe run state
// machine, recovery on start, and the PAM scripts that run with each rotation.
package rotation

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/passgen"
	"github.com/keyturn/keyturn/internal/vault"
)

// Rotation methods.
const (
	MethodGeneral     = "general"      // a connector changes the password; scripts run after it
	MethodScriptsOnly = "scripts_only" // the scripts are the rotation (Keeper's NOOP mode)
)

// ConnectorNames are the connectors settings may name.
var ConnectorNames = []string{"okta", "opa", "rest", "ssh", "mysql", "postgresql", "ldap"}

// Settings are a pamUser record's rotation settings.
type Settings struct {
	Method           string              `json:"method"`
	Connector        string              `json:"connector,omitempty"`
	ConfigurationUID string              `json:"configuration_uid,omitempty"`
	ResourceUID      string              `json:"resource_uid,omitempty"`
	Schedule         json.RawMessage     `json:"schedule,omitempty"`
	Complexity       *passgen.Complexity `json:"complexity,omitempty"`
	VerifyWith       string              `json:"verify_with,omitempty"`
	Enabled          *bool               `json:"enabled,omitempty"`

	// Window is how late after its scheduled time a run may still start (a duration such as
	// "2h"); a due run that cannot start within it waits for the next occurrence.
	Window string `json:"window,omitempty"`
	// Paused stops scheduled runs (on-demand rotation still works) until it is cleared.
	Paused bool `json:"paused,omitempty"`
	// CatchUp says what to do with an occurrence missed while keyturn was down: "run_once"
	// (the default: one run, however many were missed) or "skip".
	CatchUp string `json:"catch_up,omitempty"`
	// NextRunAt, when given to PUT, overrides when the next scheduled run happens; the
	// schedule goes on from there. It is not stored in the settings.
	NextRunAt *time.Time `json:"next_run_at,omitempty"`
	// Revision counts the saves of the settings. Given to PUT, it must be the stored one (a
	// 409 otherwise, and nothing changes), so that a read-modify-write loses no one's change.
	Revision int64 `json:"revision,omitempty"`
}

// IsEnabled reports whether rotation is enabled (the default).
func (s Settings) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

// EffectiveComplexity is the configured complexity or the default.
func (s Settings) EffectiveComplexity() passgen.Complexity {
	if s.Complexity == nil {
		return passgen.Default()
	}
	return *s.Complexity
}

// validate checks the settings on their own; references to other records are checked by the
// engine. It fills defaults.
func (s *Settings) validate() error {
	switch s.Method {
	case MethodGeneral:
		if !slices.Contains(ConnectorNames, s.Connector) {
			return fault.Invalidf("method general needs connector %s, not %q", strings.Join(ConnectorNames, ", "), s.Connector)
		}
		if s.ResourceUID == "" {
			return fault.Invalidf("method general needs resource_uid: the record holding the target and its admin credential")
		}
	case MethodScriptsOnly:
		if s.Connector != "" {
			return fault.Invalidf("method scripts_only takes no connector (use verify_with to check the new password)")
		}
	case "":
		return fault.New(fault.Invalid, "missing_required_field", "method is required: general or scripts_only")
	default:
		return fault.Invalidf("method must be general or scripts_only, not %q", s.Method)
	}
	if s.VerifyWith != "" && !slices.Contains(ConnectorNames, s.VerifyWith) {
		return fault.Invalidf("verify_with must be one of %s or empty, not %q", strings.Join(ConnectorNames, ", "), s.VerifyWith)
	}
	if s.Complexity != nil {
		if err := s.Complexity.Validate(); err != nil {
			return err
		}
	}
	if len(s.Schedule) == 0 || string(s.Schedule) == "null" {
		s.Schedule = json.RawMessage(`{"type":"ON_DEMAND"}`)
	}
	if s.Window != "" {
		if d, err := time.ParseDuration(s.Window); err != nil || d <= 0 {
			return fault.Invalidf("window must be a positive duration such as 2h, not %q", s.Window)
		}
	}
	switch s.CatchUp {
	case "", CatchUpRunOnce, CatchUpSkip:
	default:
		return fault.Invalidf("catch_up must be %s or %s, not %q", CatchUpRunOnce, CatchUpSkip, s.CatchUp)
	}
	return nil
}

// Catch-up policies for occurrences missed while keyturn was down.
const (
	CatchUpRunOnce = "run_once"
	CatchUpSkip    = "skip"
)

// window returns the settings' window (0 when none).
func (s Settings) window() time.Duration {
	d, _ := time.ParseDuration(s.Window)
	return d
}

// isNOOP reports whether a record carries Keeper's legacy custom text field NOOP = True,
// which forces scripts_only whatever the settings say.
func isNOOP(rec vault.Record) bool {
	for _, f := range rec.Custom {
		if f.Label == "NOOP" && len(f.Value) > 0 {
			var v string
			if json.Unmarshal(f.Value[0], &v) == nil && strings.EqualFold(strings.TrimSpace(v), "true") {
				return true
			}
		}
	}
	return false
}

// customFlag reads a Keeper custom text field holding True/False by label from the records in
// order (user, resource, configuration): the first record that has it wins.
func customFlag(label string, def bool, recs ...*vault.Record) bool {
	for _, rec := range recs {
		if rec == nil {
			continue
		}
		for _, f := range rec.Custom {
			if !strings.EqualFold(f.Label, label) || len(f.Value) == 0 {
				continue
			}
			var v string
			if json.Unmarshal(f.Value[0], &v) != nil {
				continue
			}
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "true", "yes", "1":
				return true
			case "false", "no", "0":
				return false
			}
		}
	}
	return def
}
