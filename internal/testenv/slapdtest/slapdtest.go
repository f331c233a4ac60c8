// Package slapdtest starts a real OpenLDAP server for tests, from Debian's slapd package
// (/usr/sbin/slapd, schemas in /etc/ldap/schema): one server per call, in the test's temporary
// directory, listening on loopback for ldap:// (StartTLS offered) and ldaps:// on free ports,
// with a self-signed certificate for 127.0.0.1, an mdb database for dc=keyturn,dc=test, no
// password policy overlay, and the server's own password hashing ({SSHA}, its default). slapd
// runs in the foreground at log level "stats" (every connection, bind and operation, with DNs
// and result codes) into a file the tests can read.
//
// The server is killed when the test ends, and by the kernel if the test binary dies first
// (its parent-death signal is SIGKILL). Without slapd, tests are skipped, except in CI
// (CI=true), where that is a failure.
package slapdtest

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/keyturn/keyturn/internal/testenv/tlscert"
)

// Paths of Debian's slapd package.
const (
	Slapd      = "/usr/sbin/slapd"
	SchemaDir  = "/etc/ldap/schema"
	ModulePath = "/usr/lib/ldap"
)

// The directory tree every server holds.
const (
	Suffix   = "dc=keyturn,dc=test"
	RootDN   = "cn=root," + Suffix   // slapd's rootdn: no entry, no access control
	PeopleDN = "ou=people," + Suffix // where AddUser puts accounts
)

// Server is a running slapd.
type Server struct {
	Dir          string // temporary directory holding the configuration, database and log
	Host         string // 127.0.0.1
	Port         int    // ldap:// (StartTLS offered)
	TLSPort      int    // ldaps://
	CACert       string // the server's self-signed certificate (PEM): trust it to trust the server
	LogPath      string // slapd's log at level stats
	RootPassword string // RootDN's password
}

// URL returns ldap://host:port.
func (s *Server) URL() string { return "ldap://" + net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// LDAPSURL returns ldaps://host:tlsport.
func (s *Server) LDAPSURL() string {
	return "ldaps://" + net.JoinHostPort(s.Host, strconv.Itoa(s.TLSPort))
}

// Log returns what slapd logged so far.
func (s *Server) Log(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		tb.Fatalf("slapdtest: %v", err)
	}
	return string(b)
}

func unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("slapdtest: "+format, args...)
	}
	tb.Skipf("slapdtest: "+format, args...)
}

// Start starts a slapd for this test, holding the suffix entry and ou=people; it is stopped
// when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, cmd, exited := start(tb)
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	s.addBase(tb)
	return s
}

// start writes the configuration and runs slapd until it listens; exited is closed once slapd
// has exited and been reaped.
func start(tb testing.TB) (s *Server, cmd *exec.Cmd, exited <-chan struct{}) {
	tb.Helper()
	if _, err := os.Stat(Slapd); err != nil {
		unavailable(tb, "%s is missing (install slapd)", Slapd)
	}
	if _, err := os.Stat(filepath.Join(SchemaDir, "core.schema")); err != nil {
		unavailable(tb, "%s/core.schema is missing (install slapd)", SchemaDir)
	}
	dir := tb.TempDir()
	certFile, keyFile := tlscert.WriteFiles(tb, dir)
	caPEM, err := os.ReadFile(certFile)
	if err != nil {
		tb.Fatalf("slapdtest: %v", err)
	}
	s = &Server{Dir: dir, Host: "127.0.0.1", CACert: string(caPEM), LogPath: filepath.Join(dir, "slapd.log"),
		RootPassword: "root-" + randomHex(tb, 12)}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		tb.Fatalf("slapdtest: %v", err)
	}
	conf := filepath.Join(dir, "slapd.conf")
	writeFile(tb, conf, s.config(certFile, keyFile))
	for attempt := 0; ; attempt++ {
		s.Port, s.TLSPort = freePort(tb), freePort(tb)
		logf, err := os.Create(s.LogPath)
		if err != nil {
			tb.Fatalf("slapdtest: %v", err)
		}
		// -d keeps slapd in the foreground, logging to stderr at the given level.
		cmd = exec.Command(Slapd, "-f", conf, "-d", "stats",
			"-h", s.URL()+"/ "+s.LDAPSURL()+"/")
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logf.Close()
			tb.Fatalf("slapdtest: start slapd: %v", err)
		}
		logf.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		if s.waitListening(done) {
			return s, cmd, done
		}
		_ = cmd.Process.Kill()
		<-done
		if attempt == 2 {
			tb.Fatalf("slapdtest: slapd did not start:\n%s", s.Log(tb))
		}
	}
}

