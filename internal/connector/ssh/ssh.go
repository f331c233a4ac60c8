// Package ssh rotates a Linux account's password over SSH: an admin login runs chpasswd with
// "user:password" fed on the session's stdin (never in the command line), and a fresh SSH login
// as the user with the password verifies it. The server's host key must be pinned in the
// resource record; trust on first use is refused.
package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	xssh "golang.org/x/crypto/ssh"

	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/secret"
)

// Labels of the resource record's custom fields the connector reads.
const (
	// HostKeyField holds the server's public host key(s), one per line, in authorized_keys
	// ("ssh-ed25519 AAAA… comment") or known_hosts ("host ssh-ed25519 AAAA…") format.
	HostKeyField = "SSH Host Key"
	// PrivateKeyField is a secret custom field holding the admin's private key (OpenSSH or
	// PEM, unencrypted); when set, the admin logs in with it instead of the record's password.
	PrivateKeyField = "SSH Private Key"
	// SelfRotationField set to "true" allows rotating the admin's own account.
	SelfRotationField = "SSH Self Rotation"
)

// DefaultPort is used when the resource's url names no port.
const DefaultPort = "22"

// ChpasswdCommand is the command a root admin runs; it is fixed and never holds a secret.
const ChpasswdCommand = "chpasswd"

// sudoCommand is run by a non-root admin with a password: sudo reads that password from the
// first line of stdin (-S), always (-k), without a prompt, then chpasswd reads the next line.
const sudoCommand = "sudo -S -k -p '' chpasswd"

// sudoNoPasswordCommand is run by a non-root admin logged in with a key (sudo must not ask).
const sudoNoPasswordCommand = "sudo -n chpasswd"

// errHostKeyMismatch is returned by the host key check when the server's key is not pinned.
var errHostKeyMismatch = errors.New("the server's host key is not the one pinned in the resource record")

// Connector changes and verifies Linux account passwords over SSH.
type Connector struct {
	timeout time.Duration
}

// New returns a Connector; timeout bounds each dial and handshake (0 means 15 s).
func New(timeout time.Duration) *Connector {
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	return &Connector{timeout: timeout}
}

// Command returns the command the admin session runs for the account's target: chpasswd for
// root, sudo chpasswd otherwise. It never holds a secret.
func Command(t connector.Target) string {
	switch {
	case t.AdminLogin == "root":
		return ChpasswdCommand
	case t.Secrets[PrivateKeyField].IsZero() && !t.AdminSecret.IsZero():
		return sudoCommand
	default:
		return sudoNoPasswordCommand
	}
}

