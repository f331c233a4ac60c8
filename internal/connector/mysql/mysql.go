// Package mysql rotates the password of a MariaDB or MySQL account. The resource record's url
// (mysql://host:port, with ?tls=true|skip-verify|preferred|false; default true) names the
// server and its login and password are the admin's; the account's host part comes from the
// record's "MySQL Account Host" field (default '%'). The change is ALTER USER sent as the admin
// with a hash of the new password computed here, so that the clear password never reaches the
// server (nor its general log): mysql_native_password on MariaDB and older MySQL,
// caching_sha2_password on MySQL 8.4 and later (which disable or remove mysql_native_password)
// and for MySQL accounts already using it. The check is a fresh login as the account.
package mysql

import (
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
)

// AccountHostField is the label of the field naming the account's host part ('%' when absent).
const AccountHostField = "MySQL Account Host"

// SelfRotationField is the label of the field that, set to "true", allows rotating the admin's
// own account (the change is then made by logging in with the old password).
const SelfRotationField = "MySQL Self Rotation"

// MariaDB and MySQL error numbers the connector classifies.
const (
	errAccessDenied     = 1045 // ER_ACCESS_DENIED_ERROR
	errDBAccessDenied   = 1044 // ER_DBACCESS_DENIED_ERROR
	errSpecificAccess   = 1227 // ER_SPECIFIC_ACCESS_DENIED_ERROR
	errCannotUser       = 1396 // ER_CANNOT_USER: no such account
	errTooManyConns     = 1040 // ER_CON_COUNT_ERROR
	errHostBlocked      = 1129 // ER_HOST_IS_BLOCKED
	errPasswordExpired  = 1862 // ER_MUST_CHANGE_PASSWORD_LOGIN
	errPasswordMustChng = 1820 // ER_MUST_CHANGE_PASSWORD
	errNotAllowedHost   = 1130 // ER_HOST_NOT_PRIVILEGED
)

// Connector rotates MariaDB and MySQL passwords.
type Connector struct {
	timeout time.Duration
}

// New returns a Connector whose logins and statements time out after timeout (0: 30 s).
func New(timeout time.Duration) *Connector {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Connector{timeout: timeout}
}

// server is where and how to connect.
type server struct {
	addr string
	tls  string
}

func serverOf(a connector.Account) (server, error) {
	u, err := url.Parse(a.Target.URL)
	if err != nil || u.Scheme != "mysql" || u.Hostname() == "" {
		return server{}, connector.Permanent("mysql_bad_url",
			"the resource record's url must be mysql://host[:port][?tls=true|skip-verify|preferred|false]", nil)
	}
	port := u.Port()
	if port == "" {
		port = "3306"
	}
	tls := u.Query().Get("tls")
	switch tls {
	case "":
		tls = "true"
	case "true", "skip-verify", "preferred", "false":
	default:
		return server{}, connector.Permanent("mysql_bad_url", "the url's tls must be true, skip-verify, preferred or false", nil)
	}
	return server{addr: net.JoinHostPort(u.Hostname(), port), tls: tls}, nil
}

func (c *Connector) open(s server, user string, pw secret.Secret) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = s.addr
	cfg.User = user
	cfg.Passwd = pw.Reveal()
	cfg.TLSConfig = s.tls
	cfg.Timeout = c.timeout
	cfg.ReadTimeout = c.timeout
	cfg.WriteTimeout = c.timeout
	cfg.InterpolateParams = true // quoted client-side by the driver, which knows the server's escaping mode
	cn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, connector.Permanent("mysql_bad_config", "the MySQL connection settings are not valid", nil)
	}
	db := sql.OpenDB(cn)
	db.SetMaxOpenConns(1)
	return db, nil
}

// isAdmin reports whether the account is the resource's admin login.
func isAdmin(a connector.Account) bool {
	return a.Login != "" && strings.EqualFold(a.Login, a.Target.AdminLogin)
}

