// Package mysql rotates the password of a MariaDB or MySQL account. The resource record's url
// (mysql://host:port, with ?tls=true|skip-verify|preferred|false; default true) names the
// server and its login and password are the admin's; the account's host part comes from the
// record's "MySQL Account Host" field (default '%'). The change is ALTER USER sent as the admin
// with the new password's mysql_native_password hash, so that the clear password never reaches
// the server (nor its general log); the check is a fresh login as the account.
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
	self := strings.EqualFold(a.Login, a.Target.AdminLogin)
	if self {
		if !strings.EqualFold(strings.TrimSpace(a.Target.Fields[SelfRotationField]), "true") {
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
	stmt := alterStatement(version, self)
	args := []any{a.Login, host, NativeHash(new)}
	if self {
		args = args[2:]
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

// alterStatement sets a mysql_native_password hash: MariaDB takes ALTER USER … IDENTIFIED BY
// PASSWORD, MySQL (which dropped it) IDENTIFIED WITH … AS. For the login's own account MariaDB
// 10.11 accepts ALTER USER CURRENT_USER() but leaves the password as it was, so there it is
// SET PASSWORD with the hash (a quoted string without PASSWORD() is taken as the hash).
func alterStatement(version string, self bool) string {
	mariadb := strings.Contains(strings.ToLower(version), "mariadb")
	switch {
	case mariadb && self:
		return "SET PASSWORD = ?"
	case mariadb:
		return "ALTER USER ?@? IDENTIFIED BY PASSWORD ?"
	case self:
		return "ALTER USER CURRENT_USER() IDENTIFIED WITH mysql_native_password AS ?"
	default:
		return "ALTER USER ?@? IDENTIFIED WITH mysql_native_password AS ?"
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
