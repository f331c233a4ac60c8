package script

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/secret"
)

// Defaults of Options.
const (
	DefaultTimeout   = 120 * time.Second // a run's time limit
	DefaultKillGrace = 5 * time.Second   // from SIGTERM to SIGKILL
	DefaultOutputCap = 64 << 10          // bytes kept of stdout and of stderr each
	DefaultLang      = "C.UTF-8"         // LANG of the scripts
)

// Errors callers branch on (errors.Is). A script that fails either never ran, so it cannot
// have touched anything, or ran and exited non-zero (Result.ReturnCode).
var (
	// ErrNotStarted: the script could not be started (or its start could not be recorded).
	ErrNotStarted = fault.NewSentinel(fault.Invalid, "script_start_failed")
	// ErrDisabled: this server does not run scripts (script_isolation: disabled).
	ErrDisabled = fault.NewSentinel(fault.Invalid, "scripts_disabled")
)

// Script is one script to run: its file's name and content, and its command prefix.
type Script struct {
	Name    string        // the file name (for the result and the file written; sanitised)
	Content []byte        // the script itself
	Command string        // the command prefix, e.g. "/usr/local/bin/python3"; empty: exec the file (shebang)
	Timeout time.Duration // 0: the runner's default

	// Started, when set, is called once the script's process exists and before the script
	// itself runs, with what a successor needs to kill it after a crash; the script runs only
	// once Started has returned nil (it should record p durably). An error stops it unrun.
	Started func(ctx context.Context, p Process) error
}

// Result is the outcome of one run, in the shape of Keeper's execLog entries.
type Result struct {
	Name       string `json:"name"`        // Script.Name
	ReturnCode int    `json:"return_code"` // the exit code; 128+N when killed by signal N; -1 when it did not start
	Stdout     string `json:"stdout"`      // redacted, then capped (…[truncated])
	Stderr     string `json:"stderr"`      // redacted, then capped (…[truncated])
	DurationMS int64  `json:"duration_ms"` // from start to exit
	TimedOut   bool   `json:"-"`           // the run was stopped by its timeout
}

// Options configure a Runner; zero values take the defaults.
type Options struct {
	TempDir   string        // where each run's private directory is made; default os.TempDir()
	Timeout   time.Duration // a run's time limit when the script has none; default 120 s
	KillGrace time.Duration // from SIGTERM to SIGKILL of a timed-out group; default 5 s
	OutputCap int           // bytes kept of stdout and of stderr each; default 64 KiB
	Path      string        // PATH of the scripts; default the server's PATH
	Lang      string        // LANG of the scripts; default C.UTF-8
	// Sandbox isolates the scripts (NewSandbox); nil: sandboxed as DefaultScriptUser when
	// this process is root and that works, otherwise unsandboxed.
	Sandbox *Sandbox
}

// Runner runs scripts; it is safe for concurrent use.
type Runner struct {
	opts  Options
	sb    Sandbox
	owner string // the prefix of this process's private directories (Unsandboxed)
}

// NewRunner returns a Runner with the given options.
func NewRunner(o Options) *Runner {
	if o.TempDir == "" {
		o.TempDir = os.TempDir()
	}
	if abs, err := filepath.Abs(o.TempDir); err == nil {
		o.TempDir = abs
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.KillGrace <= 0 {
		o.KillGrace = DefaultKillGrace
	}
	if o.OutputCap <= 0 {
		o.OutputCap = DefaultOutputCap
	}
	if o.Path == "" {
		o.Path = os.Getenv("PATH")
	}
	if o.Lang == "" {
		o.Lang = DefaultLang
	}
	r := &Runner{opts: o}
	if o.Sandbox != nil {
		r.sb = *o.Sandbox
	} else if sb, err := NewSandbox(Sandboxed, ""); err == nil {
		r.sb = sb
	} else {
		r.sb, _ = NewSandbox(Unsandboxed, "")
	}
	r.owner = dirPrefix + ownerTag(os.Getpid())
	if r.sb.Mode == Unsandboxed {
		sweep(o.TempDir)
	}
	return r
}

// Mode returns the runner's isolation mode: Sandboxed, Unsandboxed or Disabled.
func (r *Runner) Mode() string { return r.sb.Mode }

// TimeLimit returns how long s may run: its own time limit, or the runner's.
func (r *Runner) TimeLimit(s Script) time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return r.opts.Timeout
}

