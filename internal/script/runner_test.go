package script

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/vault"
)

// simpleParams returns params with a pamUser and a credential record.
func simpleParams() Params {
	return Params{
		Credentials: []vault.Record{{UID: "cred", Title: "API", Fields: []vault.Field{fld("url", "", `"https://x"`), fld("password", "", `"api-T0ken-Secret"`)}}},
		User:        vault.Record{UID: "usr", Title: "User", Fields: []vault.Field{fld("login", "", `"jo"`), fld("password", "", `"0ld-Secret-pw"`)}},
		NewPassword: secret.FromString("N3w-Secret-pw"),
		OldPassword: secret.FromString("0ld-Secret-pw"),
	}
}

// TestProcNoSecrets reads /proc of a running script and of its child: no secret in their
// command lines or environments, and the script's environment is exactly the four variables.
func TestProcNoSecrets(t *testing.T) {
	t.Parallel()
	need(t, "bash")
	modes(t, func(t *testing.T, o Options) {
		p := simpleParams()
		line, _ := p.Line()
		params, _ := decodeLine(t, line.Reveal())
		marker, goFile := withMarker(t), filepath.Join(sharedDir(t), "go")
		sh := "#!/bin/bash\nIFS= read -r params\nsleep " + marker + " &\n" +
			"while [ ! -e '" + goFile + "' ]; do sleep 0.02; done\nkill $!\n"
		o.Path, o.Lang = "/usr/local/bin:/usr/bin:/bin", "en_US.UTF-8"
		r := newTestRunner(t, o)
		type out struct {
			res Result
			err error
		}
		done := make(chan out, 1)
		go func() {
			res, err := r.Run(context.Background(), Script{Name: "proc.sh", Content: []byte(sh)}, line, NewRedactor(SecretsOf(p)...))
			done <- out{res, err}
		}()
		child := waitPids(t, marker, 1)[0]
		script := parentOf(t, child)
		secrets := []string{line.Reveal(), string(params), "N3w-Secret-pw", "0ld-Secret-pw", "api-T0ken-Secret"}
		for i, pid := range []int{script, child} {
			cmdline, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			environ, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			for _, s := range secrets {
				if strings.Contains(string(cmdline), s) || strings.Contains(string(environ), s) {
					t.Errorf("process %d shows a secret in argv or environ", pid)
				}
			}
			if i > 0 {
				continue // the child's environment is what bash exports
			}
			cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
			vars := strings.Split(strings.TrimSuffix(string(environ), "\x00"), "\x00")
			slices.Sort(vars)
			want := []string{"HOME=" + cwd, "LANG=en_US.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin", "TMPDIR=" + cwd}
			if !slices.Equal(vars, want) {
				t.Errorf("environ of the script:\n got %q\nwant %q", vars, want)
			}
			args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
			if len(args) != 2 || args[1] != filepath.Join(cwd, "proc.sh") {
				t.Errorf("cmdline: %q", args)
			}
			if r.Mode() == Sandboxed {
				// The private directory is the sandbox's own /tmp: a tmpfs only it sees.
				if cwd != "/tmp" {
					t.Errorf("cwd %s, want the sandbox's /tmp", cwd)
				}
				root := fmt.Sprintf("/proc/%d/root", pid)
				if fi, err := os.Stat(root + cwd); err != nil || fi.Mode().Perm() != 0o700 || fi.Sys().(*syscall.Stat_t).Uid != 65534 {
					t.Errorf("private directory: %v %v", fi, err)
				}
				if fi, err := os.Stat(root + args[1]); err != nil || fi.Mode().Perm() != 0o700 {
					t.Errorf("script file mode: %v %v", fi, err)
				}
				if _, err := os.Stat(filepath.Join("/tmp", "proc.sh")); !os.IsNotExist(err) {
					t.Errorf("the script file is visible outside the sandbox: %v", err)
				}
				continue
			}
			if !strings.HasPrefix(cwd, r.opts.TempDir+"/keyturn-script-") {
				t.Errorf("cwd %s is not a private directory", cwd)
			}
			if fi, err := os.Stat(cwd); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("private directory mode: %v %v", fi.Mode(), err)
			}
			if fi, err := os.Stat(filepath.Join(cwd, "proc.sh")); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("script file mode: %v %v", fi.Mode(), err)
			}
			defer func() {
				if _, err := os.Stat(cwd); !os.IsNotExist(err) {
					t.Errorf("private directory %s left behind: %v", cwd, err)
				}
			}()
		}
		if err := os.WriteFile(goFile, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		o2 := <-done
		if o2.err != nil || o2.res.ReturnCode != 0 {
			t.Fatalf("run: %+v %v", o2.res, o2.err)
		}
	})
}

