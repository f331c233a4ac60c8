// Package ssh rotates a Linux account's password over SSH: an admin login runs chpasswd (as
// root, or through sudo) with "user:password" fed on the session's stdin (never in the command
// line), and a fresh SSH login as the user with the password verifies it. The server's host
// key must be pinned in the resource record; trust on first use is refused.
package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
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

// The commands a non-root admin runs, through sudo. Both are fixed and hold no secret; -k
// makes sudo ignore credentials cached by an earlier sudo, so that each decides afresh.
const (
	// sudoNoPasswordCommand runs chpasswd only if sudo needs no password (-n); sudo then never
	// reads stdin. Run first with nothing on stdin, it is the probe: exit status 0 means the
	// admin may run chpasswd without a password (chpasswd given no line changes nothing).
	sudoNoPasswordCommand = "sudo -n -k chpasswd"
	// sudoCommand reads the admin's password from stdin after writing sudoPrompt to stderr
	// (again after each refused attempt), then runs chpasswd, which reads the next line.
	sudoCommand = "sudo -S -k -p '" + sudoPrompt + "' chpasswd"
	// sudoPrompt is what sudo writes to stderr each time it reads a password.
	sudoPrompt = "keyturn-sudo-password:"
)

// Commands returns the commands the admin's sessions may run for the target, in order:
// chpasswd for root; for another admin the sudo probe, then sudo -n chpasswd when sudo needs no
// password, or (an admin with a password) sudo -S chpasswd twice, to check the password and
// then to change the account's. None holds a secret.
func Commands(t connector.Target) []string {
	switch {
	case t.AdminLogin == "root":
		return []string{ChpasswdCommand}
	case t.Secrets[PrivateKeyField].IsZero() && !t.AdminSecret.IsZero():
		return []string{sudoNoPasswordCommand, sudoNoPasswordCommand, sudoCommand, sudoCommand}
	default:
		return []string{sudoNoPasswordCommand, sudoNoPasswordCommand}
	}
}

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
	// sudo reads the admin's password up to the first line break, and chpasswd takes what
	// follows as "user:password" lines: such a password would set passwords nobody asked for.
	if acct.Target.AdminLogin != "root" && acct.Target.Secrets[PrivateKeyField].IsZero() &&
		bytes.ContainsAny(acct.Target.AdminSecret.Bytes(), "\n\r\x00") {
		return connector.NotChanged(connector.Permanent("ssh_bad_admin_password",
			"the resource record's admin password holds a line break or NUL, which sudo cannot take", nil))
	}
	client, err := c.dial(ctx, acct.Target, acct.Target.AdminLogin, auth, "admin")
	if err != nil {
		return connector.NotChanged(err)
	}
	defer client.Close()

	line := make([]byte, 0, len(acct.Login)+1+len(new.Bytes())+1)
	line = append(append(append(append(line, acct.Login...), ':'), new.Bytes()...), '\n')
	defer clear(line)
	secrets := []secret.Secret{new, acct.Target.AdminSecret}

	// A server that never answers must not hold the rotation forever.
	rctx, cancel := context.WithTimeout(ctx, 2*c.timeout)
	defer cancel()
	if acct.Target.AdminLogin == "root" {
		stderr, err := run(rctx, client, ChpasswdCommand, line)
		return chpasswdResult(ChpasswdCommand, err, scrub(stderr, secrets...))
	}
	return rotateWithSudo(rctx, client, acct, line, secrets)
}