// Run runs s with stdin as its input line (Params.Line): the child reads the line, a newline
// (added unless stdin ends with one), then EOF; an empty stdin gives EOF at once. The script is
// written (0700) into a fresh private directory (0700), which is also its working directory,
// HOME and TMPDIR: sandboxed, a private tmpfs mounted over /tmp that dies with the sandbox;
// unsandboxed, a directory under TempDir, removed afterwards. Its environment holds only PATH,
// HOME, LANG and TMPDIR; no secret is put in argv or in the environment. Its process exists
// before it runs: s.Started records it, then the script gets the go-ahead. It runs in its own
// process group; processes it leaves behind are killed when it exits (sandboxed: every process
// of its sandbox; unsandboxed: its group), and every one of them dies with the server
// (sandboxed; unsandboxed, those that stay in the group and are children of the script). When
// the timeout passes or ctx is done, the group gets SIGTERM, then SIGKILL after the grace period.
//
// stdout and stderr are captured separately, redacted with red (which may be nil) extended with
// stdin itself and its base64 decoding, then capped. A non-zero exit is not an error: it is in
// ReturnCode. Errors: code script_start_failed (ReturnCode -1) when the script cannot be
// started, script_timeout (with TimedOut) when it ran too long, ctx.Err() wrapped when ctx ended
// the run; the Result holds what was captured in every case.
func (r *Runner) Run(ctx context.Context, s Script, stdin secret.Secret, red *Redactor) (Result, error) {
	res := Result{Name: s.Name, ReturnCode: -1}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("script %q not run: %w", s.Name, err)
	}
	red = red.with(nil, derived(stdin)...)
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = r.opts.Timeout
	}

	if r.sb.Mode == Disabled {
		return res, disabled(s.Name)
	}
	var file, hostDir string
	var content *os.File // the script, read by the sandbox's init
	if r.sb.Mode == Sandboxed {
		file = sandboxPrivate + "/" + fileName(s.Name)
		var err error
		if content, err = scriptFile(s.Content); err != nil {
			return res, fmt.Errorf("script %q: %w", s.Name, err)
		}
		defer content.Close()
	} else {
		var err error
		hostDir, err = os.MkdirTemp(r.opts.TempDir, r.owner+"-")
		if err != nil {
			return res, fmt.Errorf("script %q: private directory: %w", s.Name, err)
		}
		file = filepath.Join(hostDir, fileName(s.Name))
		defer func() {
			// Most scripts leave only their file: two unlinks are cheaper than RemoveAll.
			if os.Remove(file) != nil || os.Remove(hostDir) != nil {
				_ = os.RemoveAll(hostDir)
			}
		}()
		if err := writeScript(file, s.Content); err != nil {
			return res, fmt.Errorf("script %q: write: %w", s.Name, err)
		}
	}
	argv, err := r.argv(s.Command, file)
	if err != nil {
		return res, startFailed(s.Name, err)
	}
	if s.Command == "" && !bytes.HasPrefix(s.Content, []byte("#!")) && !bytes.HasPrefix(s.Content, []byte("\x7fELF")) {
		return res, startFailed(s.Name, syscall.ENOEXEC) // as exec(2) would say
	}

	p, err := newPipes(stdin)
	if err != nil {
		return res, fmt.Errorf("script %q: pipes: %w", s.Name, err)
	}
	defer p.close()
	goR, goW, err := os.Pipe()
	if err != nil {
		return res, fmt.Errorf("script %q: pipes: %w", s.Name, err)
	}
	defer goW.Close()
	var cmd *exec.Cmd
	for attempt := 0; ; attempt++ {
		cmd = r.command(argv, file, hostDir)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = p.inR, p.outW, p.errW
		cmd.ExtraFiles = []*os.File{goR}
		if content != nil {
			cmd.ExtraFiles = append(cmd.ExtraFiles, content)
		}
		err = cmd.Start()
		// A concurrent fork may briefly hold a descriptor of a script being written
		// elsewhere; writeScript makes that rare, this makes it harmless.
		if !errors.Is(err, syscall.ETXTBSY) || attempt == 20 {
			break
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	goR.Close()
	if err != nil {
		return res, startFailed(s.Name, err)
	}
	if err := r.goAhead(ctx, s, cmd, goW); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return res, err
	}
	started := time.Now()
	p.started(r.opts.OutputCap + red.maxLen)

	exited := make(chan waitResult, 1)
	go func() { exited <- awaitExit(cmd) }()
	pgid := cmd.Process.Pid
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var w waitResult
	var ended error // why the group was stopped
	select {
	case w = <-exited:
	case <-timer.C:
		res.TimedOut = true
		ended = fault.New(fault.Invalid, "script_timeout", "script %q ran longer than %s", s.Name, timeout)
		w = r.stop(pgid, exited)
	case <-ctx.Done():
		ended = fmt.Errorf("script %q stopped: %w", s.Name, ctx.Err())
		w = r.stop(pgid, exited)
	}
	res.DurationMS = time.Since(started).Milliseconds()
	// The leader has exited but is not reaped yet (on Linux), so its pid, the group id, is
	// still taken: what it left behind in the group can be killed safely.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if r.sb.Mode == Sandboxed && !w.reaped {
		_ = syscall.Kill(pgid, syscall.SIGKILL) // the sandbox's init: takes the sandbox with it
	}
	if !w.reaped {
		w.err = cmd.Wait()
	}
	p.finish(r.opts.KillGrace)

	if ps := cmd.ProcessState; ps != nil {
		res.ReturnCode = ps.ExitCode()
		if st, ok := ps.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			res.ReturnCode = 128 + int(st.Signal())
		}
	} else if w.err != nil && ended == nil {
		ended = fmt.Errorf("script %q: wait: %w", s.Name, w.err)
	}
	res.Stdout = p.out.output(red, r.opts.OutputCap)
	res.Stderr = p.err.output(red, r.opts.OutputCap)
	if ended == nil {
		if errno, ok := r.execFailed(res); ok {
			res.ReturnCode = -1
			return res, startFailed(s.Name, errno)
		}
	}
	return res, ended
}

