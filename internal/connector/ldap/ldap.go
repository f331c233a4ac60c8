// Package ldap rotates a directory account's password. The resource record (pamDirectory)
// names the server by its url (ldap://host[:389], where StartTLS is on unless the "LDAP
// StartTLS" field says false, or ldaps://host[:636]) and holds the admin's bind DN (login) and
// password. The pamUser's login is the account's DN, or a name looked up (as the admin) under
// the "LDAP Base DN" field by the "LDAP Login Attribute" (uid; sAMAccountName on Active
// Directory).
//
// On OpenLDAP the change is the Password Modify extended operation (RFC 3062), so the server
// hashes the password by its own policy; a plain replace of userPassword, which OpenLDAP would
// store as it came, is never sent. On Active Directory it is a modify of unicodePwd (the
// password in double quotes, UTF-16LE), which the server takes only over TLS, so ldap://
// without StartTLS is refused before anything is sent. Either is made as the admin (a reset)
// or, with "LDAP Change Mode" = user, as the account itself with its current password. The
// check is a fresh bind as the account.
package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/go-ldap/ldap/v3"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
)

// Field labels the connector reads (the pamUser's custom fields override the resource's, except
// for those rotation keeps to the resource: StartTLS, CA certificate, type and self-rotation).
const (
	FieldStartTLS       = "LDAP StartTLS"        // ldap:// only: "false" sends binds in clear (default true)
	FieldCACertificate  = "LDAP CA Certificate"  // PEM certificates to trust instead of the system's (a self-signed server's own)
	FieldDirectoryType  = "LDAP Directory Type"  // openldap (default) or active_directory
	FieldSelfRotation   = "LDAP Self Rotation"   // "true": the admin may rotate its own DN
	FieldChangeMode     = "LDAP Change Mode"     // admin (default): a reset by the admin; user: the account changes its own
	FieldBaseDN         = "LDAP Base DN"         // where to look up a login that is not a DN
	FieldLoginAttribute = "LDAP Login Attribute" // the attribute a login is looked up by
)

// Directory types.
const (
	OpenLDAP        = "openldap"
	ActiveDirectory = "active_directory"
)

// Change modes.
const (
	ModeAdmin = "admin"
	ModeUser  = "user"
)

// DefaultTimeout bounds each dial and each request when New is given 0.
const DefaultTimeout = 15 * time.Second

// Connector rotates and verifies directory passwords.
type Connector struct {
	timeout time.Duration
}

// New returns a Connector whose dials and requests time out after timeout (0: DefaultTimeout).
func New(timeout time.Duration) *Connector {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Connector{timeout: timeout}
}

// directory is what the records say about the server and how to change the password.
type directory struct {
	url       string // ldap:// or ldaps://, without path or query
	host      string
	ldaps     bool
	startTLS  bool
	tls       *tls.Config
	kind      string // OpenLDAP or ActiveDirectory
	mode      string // ModeAdmin or ModeUser
	self      bool   // FieldSelfRotation is true
	baseDN    string
	loginAttr string
}

// encrypted reports whether binds and changes travel over TLS.
func (d directory) encrypted() bool { return d.ldaps || d.startTLS }

func isTrue(v string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	return v == "true" || v == "yes" || v == "1"
}

func isFalse(v string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	return v == "false" || v == "no" || v == "0"
}

