package mysql

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
)

// TestParseVersion reads the forms VERSION() takes on MariaDB and MySQL builds.
func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in           string
		mariadb      bool
		major, minor int
	}{
		{"10.11.6-MariaDB-0+deb12u1", true, 10, 11},
		{"11.4.2-MariaDB", true, 11, 4},
		{"5.5.5-10.6.16-MariaDB", true, 5, 5},
		{"8.4.3", false, 8, 4},
		{"9.1.0-commercial", false, 9, 1},
		{"8.0.36-0ubuntu0.22.04.1", false, 8, 0},
		{"5.7.44-log", false, 5, 7},
		{"8.0.32-24", false, 8, 0},
		{"", false, 0, 0},
		{"v8.4", false, 0, 0},
		{"8", false, 0, 0},
	} {
		got := parseVersion(tc.in)
		if got.mariadb != tc.mariadb || got.major != tc.major || got.minor != tc.minor {
			t.Errorf("parseVersion(%q) = %+v, want mariadb=%v %d.%d", tc.in, got, tc.mariadb, tc.major, tc.minor)
		}
	}
}

// TestChooseHash proves the plugin chosen per server and account: MariaDB always native;
// MySQL 8.4 and later always caching_sha2; older MySQL keeps an account already on
// caching_sha2 there and otherwise stays native, as before.
func TestChooseHash(t *testing.T) {
	for _, tc := range []struct {
		version, plugin string
		want            hashKind
	}{
		{"10.11.6-MariaDB-0+deb12u1", "", nativeHash},
		{"10.11.6-MariaDB-0+deb12u1", pluginCachingSHA2, nativeHash}, // MariaDB has no such plugin
		{"11.4.2-MariaDB", "ed25519", nativeHash},
		{"5.7.44-log", "", nativeHash},
		{"5.7.44", pluginNative, nativeHash},
		{"8.0.36", "", nativeHash},
		{"8.0.36", pluginNative, nativeHash},
		{"8.0.36-0ubuntu0.22.04.1", pluginCachingSHA2, cachingSHA2Hash},
		{"8.0.11", pluginCachingSHA2, cachingSHA2Hash},
		{"8.3.0", "", nativeHash},
		{"8.4.0", "", cachingSHA2Hash},
		{"8.4.3", pluginNative, cachingSHA2Hash},
		{"8.4.3", pluginCachingSHA2, cachingSHA2Hash},
		{"9.0.1", "", cachingSHA2Hash},
		{"9.1.0-commercial", pluginNative, cachingSHA2Hash},
		{"10.0.0", "", cachingSHA2Hash}, // a MySQL 10: not MariaDB
		{"unparsable", "", nativeHash},
		{"unparsable", pluginCachingSHA2, cachingSHA2Hash},
	} {
		if got := chooseHash(parseVersion(tc.version), tc.plugin); got != tc.want {
			t.Errorf("chooseHash(%q, %q) = %v, want %v", tc.version, tc.plugin, got, tc.want)
		}
	}
}

var (
	nativeHashRE = regexp.MustCompile(`^\*[0-9A-F]{40}$`)
	sha2HashRE   = regexp.MustCompile(`^\$A\$005\$[./0-9A-Za-z]{63}$`)
)

