package script

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/secret"
)

// Isolation modes of Options.Isolation.
const (
	// Sandboxed runs each script as an unprivileged user in its own PID, mount and IPC
	// namespaces: a private /proc that shows only the sandbox's processes, and a private /tmp
	// (its working directory) and /dev/shm. Every process of the sandbox dies when the script
	// exits, when the run is stopped, and when the server dies. It needs root.
	Sandboxed = "sandboxed"
	// Unsandboxed runs scripts as the server's own user, in a process group, with a private
	// directory under TempDir: they can read whatever the server can, the data directory too,
	// and a process that leaves the group (setsid) can outlive the script.
	Unsandboxed = "unsandboxed"
	// Disabled refuses every script (code scripts_disabled).
	Disabled = "disabled"
)

// DefaultScriptUser is the user scripts run as when sandboxed.
const DefaultScriptUser = "nobody"

// sandboxPrivate is the directory, inside a sandbox, that holds the script: a private tmpfs
// mounted over /tmp, owned by the script user, mode 0700.
const sandboxPrivate = "/tmp"

// sandboxInit is the sandbox's first process: it runs as root in fresh PID, mount and IPC
// namespaces, mounts the private /proc, /tmp and /dev/shm, writes the script (read from
// descriptor 4) into /tmp, waits for the go-ahead on descriptor 3 (the server records the
// sandbox's identity durably first; EOF means the server died, and nothing runs), then runs
// the script as the script user with no capabilities and no way to gain privileges. It stays
// the namespace's init, so when it exits (with the script's status) every process the script
// left behind is killed, and it has the server's death signal.
const sandboxInit = `set -e
uid=$1 gid=$2 setpriv=$3 mount=$4 file=$5
shift 5
path=$PATH
PATH=/usr/sbin:/usr/bin:/sbin:/bin
"$mount" --make-rprivate /
"$mount" -t proc -o nosuid,nodev,noexec proc /proc
"$mount" -t tmpfs -o nosuid,nodev,mode=0700,uid="$uid",gid="$gid",size=64m keyturn-script /tmp
if [ -d /dev/shm ]; then "$mount" -t tmpfs -o nosuid,nodev,noexec,mode=0700,uid="$uid",gid="$gid",size=1m keyturn-shm /dev/shm; fi
cat <&4 >"$file"
exec 4<&-
chown "$uid:$gid" "$file"
chmod 0700 "$file"
IFS= read -r go <&3 || exit 125
exec 3<&-
cd /tmp
unset PWD OLDPWD
PATH=$path
set +e
"$setpriv" --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
exit $?
`

// unsandboxedInit waits for the go-ahead on descriptor 3, then becomes the script.
const unsandboxedInit = `IFS= read -r go <&3 || exit 125
exec 3<&-
unset PWD
exec "$@"
`

// Sandbox is how scripts are isolated, worked out by NewSandbox.
type Sandbox struct {
	Mode     string // Sandboxed, Unsandboxed or Disabled
	UID, GID int    // the script user and group (Sandboxed)
	User     string // the script user's name, for messages
	setpriv  string // paths of the tools the sandbox's init uses
	mount    string
	shell    string
}

// NewSandbox works out the Sandbox of a mode: for Sandboxed, it looks up the script user
// (name or uid; its primary group) and the tools, and checks that this process is root.
func NewSandbox(mode, scriptUser string) (Sandbox, error) {
	sb := Sandbox{Mode: mode, shell: "/bin/sh"}
	switch mode {
	case Disabled, Unsandboxed:
		return sb, nil
	case Sandboxed, "":
		sb.Mode = Sandboxed
	default:
		return sb, fmt.Errorf("script isolation %q: want %s, %s or %s", mode, Sandboxed, Unsandboxed, Disabled)
	}
	if os.Geteuid() != 0 {
		return sb, fmt.Errorf("scripts can be sandboxed only when the server runs as root (it runs as uid %d)", os.Geteuid())
	}
	if scriptUser == "" {
		scriptUser = DefaultScriptUser
	}
	u, err := user.Lookup(scriptUser)
	if err != nil {
		if u, err = user.LookupId(scriptUser); err != nil {
			return sb, fmt.Errorf("script user %q: %w", scriptUser, err)
		}
	}
	sb.User = u.Username
	if sb.UID, err = strconv.Atoi(u.Uid); err != nil {
		return sb, fmt.Errorf("script user %q: uid %q", scriptUser, u.Uid)
	}
	if sb.GID, err = strconv.Atoi(u.Gid); err != nil {
		return sb, fmt.Errorf("script user %q: gid %q", scriptUser, u.Gid)
	}
	if sb.UID == 0 || sb.GID == 0 {
		return sb, fmt.Errorf("script user %q is root or in group root: choose an unprivileged user", scriptUser)
	}
	for _, tool := range []struct {
		name string
		path *string
	}{{"setpriv", &sb.setpriv}, {"mount", &sb.mount}} {
		p, err := lookTool(tool.name)
		if err != nil {
			return sb, fmt.Errorf("the script sandbox needs %s (util-linux): %w", tool.name, err)
		}
		*tool.path = p
	}
	return sb, nil
}

