// Package deploy_test checks the deployment files: the systemd units, the Dockerfile and the
// example configuration.
package deploy_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/config"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
)

// childEnv makes this test binary, run again under a unit's restrictions, make the script
// sandbox and report what a script gets (see sandboxChild).
const childEnv = "KEYTURN_DEPLOY_SANDBOX_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(sandboxChild())
	}
	os.Exit(m.Run())
}

// sandboxChild does what the server does at start (script.Choose: make a sandbox, run a
// check script in it), then runs a script that prints its uid and its capabilities, and
// prints that script's output.
func sandboxChild() int {
	ctx := context.Background()
	sb, warning, err := script.Choose(ctx, "", false, false)
	if err != nil || warning != "" || sb.Mode != script.Sandboxed {
		fmt.Fprintf(os.Stderr, "no sandbox: mode %q, warning %q, error %v\n", sb.Mode, warning, err)
		return 1
	}
	r := script.NewRunner(script.Options{Sandbox: &sb})
	res, err := r.Run(ctx, script.Script{Name: "status.sh",
		Content: []byte("#!/bin/sh\ngrep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status\n")},
		secret.FromString("unused"), nil)
	if err != nil || res.ReturnCode != 0 {
		fmt.Fprintf(os.Stderr, "script: exit %d, error %v: %s\n", res.ReturnCode, err, res.Stderr)
		return 1
	}
	fmt.Print(res.Stdout)
	return 0
}

// unit is a systemd unit file, parsed: every assignment of each section's keys, in order.
type unit struct {
	path     string
	sections map[string]map[string][]string
}

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{path: path, sections: map[string]map[string][]string{}}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u.sections[section] == nil {
				u.sections[section] = map[string][]string{}
			}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: cannot read line %q", path, line)
			}
			u.sections[section][key] = append(u.sections[section][key], value)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// get returns a key's last assignment in [Service], and whether it has one.
func (u unit) get(key string) (string, bool) {
	vs := u.sections["Service"][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// want fails the test unless the [Service] key is set to value.
func (u unit) want(t *testing.T, key, value string) {
	t.Helper()
	if got, ok := u.get(key); !ok || got != value {
		t.Errorf("%s: %s=%q, want %q", u.path, key, got, value)
	}
}

// words returns the space-separated words of every assignment of a [Service] key.
func (u unit) words(key string) []string {
	var all []string
	for _, v := range u.sections["Service"][key] {
		all = append(all, strings.Fields(v)...)
	}
	return all
}

// analyze runs systemd-analyze on a copy of the unit whose ExecStart names an executable that
// exists (verify checks it), and fails on any complaint: verify exits 0 even for an unknown key
// or a value it cannot parse, and only says so.
func analyze(t *testing.T, u unit, maxExposure string) {
	t.Helper()
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed to check the units (Debian: apt-get install systemd; .ci/run installs it): %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "keyturn")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(u.path)
	if err != nil {
		t.Fatal(err)
	}
	const installed = "/usr/local/bin/keyturn"
	if !strings.Contains(string(content), "ExecStart="+installed+" ") {
		t.Fatalf("%s: ExecStart does not run %s", u.path, installed)
	}
	copyPath := filepath.Join(dir, filepath.Base(u.path))
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(content), installed, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool, "verify", "--man=no", copyPath)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", u.path, err, out)
	}
	// The exposure score systemd gives the unit's sandboxing (0 best, 10 worst), as 0..100.
	cmd = exec.Command(tool, "security", "--offline=yes", "--no-pager", "--threshold="+maxExposure, copyPath)
	cmd.Dir = dir
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security %s: exposure above %s/100: %v\n%s", u.path, maxExposure, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "Overall exposure level") {
			t.Logf("%s: %s", u.path, strings.TrimSpace(line))
		}
	}
}

// exampleConfig loads deploy/keyturn.yaml as the server would, with env as its environment.
func exampleConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	for _, name := range config.EnvVars() {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.Load("keyturn.yaml", nil)
	if err != nil {
		t.Fatalf("keyturn.yaml: %v", err)
	}
	return cfg
}

