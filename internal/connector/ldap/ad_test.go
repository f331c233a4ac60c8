package ldap

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"unicode/utf16"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/testenv/tlscert"
)

// Active Directory cannot run here: these tests check the encoding, the requests the connector
// builds, its refusal of plain LDAP, and, through fakeAD (a few lines of LDAP over TLS that
// keep unicodePwd as AD does), what goes over the wire.

// TestUnicodePwd checks the encoding against bytes written out by hand: the password in
// double quotes, UTF-16 little-endian, with surrogate pairs outside the BMP.
func TestUnicodePwd(t *testing.T) {
	for _, tc := range []struct {
		pw   string
		want []byte
	}{
		{"ab", []byte{'"', 0, 'a', 0, 'b', 0, '"', 0}},
		{`é"`, []byte{'"', 0, 0xe9, 0, '"', 0, '"', 0}},
		{"€", []byte{'"', 0, 0xac, 0x20, '"', 0}},
		{"😀", []byte{'"', 0, 0x3d, 0xd8, 0x00, 0xde, '"', 0}}, // U+1F600 = D83D DE00
	} {
		if got := UnicodePwd(secret.FromString(tc.pw)); !bytes.Equal(got, tc.want) {
			t.Errorf("UnicodePwd(%q) = % x, want % x", tc.pw, got, tc.want)
		}
	}
}

// TestUnicodePwdRequest checks the modify the connector sends: an admin replaces unicodePwd
// with the new value; the account itself deletes the old value and adds the new one.
func TestUnicodePwdRequest(t *testing.T) {
	old, new := secret.FromString("Old-AD-pw"), secret.FromString("New-AD-pw")
	dn := "CN=Alice,OU=Staff,DC=corp,DC=example"
	admin := unicodePwdRequest(dn, ModeAdmin, old, new)
	if admin.DN != dn || len(admin.Changes) != 1 || admin.Changes[0].Operation != ldap.ReplaceAttribute ||
		admin.Changes[0].Modification.Type != "unicodePwd" || !equalVals(admin.Changes[0].Modification.Vals, UnicodePwd(new)) {
		t.Fatalf("the admin's request: %+v, want a replace of unicodePwd with the new value", admin)
	}
	user := unicodePwdRequest(dn, ModeUser, old, new)
	if len(user.Changes) != 2 ||
		user.Changes[0].Operation != ldap.DeleteAttribute || !equalVals(user.Changes[0].Modification.Vals, UnicodePwd(old)) ||
		user.Changes[1].Operation != ldap.AddAttribute || !equalVals(user.Changes[1].Modification.Vals, UnicodePwd(new)) ||
		user.Changes[0].Modification.Type != "unicodePwd" || user.Changes[1].Modification.Type != "unicodePwd" {
		t.Fatalf("the user's request: %+v, want a delete of the old unicodePwd and an add of the new", user)
	}
}

func equalVals(vals []string, want []byte) bool { return len(vals) == 1 && vals[0] == string(want) }

// TestActiveDirectoryRefusesPlainLDAP proves an Active Directory record on ldap:// with StartTLS
// turned off is refused, permanently and as not changed, before any connection is made.
func TestActiveDirectoryRefusesPlainLDAP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	accepted := 0
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
			c.Close()
		}
	}()
	acct := connector.Account{Login: "CN=Alice,DC=corp,DC=example", Target: connector.Target{
		URL: "ldap://" + l.Addr().String(), AdminLogin: "CN=Admin,DC=corp,DC=example", AdminSecret: secret.FromString("adm-pw"),
		Fields: map[string]string{FieldDirectoryType: ActiveDirectory, FieldStartTLS: "false"}}}
	c := New(0)
	err = c.Rotate(context.Background(), acct, secret.FromString("old-pw"), secret.FromString("new-pw"))
	if codeOf(err) != "ldap_tls_required" || connector.IsTransient(err) || !connector.IsNotChanged(err) {
		t.Fatalf("rotate on AD over plain ldap://: %v, want permanent ldap_tls_required, not changed", err)
	}
	if err := c.Verify(context.Background(), acct, secret.FromString("new-pw")); codeOf(err) != "ldap_tls_required" {
		t.Fatalf("verify on AD over plain ldap://: %v, want ldap_tls_required", err)
	}
	// The same record with StartTLS left on (the default) is taken.
	delete(acct.Target.Fields, FieldStartTLS)
	if _, err := directoryOf(acct); err != nil {
		t.Fatalf("AD over ldap:// with StartTLS: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if accepted != 0 {
		t.Fatalf("%d connections reached the server", accepted)
	}
}