// selfAllowed reports whether the resource lets its admin rotate its own account.
func selfAllowed(a connector.Account) bool {
	return strings.EqualFold(strings.TrimSpace(a.Target.Fields[SelfRotationField]), "true")
}

// IsSelf reports whether Rotate would change the admin's own account
// (connector.SelfRotator).
func (c *Connector) IsSelf(a connector.Account) bool { return isAdmin(a) && selfAllowed(a) }

// Rotate sets the account's password to new with ALTER USER, as the admin (or, in the explicit
// self-rotation mode, as the account itself with old). Setting the same password twice is
// harmless, so a run resumed after a crash may repeat it. Errors raised before the statement
// was sent, and the server's refusals of it, wrap connector.ErrNotChanged.
func (c *Connector) Rotate(ctx context.Context, a connector.Account, old, new secret.Secret) error {
	s, err := serverOf(a)
	if err != nil {
		return connector.NotChanged(err)
	}
	if a.Login == "" {
		return connector.NotChanged(connector.Permanent("mysql_no_login", "the pamUser has no login", nil))
	}
	if new.IsZero() {
		return connector.NotChanged(connector.Permanent("mysql_empty_password", "the new password is empty", nil))
	}
	loginUser, loginPW := a.Target.AdminLogin, a.Target.AdminSecret
	self := isAdmin(a)
	if self {
		if !selfAllowed(a) {
			return connector.NotChanged(connector.Permanent("mysql_self_rotation",
				fmt.Sprintf("the account %q is the resource's admin login; set the %q field to true to rotate it", a.Login, SelfRotationField), nil))
		}
		loginPW = old
	}
	if loginUser == "" {
		return connector.NotChanged(connector.Permanent("mysql_no_admin", "the resource record has no admin login", nil))
	}
	host := a.Target.Fields[AccountHostField]
	if host == "" {
		host = "%"
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	db, err := c.open(s, loginUser, loginPW)
	if err != nil {
		return connector.NotChanged(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return connector.NotChanged(classify(err, "log in as the admin", true))
	}
	defer conn.Close()
	var version string
	if err := conn.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return connector.NotChanged(classify(err, "read the server version", true))
	}
	srv := parseVersion(version)
	plugin := ""
	if !srv.mariadb {
		if plugin, err = accountPlugin(ctx, conn, a.Login, host, self); err != nil {
			return connector.NotChanged(err)
		}
	}
	stmt, args, err := changeStatement(srv, plugin, self, a.Login, host, new)
	if err != nil {
		return connector.NotChanged(err)
	}
	if _, err := conn.ExecContext(ctx, stmt, args...); err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			// The server answered the statement with an error: it did not apply it.
			return connector.NotChanged(classify(err, "change the password", true))
		}
		return classify(err, "change the password", true)
	}
	return nil
}

// hashKind is how the account's new password is stored.
type hashKind int

const (
	nativeHash      hashKind = iota // mysql_native_password: '*' + hex SHA1(SHA1(pw))
	cachingSHA2Hash                 // caching_sha2_password: $A$005$ + salt + sha256crypt digest
)

// Authentication plugin names as mysql.user.plugin holds them.
const (
	pluginNative      = "mysql_native_password"
	pluginCachingSHA2 = "caching_sha2_password"
)

// serverVersion is what the connector needs of VERSION().
type serverVersion struct {
	mariadb      bool
	major, minor int // 0, 0 when VERSION() does not start with digits
}

// parseVersion reads VERSION(): "10.11.6-MariaDB-0+deb12u1", "8.4.3", "9.1.0-commercial",
// "8.0.36-0ubuntu0.22.04.1", "5.7.44-log".
func parseVersion(v string) serverVersion {
	sv := serverVersion{mariadb: strings.Contains(strings.ToLower(v), "mariadb")}
	num := func(s string) (int, string) {
		n, i := 0, 0
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9' && n < 1e6; i++ {
			n = n*10 + int(s[i]-'0')
		}
		if i == 0 {
			return -1, s
		}
		return n, s[i:]
	}
	major, rest := num(v)
	if major < 0 || !strings.HasPrefix(rest, ".") {
		return sv
	}
	minor, _ := num(rest[1:])
	if minor < 0 {
		return sv
	}
	sv.major, sv.minor = major, minor
	return sv
}

