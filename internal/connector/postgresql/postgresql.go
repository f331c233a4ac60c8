// Package postgresql rotates a PostgreSQL role's password. The resource record (pamDatabase)
// names the server, either as its url (postgres://host:port/database?sslmode=verify-full) or
// as a pamHostname field (host:port) with the "Database" and "SSL Mode" custom fields, and
// holds the admin login and password. The change is ALTER ROLE … WITH PASSWORD with a
// SCRAM-SHA-256 verifier computed here, so the clear password never reaches the server (nor
// its statement log); the check is a fresh login as the role.
package postgresql

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/text/secure/precis"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
)

// Field labels the connector reads from the records (the pamUser's custom fields override the
// resource's).
const (
	FieldHost         = "pamHostname"              // host:port, when the record has no url
	FieldDatabase     = "Database"                 // the database to connect to; default postgres
	FieldSSLMode      = "SSL Mode"                 // libpq sslmode; default verify-full
	FieldSelfRotation = "PostgreSQL Self Rotation" // "true": the admin may rotate its own role
)

// DefaultSSLMode is the TLS mode used when the record names none.
const DefaultSSLMode = "verify-full"

// ScramIterations is the PBKDF2 iteration count of the verifiers, PostgreSQL's default.
const ScramIterations = 4096

// ConnectTimeout bounds each login.
const ConnectTimeout = 15 * time.Second

// Connector rotates and verifies PostgreSQL role passwords.
type Connector struct{}

// New returns a Connector.
func New() *Connector { return &Connector{} }

// server is where the connector connects, from the records.
type server struct {
	host, port, database, sslmode string
}

func serverOf(a connector.Account) (server, error) {
	s := server{port: "5432", database: "postgres", sslmode: DefaultSSLMode}
	if a.Target.URL != "" {
		u, err := url.Parse(a.Target.URL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Hostname() == "" {
			return server{}, connector.Permanent("postgresql_bad_target", "the resource's url must be postgres://host[:port][/database][?sslmode=…]", nil)
		}
		if u.User != nil {
			return server{}, connector.Permanent("postgresql_bad_target", "the resource's url must not hold a user or password; use its login and password fields", nil)
		}
		s.host = u.Hostname()
		if p := u.Port(); p != "" {
			s.port = p
		}
		if db := strings.TrimPrefix(u.Path, "/"); db != "" {
			s.database = db
		}
		if m := u.Query().Get("sslmode"); m != "" {
			s.sslmode = m
		}
	} else if hp := a.Target.Fields[FieldHost]; hp != "" {
		h, p, err := net.SplitHostPort(hp)
		if err != nil {
			h, p = hp, ""
		}
		s.host = h
		if p != "" {
			s.port = p
		}
	} else {
		return server{}, connector.Permanent("postgresql_bad_target", "the resource record names no server (url or pamHostname)", nil)
	}
	if db := a.Target.Fields[FieldDatabase]; db != "" {
		s.database = db
	}
	if m := a.Target.Fields[FieldSSLMode]; m != "" {
		s.sslmode = m
	}
	switch s.sslmode {
	case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		return server{}, connector.Permanent("postgresql_bad_target", fmt.Sprintf("SSL Mode %q is not a libpq sslmode", s.sslmode), nil)
	}
	if n, err := strconv.Atoi(s.port); err != nil || n <= 0 || n > 65535 {
		return server{}, connector.Permanent("postgresql_bad_target", fmt.Sprintf("port %q is not a port number", s.port), nil)
	}
	return s, nil
}

// connect logs in as user with password. The password is set on the parsed configuration,
// never written into a connection string.
func connect(ctx context.Context, s server, user string, password secret.Secret) (*pgx.Conn, error) {
	kv := func(v string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'" }
	dsn := fmt.Sprintf("host=%s port=%s dbname=%s sslmode=%s user=%s connect_timeout=%d",
		kv(s.host), kv(s.port), kv(s.database), kv(s.sslmode), kv(user), int(ConnectTimeout/time.Second))
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, connector.Permanent("postgresql_bad_target", "the connection settings are not valid", err)
	}
	cfg.Password = password.Reveal()
	ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

// isAuthRefused reports whether err is the server refusing the login's password (28P01). Other
// authorization errors (28000: no pg_hba.conf entry, a role that may not log in) say nothing
// about the password and are not a rejection.
func isAuthRefused(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "28P01"
}

// classify turns a connection or statement error into a connector error; what is classified
// here never holds a password (pgx's errors name host, user and database only).
func classify(what string, err error) error {
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && strings.HasPrefix(pe.Code, "28"):
		return connector.Permanent("auth_failed", what+": the server refused the login", err)
	case errors.As(err, &pe) && (pe.Code == "42704" || pe.Code == "42501"):
		return connector.Permanent("postgresql_role", what+": "+pe.Message, nil)
	case errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "53") || strings.HasPrefix(pe.Code, "57") || pe.Code == "40001" || pe.Code == "40P01"):
		return connector.Transient("postgresql_unavailable", what+": the server is unavailable", err)
	case errors.As(err, &pe):
		return connector.Permanent("postgresql_error", what+": "+pe.Message+" ("+pe.Code+")", nil)
	default:
		// Connection refused, reset, DNS, timeouts, TLS handshakes: worth another try.
		return connector.Transient("connection", what+": cannot reach the server", err)
	}
}