func directoryOf(a connector.Account) (directory, error) {
	bad := func(msg string) (directory, error) {
		return directory{}, connector.Permanent("ldap_bad_target", msg, nil)
	}
	u, err := url.Parse(strings.TrimSpace(a.Target.URL))
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Hostname() == "" {
		return bad("the resource record's url must be ldap://host[:389] or ldaps://host[:636]")
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return bad("the resource record's url must hold only the scheme, host and port (the admin's DN and password are its login and password)")
	}
	f := a.Target.Fields
	d := directory{url: u.Scheme + "://" + u.Host, host: u.Hostname(), ldaps: u.Scheme == "ldaps",
		kind: OpenLDAP, mode: ModeAdmin, self: isTrue(f[FieldSelfRotation]), baseDN: strings.TrimSpace(f[FieldBaseDN]),
		loginAttr: strings.TrimSpace(f[FieldLoginAttribute])}
	switch v := strings.TrimSpace(f[FieldStartTLS]); {
	case d.ldaps:
	case v == "" || isTrue(v):
		d.startTLS = true
	case isFalse(v):
	default:
		return bad(fmt.Sprintf("%s must be true or false, not %q", FieldStartTLS, v))
	}
	switch v := strings.ToLower(strings.TrimSpace(f[FieldDirectoryType])); v {
	case "", OpenLDAP:
	case ActiveDirectory, "ad", "active directory":
		d.kind = ActiveDirectory
	default:
		return bad(fmt.Sprintf("%s must be %s or %s, not %q", FieldDirectoryType, OpenLDAP, ActiveDirectory, v))
	}
	switch v := strings.ToLower(strings.TrimSpace(f[FieldChangeMode])); v {
	case "", ModeAdmin:
	case ModeUser:
		d.mode = ModeUser
	default:
		return bad(fmt.Sprintf("%s must be %s or %s, not %q", FieldChangeMode, ModeAdmin, ModeUser, v))
	}
	if d.loginAttr == "" {
		d.loginAttr = "uid"
		if d.kind == ActiveDirectory {
			d.loginAttr = "sAMAccountName"
		}
	}
	d.tls = &tls.Config{ServerName: d.host, MinVersion: tls.VersionTLS12}
	if pemText := strings.TrimSpace(f[FieldCACertificate]); pemText != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(pemText)) {
			return bad(fmt.Sprintf("%s holds no PEM certificate", FieldCACertificate))
		}
		d.tls.RootCAs = pool
	}
	if d.kind == ActiveDirectory && !d.encrypted() {
		return directory{}, connector.Permanent("ldap_tls_required",
			fmt.Sprintf("Active Directory takes a password only over TLS: use ldaps:// or leave %s on", FieldStartTLS), nil)
	}
	return d, nil
}

// isDN reports whether s reads as a distinguished name (a login such as "alice" does not).
func isDN(s string) bool {
	if !strings.Contains(s, "=") {
		return false
	}
	dn, err := ldap.ParseDN(s)
	return err == nil && len(dn.RDNs) > 0
}

// sameDN compares two DNs as the directory would (case-insensitive), or as strings when one
// does not parse.
func sameDN(a, b string) bool {
	da, errA := ldap.ParseDN(a)
	db, errB := ldap.ParseDN(b)
	if errA != nil || errB != nil {
		return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
	}
	return da.EqualFold(db)
}

// dial connects (with StartTLS when the records ask for it) and closes the connection if ctx
// ends first. Its errors are classified; they never hold a secret.
func (c *Connector) dial(ctx context.Context, d directory) (*ldap.Conn, func(), error) {
	conn, err := ldap.DialURL(d.url, ldap.DialWithDialer(&net.Dialer{Timeout: c.timeout}), ldap.DialWithTLSConfig(d.tls))
	if err != nil {
		return nil, nil, classify(err, "connect to the directory", false)
	}
	conn.SetTimeout(c.timeout)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	closeAll := func() { stop(); conn.Close() }
	if d.startTLS {
		if err := conn.StartTLS(d.tls); err != nil {
			closeAll()
			var le *ldap.Error
			if errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork {
				// The directory answered that it will not start TLS: asking again will not help.
				return nil, nil, connector.Permanent("ldap_starttls_refused",
					fmt.Sprintf("the directory refused StartTLS: use ldaps://, or set %q to false to bind in clear", FieldStartTLS),
					serverError{code: le.ResultCode})
			}
			return nil, nil, classify(err, "start TLS", false)
		}
	}
	return conn, closeAll, nil
}

// bind binds conn as dn with password. An empty password is refused here: a simple bind with
// none would be an unauthenticated bind, which many servers accept for any DN.
func bind(conn *ldap.Conn, dn string, password secret.Secret) error {
	if password.IsZero() {
		return ldap.NewError(ldap.LDAPResultInvalidCredentials, errors.New("empty password"))
	}
	return conn.Bind(dn, password.Reveal())
}