func (v serverVersion) atLeast(major, minor int) bool {
	return v.major > major || (v.major == major && v.minor >= minor)
}

// chooseHash decides how the new password is stored, from the server's version and the
// account's current plugin as mysql.user holds it ("" when the admin may not read it):
//
//   - MariaDB: mysql_native_password, as always: MariaDB has no caching_sha2_password.
//   - MySQL, an account already on caching_sha2_password: caching_sha2_password, on any
//     version, so that a rotation never moves an account to a weaker, deprecated plugin.
//   - MySQL 8.4 and later: caching_sha2_password whatever the account used. 8.4 loads
//     mysql_native_password only when started with --mysql-native-password=ON and 9.0 removed
//     it, so setting it fails there (or soon will); caching_sha2_password is their default.
//   - MySQL before 8.4 (5.7 has no caching_sha2_password; on 8.0 old client libraries may lack
//     it) with a native or unknown plugin: mysql_native_password, as before.
//
// The plugin is read rather than guessed from the version alone because MySQL 8.0's default
// plugin is already caching_sha2_password; the version decides when it cannot be read.
func chooseHash(v serverVersion, plugin string) hashKind {
	switch {
	case v.mariadb:
		return nativeHash
	case plugin == pluginCachingSHA2, v.atLeast(8, 4):
		return cachingSHA2Hash
	default:
		return nativeHash
	}
}

// accountPlugin reads the account's authentication plugin from mysql.user: "" when the admin
// may not read that table or the account is not there (the version then decides, and ALTER
// USER reports a missing account). A failure that is not the server's answer (a lost
// connection) is returned, wrapped as not changed by the caller: no change was sent.
func accountPlugin(ctx context.Context, conn *sql.Conn, user, host string, self bool) (string, error) {
	q, args := "SELECT plugin FROM mysql.user WHERE user = ? AND host = ?", []any{user, host}
	if self {
		q, args = "SELECT plugin FROM mysql.user WHERE CONCAT(user, '@', host) = CURRENT_USER()", nil
	}
	var plugin sql.NullString
	err := conn.QueryRowContext(ctx, q, args...).Scan(&plugin)
	var me *mysql.MySQLError
	switch {
	case err == nil:
		return plugin.String, nil
	case errors.Is(err, sql.ErrNoRows), errors.As(err, &me) && me.Number < 2000:
		return "", nil
	default:
		return "", classify(err, "read the account's plugin", true)
	}
}

// changeStatement is the statement that sets the account's password to new, and its
// arguments: the hash chosen by chooseHash, never the password itself.
func changeStatement(srv serverVersion, plugin string, self bool, login, host string, new secret.Secret) (string, []any, error) {
	kind := chooseHash(srv, plugin)
	var hash string
	switch kind {
	case cachingSHA2Hash:
		if len(new.Bytes()) > MaxCachingSHA2Password {
			return "", nil, connector.Permanent("password_policy",
				fmt.Sprintf("the new password is longer than the %d bytes caching_sha2_password accepts", MaxCachingSHA2Password), nil)
		}
		var err error
		if hash, err = CachingSHA2Hash(new.Bytes()); err != nil {
			return "", nil, connector.Transient("mysql_hash", "could not hash the new password", err)
		}
	default:
		hash = NativeHash(new)
	}
	if self {
		return alterStatement(srv.mariadb, kind, true), []any{hash}, nil
	}
	return alterStatement(srv.mariadb, kind, false), []any{login, host, hash}, nil
}