// Rotate sets the account's password to new through the admin login. old is not needed: the
// admin resets the password, so rotating again with the same new password is harmless.
func (c *Connector) Rotate(ctx context.Context, acct connector.Account, _, new secret.Secret) error {
	if err := checkLogin(acct); err != nil {
		return connector.NotChanged(err)
	}
	if new.IsZero() || bytes.ContainsAny(new.Bytes(), "\n\r\x00") {
		return connector.NotChanged(connector.Permanent("password_policy",
			"the new password is empty or holds a line break or NUL, which chpasswd cannot take", nil))
	}
	auth, err := adminAuth(acct.Target)
	if err != nil {
		return connector.NotChanged(err)
	}
	client, err := c.dial(ctx, acct.Target, acct.Target.AdminLogin, auth, "admin")
	if err != nil {
		return connector.NotChanged(err)
	}
	defer client.Close()

	sess, err := client.NewSession()
	if err != nil {
		return connector.NotChanged(connector.Transient("ssh_session", "could not open an SSH session as the admin", err))
	}
	defer sess.Close()
	var stdin bytes.Buffer
	cmd := Command(acct.Target)
	if cmd == sudoCommand {
		stdin.Write(acct.Target.AdminSecret.Bytes())
		stdin.WriteByte('\n')
	}
	stdin.WriteString(acct.Login)
	stdin.WriteByte(':')
	stdin.Write(new.Bytes())
	stdin.WriteByte('\n')
	defer clear(stdin.Bytes()[:stdin.Cap()])
	sess.Stdin = &stdin
	var stderr bytes.Buffer
	sess.Stderr = &stderr

	// A server that never answers must not hold the rotation forever.
	rctx, cancel := context.WithTimeout(ctx, 2*c.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	select {
	case <-rctx.Done():
		_ = client.Close()
		return connector.Transient("ssh_timeout", fmt.Sprintf("%s did not finish", cmd), rctx.Err())
	case err = <-done:
	}
	if err == nil {
		return nil
	}
	msg := scrub(stderr.String(), new, acct.Target.AdminSecret)
	var exit *xssh.ExitError
	if errors.As(err, &exit) {
		return connector.Permanent("chpasswd_failed",
			fmt.Sprintf("%s exited with status %d: %s", cmd, exit.ExitStatus(), msg), nil)
	}
	return connector.Transient("ssh_session", fmt.Sprintf("%s did not report its result", cmd), err)
}

// Verify logs in as the account with password over a fresh SSH connection.
func (c *Connector) Verify(ctx context.Context, acct connector.Account, password secret.Secret) error {
	if acct.Login == "" {
		return connector.Permanent("ssh_no_login", "the pamUser record has no login", nil)
	}
	pw := password.Reveal()
	auth := []xssh.AuthMethod{
		xssh.Password(pw),
		xssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i := range answers {
				answers[i] = pw
			}
			return answers, nil
		}),
	}
	client, err := c.dial(ctx, acct.Target, acct.Login, auth, "user")
	if err != nil {
		var ce *connector.Error
		if errors.As(err, &ce) && ce.Code == "ssh_auth_refused" {
			return fmt.Errorf("ssh login as %s: %w", acct.Login, connector.ErrRejected)
		}
		return err
	}
	return client.Close()
}

// checkLogin refuses logins chpasswd would misread and, unless allowed, the admin's own account.
func checkLogin(acct connector.Account) error {
	if acct.Login == "" || strings.ContainsAny(acct.Login, ":\n\r\x00") {
		return connector.Permanent("ssh_bad_login", fmt.Sprintf("the login %q cannot be given to chpasswd", acct.Login), nil)
	}
	if acct.Login == acct.Target.AdminLogin && !strings.EqualFold(acct.Target.Fields[SelfRotationField], "true") {
		return connector.Permanent("ssh_self_rotation",
			fmt.Sprintf("the account %s is the admin login itself; set %q to true on the resource to allow it", acct.Login, SelfRotationField), nil)
	}
	return nil
}

func adminAuth(t connector.Target) ([]xssh.AuthMethod, error) {
	if t.AdminLogin == "" {
		return nil, connector.Permanent("ssh_no_admin", "the resource record has no admin login", nil)
	}
	if key := t.Secrets[PrivateKeyField]; !key.IsZero() {
		signer, err := xssh.ParsePrivateKey(key.Bytes())
		if err != nil {
			// The parser's error may quote the key's text: leave it out.
			return nil, connector.Permanent("ssh_bad_private_key",
				fmt.Sprintf("the %q field is not an unencrypted private key", PrivateKeyField), nil)
		}
		return []xssh.AuthMethod{xssh.PublicKeys(signer)}, nil
	}
	if t.AdminSecret.IsZero() {
		return nil, connector.Permanent("ssh_no_admin", "the resource record has no admin password or private key", nil)
	}
	return []xssh.AuthMethod{xssh.Password(t.AdminSecret.Reveal())}, nil
}

// address returns host:port from the resource's url ("ssh://host:port", "host:port" or "host").
func address(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", connector.Permanent("ssh_no_host", "the resource record has no url naming the SSH host", nil)
	}
	host := raw
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "ssh" || u.Hostname() == "" {
			return "", connector.Permanent("ssh_bad_url", fmt.Sprintf("the url %q is not ssh://host[:port]", raw), nil)
		}
		host = u.Host
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(h, p), nil
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), DefaultPort), nil
}