// rotateWithSudo changes the password through sudo for a non-root admin. What goes on stdin is
// decided by what sudo asks for, since sudo -S reads the admin's password from stdin only when
// it needs one, and chpasswd reads whatever follows:
//
//  1. sudo -n -k chpasswd with nothing on stdin: when it succeeds, sudo needs no password, and
//     sudo -n -k chpasswd gets the account's line alone. Sending the admin's password there
//     would make chpasswd read it as a "user:password" line (and set the password of whichever
//     account its text before a ':' names).
//  2. Otherwise an admin logged in with a key cannot give sudo a password: sudo_refused.
//  3. An admin with a password: sudo -S -k chpasswd, writing the password only once sudo has
//     prompted for it, then nothing (chpasswd, given no line, changes nothing). A wrong password
//     (sudo prompts again) or no sudoers rule ends here, so that sudo never reads the account's
//     line as a further password attempt.
//  4. The same command again, writing the password once prompted, then the account's line.
//
// Failures before step 4 writes the account's line, and sudo's refusals of the password in
// step 4, are wrapped as not changed: chpasswd never got the line.
func rotateWithSudo(ctx context.Context, client *xssh.Client, acct connector.Account, line []byte, secrets []secret.Secret) error {
	admin := acct.Target.AdminLogin
	stderr, err := run(ctx, client, sudoNoPasswordCommand, nil)
	var exit *xssh.ExitError
	switch {
	case err == nil:
		stderr, err = run(ctx, client, sudoNoPasswordCommand, line)
		return chpasswdResult(sudoNoPasswordCommand, err, scrub(stderr, secrets...))
	case !errors.As(err, &exit):
		return connector.NotChanged(sessionError(sudoNoPasswordCommand, err))
	case !acct.Target.Secrets[PrivateKeyField].IsZero() || acct.Target.AdminSecret.IsZero():
		return connector.NotChanged(connector.Permanent("sudo_refused", fmt.Sprintf(
			"sudo refused to run chpasswd for %s without a password (an admin logging in with a key needs a NOPASSWD sudoers rule for chpasswd): %s",
			admin, scrub(stderr, secrets...)), nil))
	}

	pw := make([]byte, 0, len(acct.Target.AdminSecret.Bytes())+1)
	pw = append(append(pw, acct.Target.AdminSecret.Bytes()...), '\n')
	defer clear(pw)
	check := runSudo(ctx, client, pw, nil, secrets)
	if err := check.refused(admin); err != nil {
		return err
	}
	if check.err != nil {
		if !isExit(check.err) {
			return connector.NotChanged(sessionError(sudoCommand, check.err))
		}
		return connector.NotChanged(connector.Permanent("sudo_refused", fmt.Sprintf(
			"sudo refused %s (no sudoers rule letting it run chpasswd?): %s", admin, check.stderr), nil))
	}
	res := runSudo(ctx, client, pw, line, secrets)
	if err := res.refused(admin); err != nil {
		return err
	}
	return chpasswdResult(sudoCommand, res.err, res.stderr)
}

// sudoRun is how a run of sudoCommand went.
type sudoRun struct {
	wrote   bool   // the password (and what follows it) was written
	prompts int    // how many times sudo asked for the password
	stderr  string // without the prompts, scrubbed
	err     error  // the session's end (nil: exit status 0)
}

// refused is the error proving nothing changed when sudo did not take the password: it never
// asked (nothing was written), or asked again (it refused the password, so chpasswd never ran).
func (r sudoRun) refused(admin string) error {
	switch {
	case !r.wrote && r.err != nil && !isExit(r.err):
		return connector.NotChanged(sessionError(sudoCommand, r.err))
	case !r.wrote:
		return connector.NotChanged(connector.Permanent("sudo_refused", fmt.Sprintf(
			"%s ended without asking for the password of %s: %s", sudoCommand, admin, r.stderr), nil))
	case r.prompts > 1:
		return connector.NotChanged(connector.Permanent("sudo_refused", fmt.Sprintf(
			"sudo refused the password of %s: %s", admin, r.stderr), nil))
	}
	return nil
}

// runSudo runs sudoCommand; once sudo prompts it writes pw and then more, and closes stdin.
// Nothing is written unless sudo asks for a password.
func runSudo(ctx context.Context, client *xssh.Client, pw, more []byte, secrets []secret.Secret) (r sudoRun) {
	sess, err := client.NewSession()
	if err != nil {
		return sudoRun{err: fmt.Errorf("%w: %w", errNoSession, err)}
	}
	defer sess.Close()
	stdin, err := sess.StdinPipe()
	if err != nil {
		return sudoRun{err: fmt.Errorf("%w: %w", errNoSession, err)}
	}
	watch := &promptWatcher{seen: make(chan struct{}, 1)}
	sess.Stderr = watch
	defer func() { r.prompts, r.stderr = watch.prompts(), watch.text(secrets) }()
	if err := sess.Start(sudoCommand); err != nil {
		return sudoRun{err: fmt.Errorf("%w: %w", errNoSession, err)}
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case <-watch.seen:
		input := append(append(make([]byte, 0, len(pw)+len(more)), pw...), more...)
		_, err := stdin.Write(input)
		clear(input)
		_ = stdin.Close()
		r.wrote = true
		if err != nil {
			_ = client.Close()
			r.err = err
			return r
		}
	case r.err = <-done:
		return r
	case <-ctx.Done():
		_ = client.Close()
		r.err = ctx.Err()
		return r
	}
	select {
	case r.err = <-done:
	case <-ctx.Done():
		_ = client.Close()
		r.err = ctx.Err()
	}
	return r
}