// TestActiveDirectoryOverTheWire rotates through fakeAD over ldaps://: as the admin (a replace
// of unicodePwd), then as the account (delete old, add new), and a repeat after the change.
func TestActiveDirectoryOverTheWire(t *testing.T) {
	ad := startFakeAD(t)
	const adminDN, userDN = "CN=Admin,CN=Users,DC=corp,DC=example", "CN=Alice,OU=Staff,DC=corp,DC=example"
	adminPW, oldPW := secret.FromString("Adm1n-AD-pw"), secret.FromString("Old-AD-pw-é")
	ad.set(adminDN, adminPW.Reveal())
	ad.set(userDN, oldPW.Reveal())
	acct := connector.Account{Login: userDN, Target: connector.Target{URL: ad.url, AdminLogin: adminDN, AdminSecret: adminPW,
		Fields: map[string]string{FieldDirectoryType: ActiveDirectory, FieldCACertificate: ad.caPEM}}}
	c := New(0)
	ctx := context.Background()
	newPW := secret.FromString("N3w-AD-pw-😀")
	if err := c.Rotate(ctx, acct, oldPW, newPW); err != nil {
		t.Fatalf("rotate as the admin: %v", err)
	}
	if ops := ad.modifies(); len(ops) != 1 || ops[0] != "replace unicodePwd="+newPW.Reveal() {
		t.Fatalf("the admin's modify: %q", ops)
	}
	if err := c.Verify(ctx, acct, newPW); err != nil {
		t.Fatalf("the new password: %v", err)
	}
	if err := c.Verify(ctx, acct, oldPW); !errors.Is(err, connector.ErrRejected) {
		t.Fatalf("the old password: %v, want ErrRejected", err)
	}

	acct.Target.Fields[FieldChangeMode] = ModeUser
	userPW := secret.FromString("N3w-AD-user-pw")
	if err := c.Rotate(ctx, acct, newPW, userPW); err != nil {
		t.Fatalf("rotate as the account: %v", err)
	}
	if ops := ad.modifies(); len(ops) != 2 || ops[1] != "delete unicodePwd="+newPW.Reveal()+"; add unicodePwd="+userPW.Reveal() {
		t.Fatalf("the account's modify: %q", ops)
	}
	if err := c.Rotate(ctx, acct, newPW, userPW); err != nil {
		t.Fatalf("rotate again after the change (a resumed run): %v", err)
	}
	if ops := ad.modifies(); len(ops) != 2 {
		t.Fatalf("the repeat sent another modify: %q", ops)
	}
	if err := c.Verify(ctx, acct, userPW); err != nil {
		t.Fatalf("the account's new password: %v", err)
	}
}

// TestActiveDirectoryBindCodes proves Verify reads AD's "data NNN" codes: a right password that
// has expired or must change is accepted, a locked account is neither accepted nor rejected,
// and 52e (bad password) is rejected.
func TestActiveDirectoryBindCodes(t *testing.T) {
	ad := startFakeAD(t)
	const userDN = "CN=Bob,DC=corp,DC=example"
	acct := connector.Account{Login: userDN, Target: connector.Target{URL: ad.url,
		Fields: map[string]string{FieldDirectoryType: ActiveDirectory, FieldCACertificate: ad.caPEM}}}
	pw := secret.FromString("Bob-pw")
	for _, tc := range []struct {
		data     string
		accepted bool
		rejected bool
	}{{"532", true, false}, {"773", true, false}, {"775", false, false}, {"533", false, false}, {"52e", false, true}} {
		ad.refuseWith(tc.data)
		err := New(0).Verify(context.Background(), acct, pw)
		switch {
		case tc.accepted && err != nil:
			t.Errorf("data %s: %v, want accepted", tc.data, err)
		case tc.rejected && !errors.Is(err, connector.ErrRejected):
			t.Errorf("data %s: %v, want ErrRejected", tc.data, err)
		case !tc.accepted && !tc.rejected && (err == nil || errors.Is(err, connector.ErrRejected) || connector.IsTransient(err)):
			t.Errorf("data %s: %v, want a permanent error that is no rejection", tc.data, err)
		}
	}
}