// unitEnv returns the KEYTURN_* variables a unit sets, failing on one the server does not read.
func unitEnv(t *testing.T, u unit) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, assignment := range u.words("Environment") {
		k, v, _ := strings.Cut(assignment, "=")
		if strings.HasPrefix(k, "KEYTURN_") && !slices.Contains(config.EnvVars(), k) {
			t.Errorf("%s: Environment=%s: the server reads no %s", u.path, assignment, k)
		}
		env[k] = v
	}
	return env
}

// TestExampleConfigLoads loads deploy/keyturn.yaml, which the units read as
// /etc/keyturn/keyturn.yaml: every key in it exists and every value passes validation.
func TestExampleConfigLoads(t *testing.T) {
	cfg := exampleConfig(t, nil)
	if cfg.Data != "/var/lib/keyturn" || cfg.DisableScripts || len(cfg.AuditSinks) == 0 {
		t.Errorf("keyturn.yaml: data %q, disable_scripts %v, %d audit sinks; want /var/lib/keyturn, scripts on, a sink",
			cfg.Data, cfg.DisableScripts, len(cfg.AuditSinks))
	}
}

// TestSystemdUnits checks the two units: systemd accepts every line of each, each is as
// hardened as its kind of server allows (an exposure score systemd computes), the data
// directory of the example configuration is the one writable path, and the script sandbox
// works under keyturn.service's capability bounding set with no_new_privs, as the server
// would make it under systemd.
func TestSystemdUnits(t *testing.T) {
	t.Run("keyturn.service", func(t *testing.T) {
		u := readUnit(t, "systemd/keyturn.service")
		analyze(t, u, "40")
		// Root, to sandbox scripts: no User=, no DynamicUser.
		if user, ok := u.get("User"); ok && user != "root" {
			t.Errorf("%s: User=%s: the server must be root to sandbox scripts", u.path, user)
		}
		for key, value := range map[string]string{
			"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
			"NoNewPrivileges": "yes", "StateDirectory": "keyturn", "StateDirectoryMode": "0700",
			"UMask": "0077", "LimitCORE": "0", "KillMode": "control-group",
		} {
			u.want(t, key, value)
		}
		cfg := exampleConfig(t, unitEnv(t, u))
		if cfg.DisableScripts {
			t.Errorf("%s: scripts are disabled", u.path)
		}
		if !slices.Contains(u.words("ReadWritePaths"), cfg.Data) {
			t.Errorf("%s: ReadWritePaths=%v does not hold the data directory %s", u.path, u.words("ReadWritePaths"), cfg.Data)
		}
		if ns := u.words("RestrictNamespaces"); !slices.Equal(slices.Sorted(slices.Values(ns)), []string{"ipc", "mnt", "pid"}) {
			t.Errorf("%s: RestrictNamespaces=%v, want exactly the sandbox's: mnt pid ipc", u.path, ns)
		}

		// The sandbox under the unit's limits: only the bounding set's capabilities (what
		// a root service gets), no_new_privs.
		if os.Geteuid() != 0 {
			t.Fatal("the tests run as root, as CI does: the sandbox needs root")
		}
		caps := []string{"-all"}
		for _, c := range u.words("CapabilityBoundingSet") {
			caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
		}
		// Under strace, to list the system calls it makes, which the unit's filter must allow.
		strace, err := exec.LookPath("strace")
		if err != nil {
			t.Fatalf("strace is needed to check the unit's system call filter (Debian: apt-get install strace; .ci/run installs it): %v", err)
		}
		calls := filepath.Join(t.TempDir(), "strace")
		cmd := exec.Command(strace, "-f", "-c", "-o", calls,
			"setpriv", "--no-new-privs", "--inh-caps=-all", "--bounding-set="+strings.Join(caps, ","), os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"=1")
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("the script sandbox under %s's CapabilityBoundingSet and NoNewPrivileges: %v\n%s", u.path, err, stderr)
		}
		status := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			k, v, _ := strings.Cut(line, ":")
			status[k] = strings.Join(strings.Fields(v), " ")
		}
		want := map[string]string{"Uid": "65534 65534 65534 65534", "CapInh": "0000000000000000", "CapPrm": "0000000000000000",
			"CapEff": "0000000000000000", "CapBnd": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1"}
		for k, v := range want {
			if status[k] != v {
				t.Errorf("a sandboxed script under %s: %s %q, want %q\n%s", u.path, k, status[k], v, out)
			}
		}
		allowed := allowedSyscalls(t, u)
		used := tracedSyscalls(t, calls)
		for _, call := range used {
			if !allowed[call] {
				t.Errorf("%s: SystemCallFilter refuses %s, which the script sandbox calls", u.path, call)
			}
		}
		t.Logf("the sandbox made %d kinds of system call", len(used))
	})

	t.Run("keyturn-noscripts.service", func(t *testing.T) {
		u := readUnit(t, "systemd/keyturn-noscripts.service")
		analyze(t, u, "20")
		for key, value := range map[string]string{
			"DynamicUser": "yes", "CapabilityBoundingSet": "", "NoNewPrivileges": "yes", "RestrictNamespaces": "yes",
			"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "StateDirectory": "keyturn",
			"UMask": "0077", "LimitCORE": "0",
		} {
			u.want(t, key, value)
		}
		if user, ok := u.get("User"); ok {
			t.Errorf("%s: User=%s beside DynamicUser", u.path, user)
		}
		cfg := exampleConfig(t, unitEnv(t, u))
		if !cfg.DisableScripts {
			t.Errorf("%s: the server would try to sandbox scripts, which a DynamicUser cannot: set KEYTURN_DISABLE_SCRIPTS=true", u.path)
		}
		if !slices.Contains(u.words("ReadWritePaths"), cfg.Data) {
			t.Errorf("%s: ReadWritePaths=%v does not hold the data directory %s", u.path, u.words("ReadWritePaths"), cfg.Data)
		}
	})
}