func isExit(err error) bool {
	var exit *xssh.ExitError
	return errors.As(err, &exit)
}

// errNoSession wraps the failure to open or start a session: the command never ran.
var errNoSession = errors.New("could not open an SSH session as the admin")

// run runs cmd in a new session with stdin (nothing when nil) and returns its stderr.
func run(ctx context.Context, client *xssh.Client, cmd string, stdin []byte) (string, error) {
	sess, err := client.NewSession()
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNoSession, err)
	}
	defer sess.Close()
	sess.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	select {
	case <-ctx.Done():
		_ = client.Close()
		return "", ctx.Err()
	case err = <-done:
		return stderr.String(), err
	}
}

// chpasswdResult classifies the end of the session that fed chpasswd the account's line.
func chpasswdResult(cmd string, err error, stderr string) error {
	var exit *xssh.ExitError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNoSession):
		return connector.NotChanged(sessionError(cmd, err))
	case errors.As(err, &exit):
		return connector.Permanent("chpasswd_failed",
			fmt.Sprintf("%s exited with status %d: %s", cmd, exit.ExitStatus(), stderr), nil)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return connector.Transient("ssh_timeout", fmt.Sprintf("%s did not finish", cmd), err)
	default:
		return connector.Transient("ssh_session", fmt.Sprintf("%s did not report its result", cmd), err)
	}
}

// sessionError classifies a session that failed before anything secret reached chpasswd.
func sessionError(cmd string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return connector.Transient("ssh_timeout", fmt.Sprintf("%s did not finish", cmd), err)
	}
	return connector.Transient("ssh_session", fmt.Sprintf("could not run %s as the admin", cmd), err)
}

// promptWatcher collects a session's stderr (bounded) and signals each sudo prompt in it.
type promptWatcher struct {
	mu   sync.Mutex
	buf  []byte
	n    int
	seen chan struct{}
}

func (w *promptWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) < 64<<10 {
		w.buf = append(w.buf, p...)
	}
	if n := bytes.Count(w.buf, []byte(sudoPrompt)); n > w.n {
		w.n = n
		select {
		case w.seen <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (w *promptWatcher) prompts() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// text is the stderr without the prompts, scrubbed of the secrets.
func (w *promptWatcher) text(secrets []secret.Secret) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return scrub(strings.ReplaceAll(string(w.buf), sudoPrompt, ""), secrets...)
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

// isAdmin reports whether the account is the admin login itself.
func isAdmin(acct connector.Account) bool {
	return acct.Login != "" && acct.Login == acct.Target.AdminLogin
}

// selfAllowed reports whether the resource lets its admin rotate its own account.
func selfAllowed(acct connector.Account) bool {
	return strings.EqualFold(acct.Target.Fields[SelfRotationField], "true")
}

// IsSelf reports whether Rotate would change the admin's own password
// (connector.SelfRotator).
func (c *Connector) IsSelf(acct connector.Account) bool { return isAdmin(acct) && selfAllowed(acct) }

// checkLogin refuses logins chpasswd would misread and, unless allowed, the admin's own account.
func checkLogin(acct connector.Account) error {
	if acct.Login == "" || strings.ContainsAny(acct.Login, ":\n\r\x00") {
		return connector.Permanent("ssh_bad_login", fmt.Sprintf("the login %q cannot be given to chpasswd", acct.Login), nil)
	}
	if isAdmin(acct) && !selfAllowed(acct) {
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