// stop sends SIGTERM to the group, then SIGKILL after the grace period, and waits for the
// leader to exit.
func (r *Runner) stop(pgid int, exited <-chan waitResult) waitResult {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	grace := time.NewTimer(r.opts.KillGrace)
	defer grace.Stop()
	select {
	case w := <-exited:
		return w
	case <-grace.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if r.sb.Mode == Sandboxed {
			_ = syscall.Kill(pgid, syscall.SIGKILL) // the sandbox's init, and with it the sandbox
		}
		return <-exited
	}
}

// waitResult is what awaitExit reports.
type waitResult struct {
	reaped bool  // cmd.Wait was called
	err    error // its error
}

// derived returns the patterns of the stdin line: the line itself and, when it is base64, its
// decoding (the params JSON), raw and JSON-escaped. (The base64 of the params JSON is the
// line; the secrets inside are the Redactor's own.)
func derived(stdin secret.Secret) []string {
	if stdin.IsZero() {
		return nil
	}
	line := strings.TrimRight(stdin.Reveal(), "\r\n")
	out := []string{line}
	if dec, err := base64.StdEncoding.DecodeString(line); err == nil && len(dec) > 0 {
		out = append(out, string(dec))
		out = append(out, jsonForms(string(dec))...)
		clear(dec)
	}
	return out
}