// TestTimeoutKillsGroup checks that a timeout kills the script and its background grandchild
// with SIGTERM, and that a group ignoring SIGTERM gets SIGKILL after the grace period.
func TestTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	need(t, "bash")
	modes(t, func(t *testing.T, o Options) {
		for _, tc := range []struct {
			name, trap string
			code       int
		}{
			{"sigterm", "", 128 + 15},
			{"sigkill", "trap '' TERM\n", 128 + 9},
		} {
			t.Run(tc.name, func(t *testing.T) {
				marker := withMarker(t)
				sh := "#!/bin/bash\n" + tc.trap + "sleep " + marker + " &\nsleep 1000\n"
				grace := 300 * time.Millisecond
				o.KillGrace = grace
				r := newTestRunner(t, o)
				start := time.Now()
				seen := make(chan []int, 1)
				go func() { seen <- waitPids(t, marker, 1) }()
				res, err := r.Run(context.Background(), Script{Name: "hang.sh", Content: []byte(sh), Timeout: 300 * time.Millisecond}, secret.FromString("x"), nil)
				elapsed := time.Since(start)
				if faultCode(err) != "script_timeout" || !res.TimedOut {
					t.Fatalf("want script_timeout: %+v %v", res, err)
				}
				if !strings.Contains(err.Error(), "hang.sh") || !strings.Contains(err.Error(), "300ms") {
					t.Errorf("message: %v", err)
				}
				if res.ReturnCode != tc.code {
					t.Errorf("return code %d, want %d", res.ReturnCode, tc.code)
				}
				if tc.code == 128+9 && elapsed < 600*time.Millisecond {
					t.Errorf("SIGKILL came before the grace period: %v", elapsed)
				}
				if elapsed > 5*time.Second {
					t.Errorf("took %v", elapsed)
				}
				pids := <-seen
				if !eventuallyDead(pids[0]) {
					t.Errorf("grandchild %d is still running", pids[0])
				}
			})
		}
	})
}