// pinnedKeys reads the host key field; no key means no connection (no trust on first use).
func pinnedKeys(t connector.Target) ([]xssh.PublicKey, error) {
	raw := strings.TrimSpace(t.Fields[HostKeyField])
	if raw == "" {
		return nil, connector.Permanent("ssh_host_key_missing",
			fmt.Sprintf("the resource record pins no host key (custom field %q); trust on first use is refused", HostKeyField), nil)
	}
	var keys []xssh.PublicKey
	for line := range strings.SplitSeq(raw, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, _, _, _, err := xssh.ParseAuthorizedKey([]byte(line)); err == nil {
			keys = append(keys, k)
			continue
		}
		if _, _, k, _, _, err := xssh.ParseKnownHosts([]byte(line)); err == nil {
			keys = append(keys, k)
			continue
		}
		return nil, connector.Permanent("ssh_bad_host_key",
			fmt.Sprintf("the %q field holds a line that is neither an authorized_keys nor a known_hosts entry", HostKeyField), nil)
	}
	if len(keys) == 0 {
		return nil, connector.Permanent("ssh_host_key_missing", "the host key field holds no key; trust on first use is refused", nil)
	}
	return keys, nil
}

// hostKeyAlgorithms asks the server for the pinned keys' types, so that a server with several
// host keys presents one that can match.
func hostKeyAlgorithms(keys []xssh.PublicKey) []string {
	var algs []string
	for _, k := range keys {
		if k.Type() == xssh.KeyAlgoRSA {
			algs = append(algs, xssh.KeyAlgoRSASHA512, xssh.KeyAlgoRSASHA256)
		}
		algs = append(algs, k.Type())
	}
	return algs
}

// dial connects and authenticates, classifying failures: a bad or unpinned host key and a
// refused login are permanent, the network is transient.
func (c *Connector) dial(ctx context.Context, t connector.Target, user string, auth []xssh.AuthMethod, who string) (*xssh.Client, error) {
	addr, err := address(t.URL)
	if err != nil {
		return nil, err
	}
	keys, err := pinnedKeys(t)
	if err != nil {
		return nil, err
	}
	cfg := &xssh.ClientConfig{
		User:              user,
		Auth:              auth,
		HostKeyAlgorithms: hostKeyAlgorithms(keys),
		Timeout:           c.timeout,
		HostKeyCallback: func(_ string, _ net.Addr, got xssh.PublicKey) error {
			for _, k := range keys {
				if bytes.Equal(k.Marshal(), got.Marshal()) {
					return nil
				}
			}
			return fmt.Errorf("%w (it presented %s %s)", errHostKeyMismatch, got.Type(), xssh.FingerprintSHA256(got))
		},
	}
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, connector.Transient("ssh_unreachable", fmt.Sprintf("could not reach %s", addr), err)
	}
	// The handshake obeys the same deadline as the dial.
	if dl, ok := dctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(dctx, func() { _ = conn.Close() })
	sc, chans, reqs, err := xssh.NewClientConn(conn, addr, cfg)
	stop()
	if err != nil {
		_ = conn.Close()
		switch {
		case errors.Is(err, errHostKeyMismatch):
			return nil, connector.Permanent("ssh_host_key_mismatch", fmt.Sprintf("%s: refused to log in", addr), err)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, connector.Permanent("ssh_auth_refused", fmt.Sprintf("%s refused the %s login %s", addr, who, user), connector.ErrRejected)
		case dctx.Err() != nil || isTimeout(err):
			return nil, connector.Transient("ssh_timeout", fmt.Sprintf("the SSH handshake with %s timed out", addr), dctx.Err())
		default:
			return nil, connector.Transient("ssh_handshake", fmt.Sprintf("the SSH handshake with %s failed", addr), err)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return xssh.NewClient(sc, chans, reqs), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// scrub removes the secrets from text a server sent back, and bounds its length.
func scrub(s string, secrets ...secret.Secret) string {
	for _, sec := range secrets {
		if !sec.IsZero() {
			s = strings.ReplaceAll(s, sec.Reveal(), secret.Redacted)
		}
	}
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