// TestClassify checks how directory results are classified.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		code      uint16
		text      string
		admin     bool
		want      string
		transient bool
	}{
		{ldap.LDAPResultInvalidCredentials, "", true, "admin_rejected", false},
		{ldap.LDAPResultInvalidCredentials, "", false, "auth_rejected", false},
		{ldap.LDAPResultConstraintViolation, "0000052D: Constraint violation", true, "password_policy", false},
		{ldap.LDAPResultUnwillingToPerform, "0000001F: SvcErr: problem 5003 (WILL_NOT_PERFORM)", true, "password_policy", false},
		{ldap.LDAPResultInsufficientAccessRights, "", true, "forbidden", false},
		{ldap.LDAPResultNoSuchObject, "", true, "no_such_account", false},
		{ldap.LDAPResultConfidentialityRequired, "", true, "ldap_tls_required", false},
		{ldap.LDAPResultBusy, "", true, "unavailable", true},
		{ldap.LDAPResultUnavailable, "", true, "unavailable", true},
		{ldap.ErrorNetwork, "dial tcp 127.0.0.1:1: connect: connection refused", true, "connection", true},
		{ldap.ErrorNetwork, "ldap: connection timed out", true, "timeout", true},
		{ldap.ErrorNetwork, "tls: failed to verify certificate: x509: certificate signed by unknown authority", true, "ldap_tls_untrusted", false},
		{ldap.LDAPResultOther, "", true, "ldap_error", false},
	} {
		err := classify(ldap.NewError(tc.code, errors.New(tc.text+" Secret-pw-in-text")), "do it", tc.admin, secret.FromString("Secret-pw-in-text"))
		if codeOf(err) != tc.want || connector.IsTransient(err) != tc.transient {
			t.Errorf("result %d %q: %v, want %s (transient %v)", tc.code, tc.text, err, tc.want, tc.transient)
		}
		if strings.Contains(err.Error(), "Secret-pw-in-text") {
			t.Errorf("result %d: the error holds the secret: %v", tc.code, err)
		}
	}
}

// fakeAD answers simple binds and unicodePwd modifies over ldaps:// as Active Directory does.
type fakeAD struct {
	url, caPEM string
	mu         sync.Mutex
	passwords  map[string]string // by lower-case DN
	ops        []string
	refuse     string // when set, every bind fails with this "data" code
	binds      int
}

func startFakeAD(t *testing.T) *fakeAD { return startFake(t, true) }

// startFake starts fakeAD on ldaps:// (tls) or on ldap://, where it refuses StartTLS.
func startFake(t *testing.T, useTLS bool) *fakeAD {
	t.Helper()
	certFile, keyFile := tlscert.WriteFiles(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	scheme, l := "ldap://", net.Listener(nil)
	if useTLS {
		scheme = "ldaps://"
		l, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ad := &fakeAD{url: scheme + l.Addr().String(), caPEM: string(mustRead(t, certFile)), passwords: map[string]string{}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go ad.serve(c)
		}
	}()
	return ad
}

func (ad *fakeAD) set(dn, pw string) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	ad.passwords[strings.ToLower(dn)] = pw
}

func (ad *fakeAD) refuseWith(data string) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	ad.refuse = data
}

func (ad *fakeAD) modifies() []string {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	return append([]string(nil), ad.ops...)
}

func (ad *fakeAD) serve(c net.Conn) {
	defer c.Close()
	bound := ""
	for {
		p, err := ber.ReadPacket(c)
		if err != nil || len(p.Children) < 2 {
			return
		}
		id, op := p.Children[0].Value, p.Children[1]
		switch op.Tag {
		case ldap.ApplicationBindRequest:
			dn, pw := op.Children[1].Data.String(), op.Children[2].Data.String()
			code, diag := ad.bind(dn, pw)
			if code == 0 {
				bound = dn
			}
			write(c, id, ldap.ApplicationBindResponse, code, diag)
		case ldap.ApplicationModifyRequest:
			code, diag := ad.modify(bound, op)
			write(c, id, ldap.ApplicationModifyResponse, code, diag)
		case ldap.ApplicationExtendedRequest: // StartTLS on a server without a certificate for it
			write(c, id, ldap.ApplicationExtendedResponse, ldap.LDAPResultUnavailable, "Could not initialize TLS")
		default:
			return // unbind, or anything AD would not be asked here
		}
	}
}