// alterStatement is the statement that sets the hash. MariaDB takes ALTER USER … IDENTIFIED BY
// PASSWORD with a mysql_native_password hash; for the login's own account MariaDB 10.11
// accepts ALTER USER CURRENT_USER() but leaves the password as it was, so there it is SET
// PASSWORD with the hash (a quoted string without PASSWORD() is taken as the hash). MySQL
// (which dropped IDENTIFIED BY PASSWORD) takes IDENTIFIED WITH <plugin> AS <hash>; the hash is
// a placeholder, quoted by the driver, and holds no password: neither plugin's hash can be
// turned back into it.
func alterStatement(mariadb bool, kind hashKind, self bool) string {
	plugin := pluginNative
	if kind == cachingSHA2Hash {
		plugin = pluginCachingSHA2
	}
	switch {
	case mariadb && self:
		return "SET PASSWORD = ?"
	case mariadb:
		return "ALTER USER ?@? IDENTIFIED BY PASSWORD ?"
	case self:
		return "ALTER USER CURRENT_USER() IDENTIFIED WITH " + plugin + " AS ?"
	default:
		return "ALTER USER ?@? IDENTIFIED WITH " + plugin + " AS ?"
	}
}

// NativeHash is the mysql_native_password hash of pw: '*' and the upper-case hex of
// SHA1(SHA1(pw)), what the server stores and what PASSWORD(pw) returns.
func NativeHash(pw secret.Secret) string {
	h1 := sha1.Sum([]byte(pw.Reveal()))
	h2 := sha1.Sum(h1[:])
	return "*" + strings.ToUpper(hex.EncodeToString(h2[:]))
}

// Verify logs in as the account with password: nil when the server lets it in, an error
// wrapping connector.ErrRejected when it refuses the password.
func (c *Connector) Verify(ctx context.Context, a connector.Account, password secret.Secret) error {
	s, err := serverOf(a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	db, err := c.open(s, a.Login, password)
	if err != nil {
		return err
	}
	defer db.Close()
	err = db.PingContext(ctx)
	var me *mysql.MySQLError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &me) && (me.Number == errPasswordExpired || me.Number == errPasswordMustChng):
		return nil // the password was accepted; the account must change it
	case errors.As(err, &me) && me.Number == errAccessDenied:
		return fmt.Errorf("log in as %q: %w", a.Login, connector.ErrRejected)
	default:
		return classify(err, "log in as the account", false)
	}
}

// serverError is a MySQL error without the server's message, which may quote the statement.
type serverError struct {
	number   uint16
	sqlState string
}

func (e serverError) Error() string { return fmt.Sprintf("server error %d (%s)", e.number, e.sqlState) }

// classify turns a driver error into a connector error whose text holds no secret.
func classify(err error, what string, admin bool) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		se := serverError{number: me.Number, sqlState: string(me.SQLState[:])}
		switch me.Number {
		case errAccessDenied:
			if admin {
				return connector.Permanent("admin_rejected", what+": the server refused the admin login", se)
			}
			return connector.Permanent("auth_rejected", what+": the server refused the login", se)
		case errDBAccessDenied, errSpecificAccess, errNotAllowedHost:
			return connector.Permanent("forbidden", what+": the login lacks the privilege", se)
		case errCannotUser:
			return connector.Permanent("no_such_account", what+": the server has no such account (check the account host)", se)
		case errTooManyConns, errHostBlocked:
			return connector.Transient("unavailable", what+": the server refused the connection for now", se)
		}
		if me.Number >= 2000 { // client-side errors
			return connector.Transient("connection", what+": connection failed", se)
		}
		return connector.Permanent("server_error", what+": the server answered with an error", se)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return connector.Transient("timeout", what+": timed out", err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, sql.ErrConnDone) {
		return connector.Transient("connection", what+": connection failed", errors.New(sanitize(err.Error())))
	}
	return connector.Transient("connection", what+": failed", errors.New(sanitize(err.Error())))
}

// sanitize keeps the first line of a driver error; driver errors name addresses, not passwords.
func sanitize(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
