package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	_ "github.com/go-sql-driver/mysql" // the mysql driver the account's own logins use
	_ "github.com/jackc/pgx/v5/stdlib" // the pgx driver the role's own logins use

	"github.com/keyturn/keyturn/internal/connector"
	sshconn "github.com/keyturn/keyturn/internal/connector/ssh"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/mariadbtest"
	"github.com/keyturn/keyturn/internal/testenv/pgtest"
	"github.com/keyturn/keyturn/internal/testenv/slapdtest"
	"github.com/keyturn/keyturn/internal/testenv/sshdtest"
)

// TestConnectServerExamples runs the README's "Connect a target" scripts for databases and
// Linux accounts (examples/connect/postgresql.sh, mysql.sh, ssh.sh, ldap.sh), unchanged, against a
// real `keyturn server` and real servers from Debian's packages on loopback. Each check logs in
// to the target on its own: the vault's new password works there and the old one is refused.
func TestConnectServerExamples(t *testing.T) {
	t.Parallel()
	c := newCLIEnv(t)

	t.Run("postgresql", func(t *testing.T) {
		t.Parallel()
		superURL := pgtest.RequirePasswords(t)
		u, err := url.Parse(superURL)
		if err != nil {
			t.Fatal(err)
		}
		n := fmt.Sprintf("%d_%d", os.Getpid(), time.Now().UnixNano())
		admin, adminPW, role, initial := "ex_admin_"+n, "Example-admin-Pw1", "ex_app_"+n, "Example-initial-Pw1"
		db, err := sql.Open("pgx", superURL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		// The admin is not a superuser: CREATEROLE, and ADMIN on the role it rotates.
		for _, q := range []string{
			"CREATE ROLE " + admin + " WITH LOGIN CREATEROLE PASSWORD '" + adminPW + "'",
			"CREATE ROLE " + role + " WITH LOGIN PASSWORD '" + initial + "'",
			"GRANT " + role + " TO " + admin + " WITH ADMIN OPTION",
		} {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		target := "postgres://" + u.Host + "/postgres?sslmode=disable"
		pgLogsIn := func(password string) bool {
			conn, err := sql.Open("pgx", (&url.URL{Scheme: "postgres", User: url.UserPassword(role, password),
				Host: u.Host, Path: "/postgres", RawQuery: "sslmode=disable"}).String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			return conn.Ping() == nil
		}
		if !pgLogsIn(initial) {
			t.Fatal("the role's initial password does not log in: the check proves nothing")
		}
		c.mustRun(t, c.with("PG_URL="+target, "PG_ADMIN="+admin, "PG_ADMIN_PASSWORD_FILE="+c.secretFile("pg-admin", adminPW),
			"PG_ROLE="+role, "PG_PASSWORD_FILE="+c.secretFile("pg-role", initial)), "postgresql.sh")
		v := c.pamUser(t, "PostgreSQL role "+role)
		v.rotated(t, initial)
		if !pgLogsIn(v.Password) {
			t.Error("PostgreSQL refuses the vault's new password")
		}
		if pgLogsIn(initial) {
			t.Error("PostgreSQL still accepts the old password")
		}
	})

	t.Run("mysql", func(t *testing.T) {
		t.Parallel()
		srv := mariadbtest.Start(t)
		n := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
		admin, adminPW, login, initial := "ex_admin_"+n, "Example-admin-Pw1", "ex_app_"+n, "Example-initial-Pw1"
		// The account is 'login'@'127.0.0.1', not '%': the script passes the host on.
		for _, q := range []string{
			"CREATE USER '" + admin + "'@'%' IDENTIFIED BY '" + adminPW + "'",
			"GRANT CREATE USER ON *.* TO '" + admin + "'@'%'",
			"CREATE USER '" + login + "'@'127.0.0.1' IDENTIFIED BY '" + initial + "'",
		} {
			if _, err := srv.Root(t).Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		myLogsIn := func(password string) bool {
			conn, err := sql.Open("mysql", login+":"+password+"@tcp("+srv.Addr()+")/")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			return conn.Ping() == nil
		}
		if !myLogsIn(initial) {
			t.Fatal("the account's initial password does not log in: the check proves nothing")
		}
		c.mustRun(t, c.with("MYSQL_URL=mysql://"+srv.Addr()+"?tls=false", "MYSQL_ADMIN="+admin,
			"MYSQL_ADMIN_PASSWORD_FILE="+c.secretFile("mysql-admin", adminPW), "MYSQL_USER="+login,
			"MYSQL_ACCOUNT_HOST=127.0.0.1", "MYSQL_PASSWORD_FILE="+c.secretFile("mysql-user", initial)), "mysql.sh")
		v := c.pamUser(t, "MySQL account "+login+"@127.0.0.1")
		v.rotated(t, initial)
		if !myLogsIn(v.Password) {
			t.Error("MariaDB refuses the vault's new password")
		}
		if myLogsIn(initial) {
			t.Error("MariaDB still accepts the old password")
		}
	})

	t.Run("ssh", func(t *testing.T) {
		t.Parallel()
		srv := sshdtest.Start(t)
		const initial = "Example-initial-ssh-Pw1"
		login := sshdtest.User(t, initial)
		acct := connector.Account{Login: login, Target: connector.Target{URL: srv.URL(),
			Fields: map[string]string{sshconn.HostKeyField: srv.HostKey}}}
		sshLogsIn := func(password string) bool {
			return sshconn.New(0).Verify(context.Background(), acct, secret.FromString(password)) == nil
		}
		if !sshLogsIn(initial) {
			t.Fatal("the account's initial password does not log in: the check proves nothing")
		}
		keyFile := filepath.Join(c.dir, "ssh-admin-key")
		if err := os.WriteFile(keyFile, srv.AdminKey, 0o600); err != nil {
			t.Fatal(err)
		}
		c.mustRun(t, c.with("SSH_URL="+srv.URL(), "SSH_HOST_KEY="+srv.HostKey, "SSH_ADMIN=root",
			"SSH_ADMIN_KEY_FILE="+keyFile, "SSH_LOGIN="+login, "SSH_PASSWORD_FILE="+c.secretFile("ssh-user", initial)), "ssh.sh")
		v := c.pamUser(t, "Linux account "+login)
		v.rotated(t, initial)
		if !sshLogsIn(v.Password) {
			t.Error("sshd refuses the vault's new password")
		}
		if sshLogsIn(initial) {
			t.Error("sshd still accepts the old password")
		}
	})

	t.Run("ldap", func(t *testing.T) {
		t.Parallel()
		srv := slapdtest.Start(t)
		const adminPW, initial = "Example-admin-Pw1", "Example-initial-ldap-Pw1"
		adminDN := srv.AddAdmin(t, adminPW)
		_, dn := srv.AddUser(t, initial)
		binds := func(password string) bool {
			conn, err := ldap.DialURL(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.StartTLS(srv.TLSConfig()); err != nil {
				t.Fatal(err)
			}
			return conn.Bind(dn, password) == nil
		}
		if !binds(initial) {
			t.Fatal("the account's initial password does not bind: the check proves nothing")
		}
		ca := c.secretFile("ldap-ca.pem", srv.CACert)
		c.mustRun(t, c.with("LDAP_URL="+srv.URL(), "LDAP_CA_FILE="+ca, "LDAP_ADMIN_DN="+adminDN,
			"LDAP_ADMIN_PASSWORD_FILE="+c.secretFile("ldap-admin", adminPW), "LDAP_USER_DN="+dn,
			"LDAP_PASSWORD_FILE="+c.secretFile("ldap-user", initial)), "ldap.sh")
		v := c.pamUser(t, "Directory account "+dn)
		v.rotated(t, initial)
		if !binds(v.Password) {
			t.Error("slapd refuses the vault's new password")
		}
		if binds(initial) {
			t.Error("slapd still accepts the old password")
		}
		if stored := srv.UserPassword(t, dn); len(stored) != 1 || !strings.HasPrefix(stored[0], "{SSHA}") {
			t.Errorf("slapd stores %q, want one {SSHA} hash: the password went in clear", stored)
		}
	})
}