func (ad *fakeAD) bind(dn, pw string) (uint16, string) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	ad.binds++
	data := "52e"
	if ad.refuse != "" {
		data = ad.refuse
	} else if want, ok := ad.passwords[strings.ToLower(dn)]; ok && want == pw {
		return 0, ""
	}
	return ldap.LDAPResultInvalidCredentials, "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data " + data + ", v4563"
}

// modify applies a unicodePwd change as AD does: a replace needs a bound admin, a delete must
// name the current password, and every value must be a quoted UTF-16LE string.
func (ad *fakeAD) modify(bound string, op *ber.Packet) (uint16, string) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if bound == "" {
		return ldap.LDAPResultOperationsError, "000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed"
	}
	dn := strings.ToLower(op.Children[0].Data.String())
	var desc []string
	for _, ch := range op.Children[1].Children {
		kind, attr := ch.Children[0].Value.(int64), ch.Children[1]
		if attr.Children[0].Data.String() != "unicodePwd" || len(attr.Children[1].Children) != 1 {
			return ldap.LDAPResultUnwillingToPerform, "0000001F: SvcErr: DSID-031A12D2, problem 5003 (WILL_NOT_PERFORM), data 0"
		}
		pw, ok := decodeUnicodePwd(attr.Children[1].Children[0].Data.Bytes())
		if !ok {
			return ldap.LDAPResultConstraintViolation, "0000052D: Constraint violation - check the password policy, data 0"
		}
		switch kind {
		case ldap.ReplaceAttribute:
			desc = append(desc, "replace unicodePwd="+pw)
			ad.passwords[dn] = pw
		case ldap.DeleteAttribute:
			if ad.passwords[dn] != pw {
				return ldap.LDAPResultConstraintViolation, "00000056: AtrErr: DSID-03190F80, #1: 0: 00000056: DSID-03190F80, problem 1005 (CONSTRAINT_ATT_TYPE), data 0, Att 9005a (unicodePwd)"
			}
			desc = append(desc, "delete unicodePwd="+pw)
		case ldap.AddAttribute:
			desc = append(desc, "add unicodePwd="+pw)
			ad.passwords[dn] = pw
		}
	}
	ad.ops = append(ad.ops, strings.Join(desc, "; "))
	return 0, ""
}

// decodeUnicodePwd reads a quoted UTF-16LE value.
func decodeUnicodePwd(b []byte) (string, bool) {
	if len(b)%2 != 0 {
		return "", false
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	s := string(utf16.Decode(u))
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	return s[1 : len(s)-1], true
}

func write(c net.Conn, id any, tag ber.Tag, code uint16, diag string) {
	env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
	env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
	res := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "Response")
	res.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(code), "resultCode"))
	res.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	res.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, "diagnosticMessage"))
	env.AppendChild(res)
	_, _ = c.Write(env.Bytes())
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStartTLSRefused proves a directory that refuses StartTLS is a permanent error (retrying
// cannot help) that proves nothing changed, and that no bind was sent in clear instead.
func TestStartTLSRefused(t *testing.T) {
	ad := startFake(t, false)
	const adminDN = "CN=Admin,DC=corp,DC=example"
	ad.set(adminDN, "Adm1n-pw")
	acct := connector.Account{Login: "CN=Alice,DC=corp,DC=example", Target: connector.Target{URL: ad.url,
		AdminLogin: adminDN, AdminSecret: secret.FromString("Adm1n-pw"), Fields: map[string]string{}}}
	err := New(0).Rotate(context.Background(), acct, secret.FromString("old-pw"), secret.FromString("new-pw"))
	if codeOf(err) != "ldap_starttls_refused" || connector.IsTransient(err) || !connector.IsNotChanged(err) {
		t.Fatalf("rotate where StartTLS is refused: %v, want permanent ldap_starttls_refused, not changed", err)
	}
	if ops := ad.modifies(); len(ops) != 0 {
		t.Fatalf("modifies reached the server: %q", ops)
	}
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if ad.binds != 0 {
		t.Fatalf("%d binds were sent in clear after StartTLS was refused", ad.binds)
	}
}