// lookTool finds a system tool in the system's directories, not in the server's PATH.
func lookTool(name string) (string, error) {
	for _, d := range []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if executable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in /usr/bin, /bin, /usr/sbin or /sbin", name)
}

// Check runs a script in the sandbox, to show that this machine can make one (namespaces
// allowed, tools working) and that the script really runs without privileges: as the script
// user, with no groups, no capabilities and no_new_privs. setpriv cannot empty the bounding
// set without CAP_SETPCAP, and says nothing about it, so the check asks the kernel.
func (r *Runner) Check(ctx context.Context) error {
	if r.sb.Mode == Disabled {
		return nil
	}
	res, err := r.Run(ctx, Script{Name: "check.sh", Content: []byte(privilegeProbe)}, secret.Secret{}, nil)
	if err != nil {
		return fmt.Errorf("script sandbox check: %w", err)
	}
	if res.ReturnCode != 0 {
		return fmt.Errorf("script sandbox check: exit %d: %s", res.ReturnCode, strings.TrimSpace(res.Stderr))
	}
	if r.sb.Mode != Sandboxed {
		return nil
	}
	if err := r.sb.unprivileged(res.Stdout); err != nil {
		return fmt.Errorf("script sandbox check: %w", err)
	}
	return nil
}

// privilegeProbe prints what the kernel says of the script's identity and privileges.
const privilegeProbe = "#!/bin/sh\ngrep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status\n"