// userDN returns the account's DN: its login when that is a DN, or the one entry found under
// FieldBaseDN whose login attribute equals the login, searched as the admin.
func (c *Connector) userDN(ctx context.Context, a connector.Account, d directory) (string, error) {
	login := strings.TrimSpace(a.Login)
	if login == "" {
		return "", connector.Permanent("ldap_no_login", "the pamUser record has no login", nil)
	}
	if isDN(login) {
		return login, nil
	}
	if d.baseDN == "" {
		return "", connector.Permanent("ldap_no_base_dn",
			fmt.Sprintf("the login %q is not a DN: give the account's DN as its login, or set %q to look it up", login, FieldBaseDN), nil)
	}
	if a.Target.AdminLogin == "" || a.Target.AdminSecret.IsZero() {
		return "", connector.Permanent("ldap_no_admin", "looking up a login that is not a DN needs the resource's admin DN and password", nil)
	}
	conn, done, err := c.dial(ctx, d)
	if err != nil {
		return "", err
	}
	defer done()
	if err := bind(conn, a.Target.AdminLogin, a.Target.AdminSecret); err != nil {
		return "", classify(err, "bind as the admin", true, a.Target.AdminSecret)
	}
	filter := fmt.Sprintf("(%s=%s)", ldap.EscapeFilter(d.loginAttr), ldap.EscapeFilter(login))
	res, err := conn.Search(ldap.NewSearchRequest(d.baseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2,
		int(c.timeout/time.Second), false, filter, []string{"1.1"}, nil))
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return "", classify(err, "look up the account", true)
	}
	switch {
	case res == nil || len(res.Entries) == 0:
		return "", connector.Permanent("no_such_account", fmt.Sprintf("no entry under %q has %s=%s", d.baseDN, d.loginAttr, login), nil)
	case len(res.Entries) > 1:
		return "", connector.Permanent("ldap_ambiguous_login", fmt.Sprintf("more than one entry under %q has %s=%s", d.baseDN, d.loginAttr, login), nil)
	}
	return res.Entries[0].DN, nil
}

// IsSelf reports whether Rotate would change the admin's own password: self-rotation is
// allowed and the pamUser's login is the admin's DN, compared as the directory compares DNs
// (connector.SelfRotator). Rotate refuses a login that is a name found to be the admin.
func (c *Connector) IsSelf(a connector.Account) bool {
	login, admin := strings.TrimSpace(a.Login), strings.TrimSpace(a.Target.AdminLogin)
	return isTrue(a.Target.Fields[FieldSelfRotation]) && admin != "" && isDN(login) && sameDN(login, admin)
}

// Rotate sets the account's password to new: as the admin (a reset) or, in user mode and for
// the admin's own DN (allowed only by FieldSelfRotation), as the account with old. Repeating it
// after a crash is harmless: in user mode, an account that no longer takes old but takes new
// has been changed already. Errors raised before the change was sent, and the directory's
// refusals of it, wrap connector.ErrNotChanged.
func (c *Connector) Rotate(ctx context.Context, a connector.Account, old, new secret.Secret) error {
	d, err := directoryOf(a)
	if err != nil {
		return connector.NotChanged(err)
	}
	if new.IsZero() {
		return connector.NotChanged(connector.Permanent("ldap_empty_password", "the new password is empty", nil))
	}
	admin := strings.TrimSpace(a.Target.AdminLogin)
	if admin != "" && !isDN(admin) {
		return connector.NotChanged(connector.Permanent("ldap_bad_admin",
			fmt.Sprintf("the resource's login %q must be the admin's bind DN", admin), nil))
	}
	dn, err := c.userDN(ctx, a, d)
	if err != nil {
		return connector.NotChanged(err)
	}
	mode := d.mode
	if admin != "" && sameDN(dn, admin) {
		if !d.self {
			return connector.NotChanged(connector.Permanent("ldap_self_rotation",
				fmt.Sprintf("the account %q is the resource's admin DN; set the %q field to true to let it rotate itself", dn, FieldSelfRotation), nil))
		}
		if !isDN(strings.TrimSpace(a.Login)) {
			// The engine knows a self-rotation by the login alone (IsSelf), to keep the
			// resource's password: a name found by a search would escape it.
			return connector.NotChanged(connector.Permanent("ldap_self_rotation",
				fmt.Sprintf("the login %q names the resource's admin; a self-rotation needs the pamUser's login to be the admin's DN %q", a.Login, dn), nil))
		}
		mode = ModeUser // the admin changes its own password with the old one
	}
	if mode == ModeAdmin && (admin == "" || a.Target.AdminSecret.IsZero()) {
		return connector.NotChanged(connector.Permanent("ldap_no_admin",
			fmt.Sprintf("the resource record has no admin DN and password (or set %q to user)", FieldChangeMode), nil))
	}
	if mode == ModeUser && old.IsZero() {
		return connector.NotChanged(connector.Permanent("ldap_no_old_password", "a change as the account needs its current password", nil))
	}

	ctx, cancel := context.WithTimeout(ctx, 4*c.timeout)
	defer cancel()
	conn, done, err := c.dial(ctx, d)
	if err != nil {
		return connector.NotChanged(err)
	}
	defer done()
	if mode == ModeUser {
		if err := bind(conn, dn, old); err != nil {
			if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) && c.binds(ctx, d, dn, new) {
				return nil // a run resumed after the change: the account already takes new
			}
			return connector.NotChanged(classify(err, "bind as the account with its current password", false, old))
		}
	} else if err := bind(conn, admin, a.Target.AdminSecret); err != nil {
		return connector.NotChanged(classify(err, "bind as the admin", true, a.Target.AdminSecret))
	}

	if d.kind == ActiveDirectory {
		err = conn.Modify(unicodePwdRequest(dn, mode, old, new))
	} else {
		req := &ldap.PasswordModifyRequest{UserIdentity: dn, NewPassword: new.Reveal()}
		if mode == ModeUser {
			req.OldPassword = old.Reveal()
		}
		_, err = conn.PasswordModify(req)
	}
	if err == nil {
		return nil
	}
	var le *ldap.Error
	if errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork {
		// The directory answered the change with an error: it did not apply it. A password
		// history refuses a password the account has already, as after a resumed run's repeat.
		if policy(le.ResultCode) && c.binds(ctx, d, dn, new) {
			return nil
		}
		return connector.NotChanged(classify(err, "change the password", mode == ModeAdmin, old, new, a.Target.AdminSecret))
	}
	return classify(err, "change the password", mode == ModeAdmin, old, new, a.Target.AdminSecret)
}