// allowedSyscalls resolves a unit's SystemCallFilter lines (allow-lists and ~deny-lists, with
// @groups) into the system calls it lets through, with systemd's own group tables.
func allowedSyscalls(t *testing.T, u unit) map[string]bool {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "syscall-filter", "--no-pager").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	groups := map[string][]string{}
	group := ""
	for _, line := range strings.Split(string(out), "\n") {
		switch f := strings.TrimSpace(line); {
		case strings.HasPrefix(line, "@"):
			group = f
		case f == "" || strings.HasPrefix(f, "#") || group == "":
		default:
			groups[group] = append(groups[group], f)
		}
	}
	var expand func(name string, into map[string]bool, depth int)
	expand = func(name string, into map[string]bool, depth int) {
		if !strings.HasPrefix(name, "@") {
			into[name] = true
			return
		}
		members, ok := groups[name]
		if !ok || depth > 10 {
			t.Fatalf("%s: SystemCallFilter names %s, which systemd-analyze does not know", u.path, name)
		}
		for _, m := range members {
			expand(m, into, depth+1)
		}
	}
	allowed := map[string]bool{}
	for _, line := range u.sections["Service"]["SystemCallFilter"] {
		deny := strings.HasPrefix(line, "~")
		set := map[string]bool{}
		for _, name := range strings.Fields(strings.TrimPrefix(line, "~")) {
			expand(name, set, 0)
		}
		for call := range set {
			if deny {
				delete(allowed, call)
			} else {
				allowed[call] = true
			}
		}
	}
	if len(allowed) == 0 {
		t.Fatalf("%s: no SystemCallFilter allow-list", u.path)
	}
	return allowed
}

// tracedSyscalls reads the system calls an strace -c summary counts.
func tracedSyscalls(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] == "%" || strings.HasPrefix(f[0], "-") || f[len(f)-1] == "total" {
			continue
		}
		calls = append(calls, f[len(f)-1])
	}
	if len(calls) < 20 {
		t.Fatalf("strace counted %d system calls: cannot read %s\n%s", len(calls), path, b)
	}
	return calls
}