// TestLeftoversKilled checks that a script exiting at once while a background child holds its
// stdout returns at once, and that the child is killed.
func TestLeftoversKilled(t *testing.T) {
	t.Parallel()
	need(t, "bash")
	modes(t, func(t *testing.T, o Options) {
		marker, seen := withMarker(t), filepath.Join(sharedDir(t), "seen")
		sh := "#!/bin/bash\nsleep " + marker + " &\nwhile [ ! -e '" + seen + "' ]; do sleep 0.01; done\necho bye\nexit 7\n"
		r := newTestRunner(t, o)
		found := make(chan []int, 1)
		go func() {
			pids := waitPids(t, marker, 1)
			_ = os.WriteFile(seen, nil, 0o666)
			found <- pids
		}()
		start := time.Now()
		res, err := r.Run(context.Background(), Script{Name: "bg.sh", Content: []byte(sh)}, secret.Secret{}, nil)
		if err != nil || res.ReturnCode != 7 || res.Stdout != "bye\n" {
			t.Fatalf("%+v %v", res, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
		pids := <-found
		if !eventuallyDead(pids[0]) {
			t.Errorf("child %d is still running", pids[0])
		}
	})
}

// TestCancel checks that ending the context kills the group.
func TestCancel(t *testing.T) {
	t.Parallel()
	need(t, "bash")
	modes(t, func(t *testing.T, o Options) {
		marker := withMarker(t)
		sh := "#!/bin/bash\nsleep " + marker + " &\nwait\n"
		r := newTestRunner(t, o)
		ctx, cancel := context.WithCancel(context.Background())
		found := make(chan []int, 1)
		go func() {
			defer cancel()
			found <- waitPids(t, marker, 1)
		}()
		res, err := r.Run(ctx, Script{Name: "c.sh", Content: []byte(sh)}, secret.Secret{}, nil)
		if !errors.Is(err, context.Canceled) || res.TimedOut {
			t.Fatalf("%+v %v", res, err)
		}
		pids := <-found
		if !eventuallyDead(pids[0]) {
			t.Errorf("child %d is still running", pids[0])
		}
		if _, err := r.Run(ctx, Script{Name: "c.sh", Content: []byte(sh)}, secret.Secret{}, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("done context: %v", err)
		}
	})
}

// TestOutputCap writes megabytes to stderr, then to stdout: no deadlock, both capped.
func TestOutputCap(t *testing.T) {
	t.Parallel()
	sh := "#!/bin/sh\nhead -c 5000000 /dev/zero | tr '\\0' e >&2\nhead -c 5000000 /dev/zero | tr '\\0' o\necho done >&2\n"
	r := newTestRunner(t, Options{})
	res, err := r.Run(context.Background(), Script{Name: "big.sh", Content: []byte(sh), Timeout: 30 * time.Second}, secret.Secret{}, nil)
	if err != nil || res.ReturnCode != 0 {
		t.Fatalf("%+v %v", res.ReturnCode, err)
	}
	if want := strings.Repeat("o", 64<<10) + "…[truncated]"; res.Stdout != want {
		t.Errorf("stdout: %d bytes, ends %q", len(res.Stdout), res.Stdout[max(0, len(res.Stdout)-20):])
	}
	if want := strings.Repeat("e", 64<<10) + "…[truncated]"; res.Stderr != want {
		t.Errorf("stderr: %d bytes, ends %q", len(res.Stderr), res.Stderr[max(0, len(res.Stderr)-20):])
	}

	// Exactly the cap is not truncated.
	res, err = r.Run(context.Background(), Script{Name: "cap.sh", Content: []byte("#!/bin/sh\nhead -c 65536 /dev/zero | tr '\\0' x\n")}, secret.Secret{}, nil)
	if err != nil || res.Stdout != strings.Repeat("x", 64<<10) {
		t.Errorf("exactly the cap: %d bytes, %v", len(res.Stdout), err)
	}
}

// TestCommandPrefix runs scripts without a #! line through a prefix: a path with a space, a
// name looked up in the runner's PATH, and a prefix with arguments.
func TestCommandPrefix(t *testing.T) {
	t.Parallel()
	need(t, "bash")
	bash, err := filepath.EvalSymlinks("/bin/bash")
	if err != nil {
		t.Skip("no /bin/bash")
	}
	dir := filepath.Join(sharedDir(t), "my tools") // outside the sandboxes' private /tmp
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bash, filepath.Join(dir, "bash")); err != nil {
		t.Fatal(err)
	}
	r := newTestRunner(t, Options{})
	content := []byte("echo \"bash ${BASH_VERSINFO[0]} $-\"\n")
	for _, tc := range []struct{ prefix, want string }{
		{filepath.Join(dir, "bash"), "bash "},
		{"  " + filepath.Join(dir, "bash") + " ", "bash "},
		{"bash", "bash "},
		{"/bin/bash -e", "e"},
		{"/usr/bin/env bash", "bash "},
	} {
		res, err := r.Run(context.Background(), Script{Name: "noshebang", Content: content, Command: tc.prefix}, secret.Secret{}, nil)
		if err != nil || res.ReturnCode != 0 || !strings.Contains(res.Stdout, tc.want) {
			t.Errorf("prefix %q: %+v %v", tc.prefix, res, err)
		}
	}
	res, err := r.Run(context.Background(), Script{Name: "x", Content: content, Command: "no-such-interpreter-xyz"}, secret.Secret{}, nil)
	if faultCode(err) != "script_start_failed" || res.ReturnCode != -1 {
		t.Errorf("unknown prefix: %+v %v", res, err)
	}
}

// TestStartFailed checks scripts that cannot start: no #! line and no prefix, a missing
// interpreter.
func TestStartFailed(t *testing.T) {
	t.Parallel()
	r := newTestRunner(t, Options{})
	for _, tc := range []struct{ name, content, says string }{
		{"plain.sh", "echo hello\n", "no #! line"},
		{"missing.sh", "#!/no/such/interpreter\necho hello\n", "not found"},
	} {
		res, err := r.Run(context.Background(), Script{Name: tc.name, Content: []byte(tc.content)}, secret.FromString("S3cret-in-stdin"), nil)
		if !errors.Is(err, ErrNotStarted) || faultCode(err) != "script_start_failed" || res.ReturnCode != -1 {
			t.Errorf("%s: %+v %v, want ErrNotStarted (script_start_failed)", tc.name, res, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), tc.name) || strings.Contains(err.Error(), "S3cret") {
			t.Errorf("%s: message %q", tc.name, err)
		}
	}
}

// TestRunRedacts checks redaction of what a script prints: raw, JSON-escaped, base64 at every
// alignment and inside longer blobs, the stdin line and the decoded params.
func TestRunRedacts(t *testing.T) {
	t.Parallel()
	need(t, "bash", "jq", "base64")
	p := simpleParams()
	p.NewPassword = secret.FromString(`Zk9"q/+w\é~>?<&x`)
	line, _ := p.Line()
	params, records := decodeLine(t, line.Reveal())
	sh := `#!/bin/bash
set -e
IFS= read -r line
json=$(echo "$line" | base64 -d)
pw=$(echo "$json" | jq -r .newPassword)
echo "raw:$pw"
printf '%s' "$pw" | base64 -w0; echo
printf 'x%s' "$pw" | base64 -w0; echo
printf 'xy%s' "$pw" | base64 -w0; echo
printf 'head-%s-tail' "$pw" | base64 -w0 | tr '+/' '-_'; echo
printf 'h-%s-tail' "$pw" | base64 -w0 | tr -d '='; echo
echo "$json" | jq -c '{p: .newPassword}'
echo "$json" | jq -ac '{p: .newPassword}'
echo "line:$line"
echo "json:$json"
echo "$json" | jq -r .records
echo "$json" | jq -r .records | base64 -d; echo
echo "$pw" >&2
`
	r := newTestRunner(t, Options{})
	res, err := run(t, r, Script{Name: "leak.sh", Content: []byte(sh)}, p)
	if err != nil || res.ReturnCode != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	out := res.Stdout + res.Stderr
	pw := p.NewPassword.Reveal()
	for _, s := range []string{pw, `Zk9\"q/+w`, "0ld-Secret-pw", "api-T0ken-Secret", line.Reveal(), string(params), string(records)} {
		if strings.Contains(out, s) {
			t.Errorf("output holds %q:\n%s", s, out)
		}
	}
	// No run of 4 characters of the base64 of the password, at any alignment, in either
	// alphabet, away from the edges that depend on the neighbouring bytes.
	for _, enc := range []func([]byte) string{base64.StdEncoding.EncodeToString, base64.URLEncoding.EncodeToString} {
		for _, pre := range []string{"", "x", "xy", "head-", "h-"} {
			e := enc([]byte(pre + pw + "-tail"))
			mid := e[(len(pre)*8+5)/6 : (len(pre)+len(pw))*8/6]
			for i := 0; i+4 <= len(mid); i++ {
				if strings.Contains(out, mid[i:i+4]) {
					t.Errorf("output holds %q of the base64 of %q:\n%s", mid[i:i+4], pre+pw, out)
				}
			}
		}
	}
	if !strings.HasPrefix(res.Stdout, "raw:[REDACTED]\n") || res.Stderr != "[REDACTED]\n" || strings.Count(out, "[REDACTED]") < 14 {
		t.Errorf("output:\n%s", out)
	}
}

// TestRedactStraddle checks a secret that straddles the 64 KiB cap: nothing of it is shown.
func TestRedactStraddle(t *testing.T) {
	t.Parallel()
	need(t, "bash")
	p := simpleParams()
	sh := "#!/bin/bash\nIFS= read -r line\nhead -c 65531 /dev/zero | tr '\\0' a\nprintf N3w-Secret-pw\nhead -c 100000 /dev/zero | tr '\\0' b\n" +
		"head -c 65530 /dev/zero | tr '\\0' a >&2\nprintf N3w-Secret-pw | base64 >&2\nhead -c 100 /dev/zero | tr '\\0' b >&2\n"
	r := newTestRunner(t, Options{})
	res, err := run(t, r, Script{Name: "straddle.sh", Content: []byte(sh)}, p)
	if err != nil || res.ReturnCode != 0 {
		t.Fatalf("%v %v", res.ReturnCode, err)
	}
	if want := strings.Repeat("a", 65531) + "[REDA…[truncated]"; res.Stdout != want {
		t.Errorf("stdout ends %q", res.Stdout[len(res.Stdout)-40:])
	}
	if want := strings.Repeat("a", 65530) + "[REDAC…[truncated]"; res.Stderr != want {
		t.Errorf("stderr ends %q", res.Stderr[len(res.Stderr)-40:])
	}
}