// binds reports whether a fresh connection binds as dn with password.
func (c *Connector) binds(ctx context.Context, d directory, dn string, password secret.Secret) bool {
	conn, done, err := c.dial(ctx, d)
	if err != nil {
		return false
	}
	defer done()
	return bind(conn, dn, password) == nil
}

// UnicodePwd encodes password as Active Directory's unicodePwd takes it: in double quotes,
// UTF-16 little-endian. The caller should clear the result when done.
func UnicodePwd(password secret.Secret) []byte {
	quoted := utf16.Encode([]rune("\"" + password.Reveal() + "\""))
	b := make([]byte, 2*len(quoted))
	for i, u := range quoted {
		binary.LittleEndian.PutUint16(b[2*i:], u)
	}
	return b
}

// unicodePwdRequest is Active Directory's password change of dn: a replace of unicodePwd as an
// admin (a reset), or, as the account, a delete of the old value and an add of the new one in
// one modify (which AD checks against the old password and the password policy).
func unicodePwdRequest(dn, mode string, old, new secret.Secret) *ldap.ModifyRequest {
	req := ldap.NewModifyRequest(dn, nil)
	if mode == ModeUser {
		req.Delete("unicodePwd", []string{string(UnicodePwd(old))})
		req.Add("unicodePwd", []string{string(UnicodePwd(new))})
		return req
	}
	req.Replace("unicodePwd", []string{string(UnicodePwd(new))})
	return req
}

// Verify binds as the account with password on a fresh connection: nil when the directory
// accepts it, an error wrapping connector.ErrRejected when it refuses it.
func (c *Connector) Verify(ctx context.Context, a connector.Account, password secret.Secret) error {
	d, err := directoryOf(a)
	if err != nil {
		return err
	}
	dn, err := c.userDN(ctx, a, d)
	if err != nil {
		return err
	}
	if password.IsZero() {
		return fmt.Errorf("bind as %q with an empty password: %w", dn, connector.ErrRejected)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*c.timeout)
	defer cancel()
	conn, done, err := c.dial(ctx, d)
	if err != nil {
		return err
	}
	defer done()
	err = bind(conn, dn, password)
	if err == nil {
		return nil
	}
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		switch adSubcode(err) {
		case "532", "773":
			return nil // Active Directory: the password is right, but expired or to be changed at next logon
		case "525", "530", "531", "533", "701", "775":
			// No such user, logon hours, workstation, disabled, expired or locked: the
			// password may be right or wrong, and nobody can tell.
			return connector.Permanent("ldap_account_unusable",
				fmt.Sprintf("bind as %q: the directory refused the account itself (Active Directory code %s)", dn, adSubcode(err)), nil)
		}
		return fmt.Errorf("bind as %q: %w", dn, connector.ErrRejected)
	}
	return classify(err, "bind as the account", false, password)
}