// unprivileged checks the /proc/self/status lines of privilegeProbe against the sandbox's
// promise, naming each line that breaks it.
func (sb Sandbox) unprivileged(status string) error {
	got := map[string]string{}
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			got[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	uid, gid := strconv.Itoa(sb.UID), strconv.Itoa(sb.GID)
	want := []struct{ key, value, meaning string }{
		{"Uid", strings.Repeat(uid+" ", 3) + uid, "runs as script_user"},
		{"Gid", strings.Repeat(gid+" ", 3) + gid, "runs with script_user's group"},
		{"Groups", "", "has no supplementary groups"},
		{"CapInh", zeroCaps, "inherits no capabilities"},
		{"CapPrm", zeroCaps, "has no permitted capabilities"},
		{"CapEff", zeroCaps, "has no effective capabilities"},
		{"CapBnd", zeroCaps, "has an empty capability bounding set (setpriv needs CAP_SETPCAP to empty it)"},
		{"CapAmb", zeroCaps, "has no ambient capabilities"},
		{"NoNewPrivs", "1", "has no_new_privs set"},
	}
	var broken []string
	for _, w := range want {
		if v, ok := got[w.key]; !ok || v != w.value {
			broken = append(broken, fmt.Sprintf("a script must be sure it %s, but %s is %q", w.meaning, w.key, v))
		}
	}
	if len(broken) > 0 {
		return fmt.Errorf("scripts would run with privileges: %s", strings.Join(broken, "; "))
	}
	return nil
}

// zeroCaps is an empty capability set as /proc/self/status shows it.
const zeroCaps = "0000000000000000"

// command builds the command that runs argv in the runner's mode. file is the script file's
// path on the host (Unsandboxed) or inside the sandbox (Sandboxed).
func (r *Runner) command(argv []string, file, hostDir string) *exec.Cmd {
	env := []string{"PATH=" + r.opts.Path, "LANG=" + r.opts.Lang}
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var args []string
	dir := hostDir
	if r.sb.Mode == Sandboxed {
		args = append([]string{r.sb.shell, "-c", sandboxInit, "keyturn-sandbox",
			strconv.Itoa(r.sb.UID), strconv.Itoa(r.sb.GID), r.sb.setpriv, r.sb.mount, file}, argv...)
		env = append(env, "HOME="+sandboxPrivate, "TMPDIR="+sandboxPrivate)
		attr.Cloneflags = syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC
		dir = "/"
	} else {
		args = append([]string{r.sb.shell, "-c", unsandboxedInit, "keyturn-script"}, argv...)
		env = append(env, "HOME="+hostDir, "TMPDIR="+hostDir)
	}
	return &exec.Cmd{Path: r.sb.shell, Args: args, Dir: dir, Env: env, SysProcAttr: attr}
}

// disabled is the error of a script run on a runner whose scripts are disabled.
func disabled(name string) error {
	return ErrDisabled.New("script %q not run: this server does not run scripts (script_isolation: disabled)", name)
}

// errNoGoAhead is returned when a script's start could not be recorded.
var errNoGoAhead = errors.New("the script's start could not be recorded")

// goAhead tells the waiting script to run, after s.Started has recorded its process.
func (r *Runner) goAhead(ctx context.Context, s Script, cmd *exec.Cmd, goW *os.File) error {
	if s.Started != nil {
		p, err := identify(cmd.Process.Pid)
		if err == nil {
			err = s.Started(ctx, p)
		}
		if err != nil {
			fe := ErrNotStarted.New("script %q not run: %s", s.Name, errNoGoAhead)
			fe.Kind, fe.Err = fault.Unavailable, err
			return fe
		}
	}
	if _, err := goW.Write([]byte("go\n")); err != nil {
		return startFailed(s.Name, fmt.Errorf("go-ahead: %w", err))
	}
	return goW.Close()
}

// scriptFile returns an anonymous in-memory file (memfd) holding content, read from its start
// by the sandbox: nothing is left on disk, whenever the server dies.
func scriptFile(content []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("keyturn-script", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("script content: %w", err)
	}
	f := os.NewFile(uintptr(fd), "keyturn-script")
	if _, err := f.Write(content); err != nil {
		f.Close()
		return nil, fmt.Errorf("script content: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("script content: %w", err)
	}
	return f, nil
}

// dirPrefix starts the name of every unsandboxed private directory; the owner's pid and
// start time follow, so that a later server can tell the leftovers of a dead one.
const dirPrefix = "keyturn-script-"

// ownerTag names a process for its private directories: pid.starttime.
func ownerTag(pid int) string {
	start, _, err := procStat(pid)
	if err != nil {
		return strconv.Itoa(pid)
	}
	return strconv.Itoa(pid) + "." + strconv.FormatUint(start, 10)
}

// sweep removes the private directories under dir left by servers that died without
// removing them (killed mid-run): those whose owner no longer runs.
func sweep(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), dirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		tag, _, ok := strings.Cut(name, "-")
		pidText, startText, ok2 := strings.Cut(tag, ".")
		if !ok || !ok2 {
			continue // not ours, or from an older version: leave it
		}
		pid, err1 := strconv.Atoi(pidText)
		start, err2 := strconv.ParseUint(startText, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if now, _, err := procStat(pid); err == nil && now == start {
			continue // its server still runs
		}
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// execFailed tells a sandboxed script that could not be executed (setpriv says so, with
// exec's exit codes 126 and 127) from one that ran, and returns exec's error.
func (r *Runner) execFailed(res Result) (syscall.Errno, bool) {
	if r.sb.Mode != Sandboxed || (res.ReturnCode != 126 && res.ReturnCode != 127) {
		return 0, false
	}
	msg, ok := strings.CutPrefix(res.Stderr, "setpriv: failed to execute ")
	if !ok {
		return 0, false
	}
	msg = strings.ToLower(msg)
	switch {
	case strings.Contains(msg, syscall.ENOENT.Error()):
		return syscall.ENOENT, true
	case strings.Contains(msg, syscall.EACCES.Error()):
		return syscall.EACCES, true
	case strings.Contains(msg, syscall.ENOEXEC.Error()):
		return syscall.ENOEXEC, true
	}
	return syscall.EINVAL, true
}

// Choose works out how a server isolates its scripts: none run when disable is set;
// otherwise they are sandboxed as scriptUser when this process is root and a sandbox works
// here. When they cannot be, they run unsandboxed only if allowUnsandboxed is set, and warning
// says why and what that exposes; otherwise Choose fails, saying what to do.
func Choose(ctx context.Context, scriptUser string, allowUnsandboxed, disable bool) (sb Sandbox, warning string, err error) {
	if disable {
		return Sandbox{Mode: Disabled}, "", nil
	}
	sb, err = NewSandbox(Sandboxed, scriptUser)
	if err == nil {
		err = NewRunner(Options{Sandbox: &sb}).Check(ctx)
	}
	if err == nil {
		return sb, "", nil
	}
	if !allowUnsandboxed {
		return Sandbox{}, "", fmt.Errorf("PAM scripts cannot be sandboxed: %w; run the server as root (scripts then run as "+
			"script_user), set disable_scripts: true, or accept scripts that can read the data directory with "+
			"allow_unsandboxed_scripts: true", err)
	}
	sb, _ = NewSandbox(Unsandboxed, "")
	return sb, fmt.Sprintf("PAM scripts run unsandboxed, as the server's own user (allow_unsandboxed_scripts): they can read "+
		"the data directory and the master key; the sandbox is not available because %v", err), nil
}