// config is slapd.conf: the schemas inetOrgPerson needs, TLS, one mdb database whose rootdn
// has a salted hash as its password, and access control under which a "cn=pwadmin-…" entry
// may write any userPassword, an account may change its own, and nobody may read one.
func (s *Server) config(certFile, keyFile string) string {
	var b strings.Builder
	for _, schema := range []string{"core", "cosine", "inetorgperson"} {
		fmt.Fprintf(&b, "include %s\n", filepath.Join(SchemaDir, schema+".schema"))
	}
	fmt.Fprintf(&b, "pidfile %s\nargsfile %s\n", filepath.Join(s.Dir, "slapd.pid"), filepath.Join(s.Dir, "slapd.args"))
	if _, err := os.Stat(filepath.Join(ModulePath, "back_mdb.so")); err == nil {
		fmt.Fprintf(&b, "modulepath %s\nmoduleload back_mdb\n", ModulePath)
	}
	fmt.Fprintf(&b, "TLSCertificateFile %s\nTLSCertificateKeyFile %s\n", certFile, keyFile)
	fmt.Fprintf(&b, "database mdb\nsuffix %q\nrootdn %q\nrootpw %s\ndirectory %s\nmaxsize 67108864\n",
		Suffix, RootDN, SSHA(s.RootPassword), filepath.Join(s.Dir, "data"))
	fmt.Fprintf(&b, "access to attrs=userPassword\n"+
		"  by dn.regex=\"^cn=pwadmin-[^,]+,%s$\" write\n"+
		"  by self write\n"+
		"  by anonymous auth\n"+
		"  by * none\n"+
		"access to *\n"+
		"  by * read\n", Suffix)
	return b.String()
}

// SSHA is the {SSHA} userPassword value of password (salted SHA-1, OpenLDAP's default scheme).
func SSHA(password string) string {
	salt := make([]byte, 8)
	_, _ = rand.Read(salt)
	h := sha1.New()
	h.Write([]byte(password))
	h.Write(salt)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...))
}

// waitListening waits until both ports accept connections, or slapd exits.
func (s *Server) waitListening(exited <-chan struct{}) bool {
	for range 1000 {
		select {
		case <-exited:
			return false
		default:
		}
		if dialable(s.Host, s.Port) && dialable(s.Host, s.TLSPort) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func dialable(host string, port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TLSConfig trusts the server's certificate.
func (s *Server) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(s.CACert))
	return &tls.Config{RootCAs: pool, ServerName: s.Host, MinVersion: tls.VersionTLS12}
}

// Root returns a connection bound as RootDN, closed when the test ends.
func (s *Server) Root(tb testing.TB) *ldap.Conn {
	tb.Helper()
	c, err := ldap.DialURL(s.URL())
	if err != nil {
		tb.Fatalf("slapdtest: dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	if err := c.Bind(RootDN, s.RootPassword); err != nil {
		tb.Fatalf("slapdtest: bind as root: %v", err)
	}
	return c
}

func (s *Server) addBase(tb testing.TB) {
	tb.Helper()
	root := s.Root(tb)
	base := ldap.NewAddRequest(Suffix, nil)
	base.Attribute("objectClass", []string{"dcObject", "organization"})
	base.Attribute("dc", []string{"keyturn"})
	base.Attribute("o", []string{"keyturn"})
	people := ldap.NewAddRequest(PeopleDN, nil)
	people.Attribute("objectClass", []string{"organizationalUnit"})
	people.Attribute("ou", []string{"people"})
	for _, req := range []*ldap.AddRequest{base, people} {
		if err := root.Add(req); err != nil {
			tb.Fatalf("slapdtest: add %s: %v", req.DN, err)
		}
	}
}

// AddUser adds an inetOrgPerson uid=kt-<random>,ou=people with password, set through the
// Password Modify operation as RootDN (so the server stores it hashed), and returns its uid
// and DN.
func (s *Server) AddUser(tb testing.TB, password string) (uid, dn string) {
	tb.Helper()
	uid = "kt-" + randomHex(tb, 5)
	dn = "uid=" + uid + "," + PeopleDN
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"inetOrgPerson"})
	req.Attribute("uid", []string{uid})
	req.Attribute("cn", []string{uid})
	req.Attribute("sn", []string{uid})
	s.add(tb, req, password)
	return uid, dn
}

// AddAdmin adds cn=pwadmin-<random>, which may write every userPassword, with password, and
// returns its DN.
func (s *Server) AddAdmin(tb testing.TB, password string) (dn string) {
	tb.Helper()
	cn := "pwadmin-" + randomHex(tb, 5)
	dn = "cn=" + cn + "," + Suffix
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"person"})
	req.Attribute("cn", []string{cn})
	req.Attribute("sn", []string{"password admin"})
	s.add(tb, req, password)
	return dn
}

func (s *Server) add(tb testing.TB, req *ldap.AddRequest, password string) {
	tb.Helper()
	root := s.Root(tb)
	if err := root.Add(req); err != nil {
		tb.Fatalf("slapdtest: add %s: %v", req.DN, err)
	}
	if _, err := root.PasswordModify(ldap.NewPasswordModifyRequest(req.DN, "", password)); err != nil {
		tb.Fatalf("slapdtest: set the password of %s: %v", req.DN, err)
	}
}

// UserPassword returns the userPassword values the server stores for dn, read as RootDN.
func (s *Server) UserPassword(tb testing.TB, dn string) []string {
	tb.Helper()
	res, err := s.Root(tb).Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"userPassword"}, nil))
	if err != nil || len(res.Entries) != 1 {
		tb.Fatalf("slapdtest: read %s: %v", dn, err)
	}
	return res.Entries[0].GetAttributeValues("userPassword")
}

func randomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("slapdtest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatalf("slapdtest: %v", err)
	}
}