func selfRotation(a connector.Account) bool {
	v := strings.ToLower(strings.TrimSpace(a.Target.Fields[FieldSelfRotation]))
	return v == "true" || v == "yes" || v == "1"
}

// isAdmin reports whether the role is the resource's admin login (role names are compared as
// they are: a quoted identifier is case-sensitive).
func isAdmin(a connector.Account) bool { return a.Login != "" && a.Login == a.Target.AdminLogin }

// IsSelf reports whether Rotate would change the admin's own role (connector.SelfRotator).
func (c *Connector) IsSelf(a connector.Account) bool { return isAdmin(a) && selfRotation(a) }

// Rotate sets the role's password to new through the admin login. Its errors wrap
// connector.ErrNotChanged when the statement was never sent (bad settings, the admin login
// refused or unreachable, a refused self-rotation).
func (c *Connector) Rotate(ctx context.Context, a connector.Account, old, new secret.Secret) error {
	s, err := serverOf(a)
	if err != nil {
		return connector.NotChanged(err)
	}
	if a.Login == "" {
		return connector.NotChanged(connector.Permanent("postgresql_no_role", "the pamUser record has no login", nil))
	}
	if a.Target.AdminLogin == "" || a.Target.AdminSecret.IsZero() {
		return connector.NotChanged(connector.Permanent("postgresql_no_admin", "the resource record has no admin login and password", nil))
	}
	if isAdmin(a) && !selfRotation(a) {
		return connector.NotChanged(connector.Permanent("postgresql_self_rotation",
			fmt.Sprintf("the role %q is the resource's admin login; set the %q custom field to true to let it rotate itself", a.Login, FieldSelfRotation), nil))
	}
	verifier, err := ScramVerifier(new)
	if err != nil {
		return connector.NotChanged(connector.Permanent("postgresql_verifier", "cannot compute the password verifier", err))
	}
	conn, err := connect(ctx, s, a.Target.AdminLogin, a.Target.AdminSecret)
	if err != nil {
		return connector.NotChanged(classify("admin login", err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The verifier is a literal: ALTER ROLE takes no parameters. It holds only base64 and
	// the separators $ : so quoting it cannot go wrong, and it is no password.
	stmt := "ALTER ROLE " + pgx.Identifier{a.Login}.Sanitize() + " WITH PASSWORD '" + verifier + "'"
	if _, err := conn.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			// The server answered with an error: the statement did not take effect.
			return connector.NotChanged(classify("change the password", err))
		}
		return classify("change the password", err)
	}
	return nil
}

// Verify logs in as the role with password: nil when the server accepts it, an error wrapping
// connector.ErrRejected when it refuses it.
func (c *Connector) Verify(ctx context.Context, a connector.Account, password secret.Secret) error {
	s, err := serverOf(a)
	if err != nil {
		return err
	}
	conn, err := connect(ctx, s, a.Login, password)
	if err != nil {
		if isAuthRefused(err) {
			return fmt.Errorf("log in as %q: %w", a.Login, connector.ErrRejected)
		}
		return classify("log in as the role", err)
	}
	return conn.Close(context.WithoutCancel(ctx))
}

// ScramVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores for password (RFC 5802,
// RFC 7677): SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, base64, with a random
// 16-byte salt. The password is SASLprep-normalised as clients do, or used as it is when it is
// not valid for SASLprep (as PostgreSQL does).
func ScramVerifier(password secret.Secret) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	return scramVerifier(password.Reveal(), salt, ScramIterations)
}

func scramVerifier(password string, salt []byte, iterations int) (string, error) {
	if p, err := precis.OpaqueString.String(password); err == nil {
		password = p
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("pbkdf2: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}