// adSubcode returns the "data NNN" code of Active Directory's invalid-credentials message
// ("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563"),
// or "".
func adSubcode(err error) string {
	var le *ldap.Error
	if !errors.As(err, &le) || le.Err == nil {
		return ""
	}
	_, rest, ok := strings.Cut(le.Err.Error(), ", data ")
	if !ok {
		return ""
	}
	code, _, _ := strings.Cut(rest, ",")
	return strings.ToLower(strings.TrimSpace(code))
}

// policy reports whether code is how a directory refuses a password its policy does not take
// (too short, in the history, changed too recently, or on AD any unwilling change).
func policy(code uint16) bool {
	return code == ldap.LDAPResultConstraintViolation || code == ldap.LDAPResultUnwillingToPerform
}

// serverError is an LDAP result without the request it answered.
type serverError struct {
	code uint16
	text string
}

func (e serverError) Error() string {
	name := ldap.LDAPResultCodeMap[e.code]
	if e.text == "" {
		return fmt.Sprintf("LDAP result %d (%s)", e.code, name)
	}
	return fmt.Sprintf("LDAP result %d (%s): %s", e.code, name, e.text)
}

// classify turns a go-ldap error into a connector error whose text holds none of secrets.
func classify(err error, what string, admin bool, secrets ...secret.Secret) error {
	var le *ldap.Error
	if !errors.As(err, &le) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return connector.Transient("timeout", what+": timed out", err)
		}
		return connector.Transient("connection", what+": failed", errors.New(scrub(err.Error(), secrets)))
	}
	text := ""
	if le.Err != nil {
		text = scrub(le.Err.Error(), secrets)
	}
	se := serverError{code: le.ResultCode, text: text}
	switch le.ResultCode {
	case ldap.LDAPResultInvalidCredentials:
		if admin {
			return connector.Permanent("admin_rejected", what+": the directory refused the admin's DN or password", se)
		}
		return connector.Permanent("auth_rejected", what+": the directory refused the password", se)
	case ldap.LDAPResultConstraintViolation, ldap.LDAPResultUnwillingToPerform:
		return connector.Permanent("password_policy", what+": the directory's password policy refused it", se)
	case ldap.LDAPResultInsufficientAccessRights:
		return connector.Permanent("forbidden", what+": the bound DN may not do this", se)
	case ldap.LDAPResultNoSuchObject:
		return connector.Permanent("no_such_account", what+": the directory has no such entry", se)
	case ldap.LDAPResultInvalidDNSyntax:
		return connector.Permanent("ldap_bad_dn", what+": the DN is not valid", se)
	case ldap.LDAPResultStrongAuthRequired, ldap.LDAPResultConfidentialityRequired:
		return connector.Permanent("ldap_tls_required", what+": the directory requires TLS", se)
	case ldap.LDAPResultBusy, ldap.LDAPResultUnavailable, ldap.LDAPResultTimeLimitExceeded,
		ldap.LDAPResultAdminLimitExceeded, ldap.LDAPResultLoopDetect:
		return connector.Transient("unavailable", what+": the directory is unavailable for now", se)
	case ldap.ErrorNetwork:
		switch {
		case isTLSTrust(text):
			// A certificate the records do not trust is no network hiccup: retrying cannot help.
			return connector.Permanent("ldap_tls_untrusted", what+": the directory's certificate is not trusted (see "+FieldCACertificate+")", se)
		case strings.Contains(text, "timed out") || strings.Contains(text, "timeout"):
			return connector.Transient("timeout", what+": timed out", se)
		}
		return connector.Transient("connection", what+": cannot reach the directory", se)
	}
	if le.ResultCode >= ldap.ErrorNetwork {
		return connector.Transient("connection", what+": the connection failed", se)
	}
	return connector.Permanent("ldap_error", what+": the directory answered with an error", se)
}

func isTLSTrust(text string) bool {
	return strings.Contains(text, "x509:") || strings.Contains(text, "certificate")
}

// scrub removes secrets from text a directory or library sent back, and bounds its length.
func scrub(s string, secrets []secret.Secret) string {
	for _, sec := range secrets {
		if !sec.IsZero() {
			s = strings.ReplaceAll(s, sec.Reveal(), secret.Redacted)
		}
	}
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
