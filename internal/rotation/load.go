package rotation

// Loading what a run needs: its record, settings, resource, configuration, connectors
// and scripts.

import (
	"context"
	"encoding/json"
	"net"
	"slices"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/vault"
)

// secretFieldTypes are left out of a connector's Target.Fields.
var secretFieldTypes = []string{"password", "secret", "pinCode", "oneTimeCode", "keyPair"}

// load reads what a run needs: the record, its settings, its resource and configuration,
// the connectors and the scripts.
func (j *job) load(ctx context.Context) error {
	e, teamID := j.e, j.run.TeamID
	var err error
	if j.user, j.userKey, err = e.vault.GetWithKey(ctx, e.db.Reader, teamID, j.run.RecordUID); err != nil {
		return err
	}
	if j.settings, j.state, err = e.settingsRow(ctx, e.db.Reader, teamID, j.run.RecordUID); err != nil {
		return err
	}
	j.method = j.settings.Method
	if isNOOP(j.user) {
		j.method = MethodScriptsOnly
	}
	for _, ref := range []struct {
		uid  string
		into **vault.Record
	}{{j.settings.ConfigurationUID, &j.config}, {j.settings.ResourceUID, &j.resource}} {
		if ref.uid == "" {
			continue
		}
		rec, err := e.vault.GetIn(ctx, e.db.Reader, teamID, ref.uid)
		if err != nil {
			return fault.New(fault.Invalid, "rotation_misconfigured", "record %s named in the rotation settings: %v", ref.uid, err)
		}
		*ref.into = &rec
	}
	if j.method == MethodGeneral {
		conn, ok := e.connectors[j.settings.Connector]
		if !ok {
			return fault.New(fault.Invalid, "connector_unavailable", "the %s connector is not available", j.settings.Connector)
		}
		if j.resource == nil {
			return fault.New(fault.Invalid, "rotation_misconfigured", "method general needs a resource record")
		}
		j.rotator, j.verifier, j.connName = conn, conn, j.settings.Connector
		j.issuer, _ = conn.(connector.Issuer)
		j.finalizer, _ = conn.(connector.Finalizer)
	} else if j.settings.VerifyWith != "" {
		conn, ok := e.connectors[j.settings.VerifyWith]
		if !ok {
			return fault.New(fault.Invalid, "connector_unavailable", "the %s connector named by verify_with is not available", j.settings.VerifyWith)
		}
		j.verifier, j.connName = conn, j.settings.VerifyWith
	}
	j.account = accountOf(j.user, j.resource)
	if sr, ok := j.rotator.(connector.SelfRotator); ok && sr.IsSelf(j.account) {
		j.self = true
	}
	j.target = targetKey(j.connName, j.account.Target.URL, j.account.Target.Fields["pamHostname"], j.settings.ResourceUID)
	if t, ok := j.verifier.(connector.VerifyToggle); ok && !t.CanVerify(j.account) {
		j.verifier = nil
	}
	for _, rec := range []*vault.Record{&j.user, j.resource, j.config} {
		if rec == nil {
			continue
		}
		if err := j.loadScripts(ctx, *rec); err != nil {
			return err
		}
	}
	return nil
}

func (j *job) loadScripts(ctx context.Context, rec vault.Record) error {
	rows, err := j.e.db.Scripts(ctx, rec.UID)
	if err != nil {
		return err
	}
	for _, s := range rows {
		content, err := j.e.vault.Open(ctx, j.e.db.Reader, j.run.TeamID, rec.UID, "script/"+s.ID, s.Content)
		if err != nil {
			return err
		}
		a := attached{script: script.Script{Name: s.Name, Content: content, Command: s.Command, Timeout: s.Timeout}}
		for _, c := range s.CredentialUIDs {
			cred, err := j.e.vault.GetIn(ctx, j.e.db.Reader, j.run.TeamID, c)
			if err != nil {
				return fault.New(fault.Invalid, "rotation_misconfigured", "credential record %s of script %s: %v", c, s.Name, err)
			}
			a.credentials = append(a.credentials, cred)
		}
		j.scripts = append(j.scripts, a)
	}
	return nil
}

// accountOf describes the account for a connector: the pamUser's login, and the target and
// admin credential from the resource record (url, login and password fields). Fields holds the
// resource's fields and custom fields by label (or type), with the pamUser's custom fields
// over them, so that settings such as "Okta Admin Reset" may live on either record.
func accountOf(user vault.Record, resource *vault.Record) connector.Account {
	acct := connector.Account{Login: firstString(user, "login"), Target: connector.Target{Fields: map[string]string{}}}
	add := func(fields []vault.Field, override bool) {
		for _, f := range fields {
			if slices.Contains(secretFieldTypes, f.Type) {
				continue // secrets reach a connector only as AdminSecret
			}
			key := f.Label
			if key == "" {
				key = f.Type
			}
			var s string
			if f.Type == "pamHostname" && len(f.Value) > 0 {
				s = hostPortOf(f.Value[0]) // {"hostName": …, "port": …} as host:port
			}
			if _, seen := acct.Target.Fields[key]; (override || !seen) && len(f.Value) > 0 && (s != "" || json.Unmarshal(f.Value[0], &s) == nil) {
				acct.Target.Fields[key] = s
			}
		}
	}
	if resource != nil {
		acct.Target.URL = firstString(*resource, "url")
		acct.Target.AdminLogin = firstString(*resource, "login")
		if pw, ok := resource.Password(); ok {
			acct.Target.AdminSecret = secret.FromString(pw)
		}
		add(resource.Fields, false)
		add(resource.Custom, false)
		for _, f := range resource.Custom {
			var v string
			if slices.Contains(secretFieldTypes, f.Type) && f.Label != "" && len(f.Value) > 0 && json.Unmarshal(f.Value[0], &v) == nil && v != "" {
				if acct.Target.Secrets == nil {
					acct.Target.Secrets = map[string]secret.Secret{}
				}
				acct.Target.Secrets[f.Label] = secret.FromString(v)
			}
		}
	}
	var own []vault.Field // what the pamUser may set: not how the target is reached or trusted
	for _, f := range user.Custom {
		if !slices.Contains(resourceOnlyFields, f.Label) {
			own = append(own, f)
		}
	}
	add(own, true)
	return acct
}

// resourceOnlyFields are custom fields that only the resource record sets: they say how the
// target is reached and trusted, or whether its admin may rotate its own account. Whoever may
// edit a pamUser must not be able to unpin a host key, turn TLS off or rotate the admin.
var resourceOnlyFields = []string{"SSH Host Key", "SSH Self Rotation", "PostgreSQL Self Rotation", "MySQL Self Rotation",
	"SSL Mode", "Database", "pamHostname",
	"LDAP StartTLS", "LDAP CA Certificate", "LDAP Directory Type", "LDAP Self Rotation"}

// hostPortOf reads a pamHostname value ({"hostName": …, "port": …}) as host:port, or host
// without a port; "" when it is not one.
func hostPortOf(raw json.RawMessage) string {
	var hp struct {
		HostName string `json:"hostName"`
		Port     string `json:"port"`
	}
	if json.Unmarshal(raw, &hp) != nil || hp.HostName == "" {
		return ""
	}
	if hp.Port == "" {
		return hp.HostName
	}
	return net.JoinHostPort(hp.HostName, hp.Port)
}

func firstString(rec vault.Record, fieldType string) string {
	for _, f := range rec.Fields {
		if f.Type == fieldType && len(f.Value) > 0 {
			var s string
			if json.Unmarshal(f.Value[0], &s) == nil {
				return s
			}
		}
	}
	return ""
}