// argv returns the command line: the file alone, or the prefix and the file. A prefix that
// names an existing executable file as a whole (an absolute path, spaces allowed) is one
// path; otherwise it is split into fields, and a first field without a slash is looked up in
// the runner's PATH.
func (r *Runner) argv(prefix, file string) ([]string, error) {
	prefix = strings.TrimSpace(prefix)
	if prefix == "" {
		return []string{file}, nil
	}
	if filepath.IsAbs(prefix) && executable(prefix) {
		return []string{prefix, file}, nil
	}
	fields := strings.Fields(prefix)
	if !strings.Contains(fields[0], "/") {
		found := ""
		for _, d := range filepath.SplitList(r.opts.Path) {
			if d != "" && filepath.IsAbs(d) && executable(filepath.Join(d, fields[0])) {
				found = filepath.Join(d, fields[0])
				break
			}
		}
		if found == "" {
			return nil, fmt.Errorf("command %q is not in the scripts' PATH", fields[0])
		}
		fields[0] = found
	}
	return append(fields, file), nil
}

// executable reports whether path is a regular file with an execute bit.
func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// startFailed is the error of a script that could not be started; its message names the
// cause without anything from the script's input.
func startFailed(name string, err error) error {
	why := err.Error()
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		why = "exec format error: the script has no #! line and no command prefix"
	case errors.Is(err, syscall.ENOENT):
		why = "its interpreter (#! line or command prefix) was not found"
	case errors.Is(err, syscall.EACCES):
		why = "permission denied on its interpreter or file"
	}
	fe := ErrNotStarted.New("script %q could not be started: %s", name, why)
	fe.Err = err
	return fe
}

// fileName returns a safe file name for a script name.
func fileName(name string) string {
	base := filepath.Base(name)
	b := []byte(base)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' || len(b) > 128 {
		return "script"
	}
	return string(b)
}

// writeScript writes the script file, mode 0700. It holds syscall.ForkLock so that no
// concurrent fork inherits the open descriptor, which would make exec fail with ETXTBSY.
func writeScript(path string, content []byte) error {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o700)
	if err != nil {
		return err
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Chmod(0o700) // whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// pipes are the child's stdin, stdout and stderr and the goroutines serving them.
type pipes struct {
	inR, inW   *os.File
	outR, outW *os.File
	errR, errW *os.File
	line       []byte
	out, err   capture
	wg         sync.WaitGroup
}

// newPipes makes the three pipes; line is what stdin will carry.
func newPipes(stdin secret.Secret) (*pipes, error) {
	p := &pipes{}
	var err error
	if p.inR, p.inW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.outR, p.outW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	if p.errR, p.errW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	if !stdin.IsZero() {
		p.line = append(p.line, stdin.Bytes()...)
		if p.line[len(p.line)-1] != '\n' {
			p.line = append(p.line, '\n')
		}
	}
	return p, nil
}

// started closes the child's ends and starts feeding stdin and draining stdout and stderr,
// keeping up to keep bytes of each.
func (p *pipes) started(keep int) {
	for _, f := range []**os.File{&p.inR, &p.outW, &p.errW} {
		(*f).Close()
		*f = nil
	}
	p.out.limit, p.err.limit = keep, keep
	p.wg.Go(func() {
		_, _ = p.inW.Write(p.line) // EPIPE when the script does not read it all: fine
		p.inW.Close()
		clear(p.line)
	})
	p.wg.Go(func() { _, _ = io.Copy(&p.out, p.outR) })
	p.wg.Go(func() { _, _ = io.Copy(&p.err, p.errR) })
}

// finish waits for stdin to be written and stdout and stderr to reach EOF, at most grace: a
// process that left the group may hold them open.
func (p *pipes) finish(grace time.Duration) {
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	deadline := time.Now()
	for _, f := range []*os.File{p.inW, p.outR, p.errR} {
		_ = f.SetDeadline(deadline)
	}
	<-done
}

// close closes every descriptor still open and clears the line.
func (p *pipes) close() {
	clear(p.line)
	for _, f := range []*os.File{p.inR, p.inW, p.outR, p.outW, p.errR, p.errW} {
		if f != nil {
			f.Close()
		}
	}
}