// TestChangeStatement proves the statement and arguments sent per server, plugin and self:
// the plugin named in the text, a hash of the right form as the last argument, the hash
// being that of the new password, and the password nowhere in the text or the arguments.
func TestChangeStatement(t *testing.T) {
	pw := secret.FromString("Cl3ar'pw\\must-not-be-sent-9f1e")
	for _, tc := range []struct {
		version, plugin string
		self            bool
		stmt            string
		hash            *regexp.Regexp
	}{
		{"10.11.6-MariaDB-0+deb12u1", "", false, "ALTER USER ?@? IDENTIFIED BY PASSWORD ?", nativeHashRE},
		{"10.11.6-MariaDB-0+deb12u1", "", true, "SET PASSWORD = ?", nativeHashRE},
		{"8.0.36", pluginNative, false, "ALTER USER ?@? IDENTIFIED WITH mysql_native_password AS ?", nativeHashRE},
		{"8.0.36", pluginNative, true, "ALTER USER CURRENT_USER() IDENTIFIED WITH mysql_native_password AS ?", nativeHashRE},
		{"8.0.36", pluginCachingSHA2, false, "ALTER USER ?@? IDENTIFIED WITH caching_sha2_password AS ?", sha2HashRE},
		{"8.4.3", "", false, "ALTER USER ?@? IDENTIFIED WITH caching_sha2_password AS ?", sha2HashRE},
		{"9.1.0", pluginNative, false, "ALTER USER ?@? IDENTIFIED WITH caching_sha2_password AS ?", sha2HashRE},
		{"9.1.0", "", true, "ALTER USER CURRENT_USER() IDENTIFIED WITH caching_sha2_password AS ?", sha2HashRE},
	} {
		stmt, args, err := changeStatement(parseVersion(tc.version), tc.plugin, tc.self, "kt_user", "10.0.0.%", pw)
		if err != nil {
			t.Fatalf("%s %q self=%v: %v", tc.version, tc.plugin, tc.self, err)
		}
		if stmt != tc.stmt {
			t.Errorf("%s %q self=%v: statement %q, want %q", tc.version, tc.plugin, tc.self, stmt, tc.stmt)
		}
		if want := strings.Count(stmt, "?"); len(args) != want {
			t.Fatalf("%s: %d arguments for %d placeholders", stmt, len(args), want)
		}
		if !tc.self && (args[0] != "kt_user" || args[1] != "10.0.0.%") {
			t.Errorf("%s: account arguments %v", stmt, args[:2])
		}
		hash, _ := args[len(args)-1].(string)
		if !tc.hash.MatchString(hash) {
			t.Errorf("%s: hash %q is not of the form %s", stmt, hash, tc.hash)
		}
		switch tc.hash {
		case nativeHashRE:
			if hash != NativeHash(pw) {
				t.Errorf("%s: hash %s is not the password's", stmt, hash)
			}
		case sha2HashRE:
			if cachingSHA2AuthString(pw.Bytes(), []byte(hash[7:27])) != hash {
				t.Errorf("%s: hash %s is not the password's", stmt, hash)
			}
		}
		sent := stmt
		for _, a := range args {
			sent += "\x00" + a.(string)
		}
		for _, part := range []string{pw.Reveal(), "must-not-be-sent", "Cl3ar"} {
			if strings.Contains(sent, part) {
				t.Errorf("%s: the statement or its arguments hold %q", stmt, part)
			}
		}
	}
}

// TestChangeStatementLongPassword proves a password caching_sha2_password could never check
// (over 256 bytes) is refused before anything is sent, where native takes it.
func TestChangeStatementLongPassword(t *testing.T) {
	long := secret.FromString(strings.Repeat("x", MaxCachingSHA2Password+1))
	_, _, err := changeStatement(parseVersion("8.4.3"), "", false, "u", "%", long)
	var ce *connector.Error
	if !errors.As(err, &ce) || ce.Code != "password_policy" || ce.Transient {
		t.Fatalf("a %d-byte password on MySQL 8.4: %v, want permanent password_policy", MaxCachingSHA2Password+1, err)
	}
	if _, _, err := changeStatement(parseVersion("8.4.3"), "", false, "u", "%", secret.FromString(strings.Repeat("x", MaxCachingSHA2Password))); err != nil {
		t.Fatalf("a %d-byte password on MySQL 8.4: %v", MaxCachingSHA2Password, err)
	}
	if _, _, err := changeStatement(parseVersion("10.11.6-MariaDB"), "", false, "u", "%", long); err != nil {
		t.Fatalf("a long password on MariaDB: %v", err)
	}
}
