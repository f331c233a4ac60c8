package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keyturn/keyturn/internal/config"
)

// Images cannot be built on keyturn's development machines (no daemon, no registry), and
// hadolint cannot be fetched: TestDockerfile reads the Dockerfile and checks what it promises,
// and runs its HEALTHCHECK against a real server.

// instruction is one Dockerfile instruction, its continuation lines joined.
type instruction struct {
	cmd  string // upper-cased: FROM, RUN, ...
	args string
	line int
}

// stage is a build stage: its FROM and the instructions under it.
type stage struct {
	image, name string
	ins         []instruction
}

// all returns the stage's instructions of one kind.
func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// env returns the variables the stage's ENV instructions set (KEY=VALUE forms).
func (s stage) env(t *testing.T) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, in := range s.all("ENV") {
		for _, kv := range strings.Fields(in.args) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Errorf("Dockerfile:%d: ENV %s: use the KEY=VALUE form", in.line, in.args)
			}
			env[k] = strings.Trim(v, `"`)
		}
	}
	return env
}

// parseDockerfile returns the global ARGs (before the first FROM) and the stages.
func parseDockerfile(t *testing.T, path string) (map[string]string, []stage) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ins []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		cont := strings.HasSuffix(trimmed, `\`)
		cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
		if cont {
			continue
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		ins = append(ins, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	globals := map[string]string{}
	var stages []stage
	for _, in := range ins {
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			st := stage{image: f[len(f)-1]}
			if len(f) >= 3 && strings.EqualFold(f[len(f)-2], "AS") {
				st.image, st.name = f[len(f)-3], f[len(f)-1]
			}
			for k, v := range globals {
				st.image = strings.ReplaceAll(st.image, "${"+k+"}", v)
			}
			stages = append(stages, st)
		case len(stages) == 0 && in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			globals[k] = v
		case len(stages) == 0:
			t.Errorf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
		default:
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		}
	}
	return globals, stages
}

// execForm parses an exec-form (JSON array) argument list; ok is false for the shell form.
func execForm(args string) ([]string, bool) {
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil || len(argv) == 0 {
		return nil, false
	}
	return argv, true
}

// TestDockerfile checks the image the Dockerfile describes: a multi-stage build of a static
// binary with the go.mod toolchain; a default target that runs as a non-root user with scripts
// disabled; a scripts target that runs as root with the sandbox's tools; for both, the data
// directory as a volume, the listen port exposed, exec-form entry points, and a HEALTHCHECK
// that is a keyturn command, run here against a real server: ready, then not once it stops.
func TestDockerfile(t *testing.T) {
	globals, stages := parseDockerfile(t, "../../Dockerfile")
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a build stage and the image", len(stages))
	}

	// The toolchain is go.mod's, and the image's builder uses exactly it.
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if goVersion == nil || globals["GO_VERSION"] != string(goVersion[1]) {
		t.Errorf("Dockerfile: ARG GO_VERSION=%s, go.mod requires go %s", globals["GO_VERSION"], goVersion[1])
	}
	for _, st := range stages {
		if strings.HasPrefix(st.image, "golang:") && !strings.HasPrefix(st.image, "golang:"+globals["GO_VERSION"]) {
			t.Errorf("Dockerfile: stage %s builds FROM %s, not golang:${GO_VERSION}", st.name, st.image)
		}
		name, tag, _ := strings.Cut(st.image[strings.LastIndex(st.image, "/")+1:], ":")
		if !strings.Contains(st.image, "@sha256:") && (tag == "" || tag == "latest" || strings.Contains(tag, "$")) {
			t.Errorf("Dockerfile: FROM %s: pin a tag (or digest), not %q", st.image, name+":"+tag)
		}
		for _, in := range st.ins {
			if in.cmd == "ADD" {
				t.Errorf("Dockerfile:%d: ADD: use COPY (ADD fetches URLs and unpacks archives)", in.line)
			}
			if in.cmd == "RUN" && regexp.MustCompile(`(curl|wget)[^|]*\|\s*(ba)?sh`).MatchString(in.args) {
				t.Errorf("Dockerfile:%d: a downloaded script piped into a shell", in.line)
			}
		}
	}

	// The build stage: a static binary, version information stamped.
	build := stages[0]
	if build.name != "build" || !strings.HasPrefix(build.image, "golang:") {
		t.Fatalf("Dockerfile: the first stage is %s AS %s, want golang:... AS build", build.image, build.name)
	}
	benv := build.env(t)
	if benv["CGO_ENABLED"] != "0" || benv["GOTOOLCHAIN"] != "local" || benv["GOFLAGS"] != "-trimpath" {
		t.Errorf("Dockerfile: the build stage's ENV %v, want CGO_ENABLED=0 (a static binary), GOTOOLCHAIN=local, GOFLAGS=-trimpath", benv)
	}
	var binary string
	for _, in := range build.all("RUN") {
		if !strings.Contains(in.args, "go build") {
			continue
		}
		if !strings.Contains(in.args, "-tags timetzdata") {
			t.Errorf("Dockerfile:%d: go build without -tags timetzdata: schedules' time zones would need the base image's zoneinfo", in.line)
		}
		for _, m := range regexp.MustCompile(`-X main\.(\w+)=`).FindAllStringSubmatch(in.args, -1) {
			if !regexp.MustCompile(`(?m)^\s*` + m[1] + `\s+string$`).Match(mustRead(t, "version.go")) {
				t.Errorf("Dockerfile:%d: -X main.%s sets no variable of version.go", in.line, m[1])
			}
		}
		if m := regexp.MustCompile(`-o (\S+) \./cmd/keyturn`).FindStringSubmatch(in.args); m != nil {
			binary = m[1]
		}
	}
	if binary == "" {
		t.Fatal("Dockerfile: no RUN go build ... -o PATH ./cmd/keyturn in the build stage")
	}
	// CGO_ENABLED=0 silently builds a cgo package without its C code: none may be a dependency.
	list := exec.Command("go", "list", "-deps", "-f", "{{if and .CgoFiles (not .Standard)}}{{.ImportPath}}{{end}}", "./cmd/keyturn")
	list.Dir = "../.."
	list.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := list.Output(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("dependencies that need cgo (the image's binary is built with CGO_ENABLED=0): %q %v", out, err)
	}

	// The images: every stage after the build.
	final := stages[len(stages)-1]
	var haveScripts bool
	for _, st := range stages[1:] {
		env := st.env(t)
		for k := range env {
			if strings.HasPrefix(k, "KEYTURN_") && !slices.Contains(config.EnvVars(), k) {
				t.Errorf("Dockerfile: stage %s: ENV %s: the server reads no such variable", st.name, k)
			}
		}
		var installed string
		for _, in := range st.all("COPY") {
			if f := strings.Fields(in.args); slices.Contains(f, "--from=build") && len(f) >= 3 && f[len(f)-2] == binary {
				installed = f[len(f)-1]
			}
		}
		if installed == "" {
			t.Errorf("Dockerfile: stage %s does not COPY --from=build %s", st.name, binary)
			continue
		}
		if e := st.all("ENTRYPOINT"); len(e) != 1 || !slices.Equal(mustExec(t, e[0]), []string{installed}) {
			t.Errorf("Dockerfile: stage %s: want ENTRYPOINT [%q]", st.name, installed)
		}
		if c := st.all("CMD"); len(c) != 1 || !slices.Equal(mustExec(t, c[0]), []string{"server"}) {
			t.Errorf("Dockerfile: stage %s: want CMD [\"server\"]", st.name)
		}
		if env["KEYTURN_DATA"] == "" {
			t.Errorf("Dockerfile: stage %s sets no KEYTURN_DATA", st.name)
		} else if v := st.all("VOLUME"); len(v) != 1 || !slices.Contains(mustExec(t, v[0]), env["KEYTURN_DATA"]) {
			t.Errorf("Dockerfile: stage %s: want VOLUME [%q], the data directory", st.name, env["KEYTURN_DATA"])
		}
		_, port, err := net.SplitHostPort(env["KEYTURN_LISTEN"])
		if err != nil {
			t.Errorf("Dockerfile: stage %s: KEYTURN_LISTEN=%q is not host:port", st.name, env["KEYTURN_LISTEN"])
		} else if e := st.all("EXPOSE"); len(e) != 1 || e[0].args != port {
			t.Errorf("Dockerfile: stage %s: want EXPOSE %s, the port of KEYTURN_LISTEN", st.name, port)
		}
		users := st.all("USER")
		root := len(users) == 0 || regexp.MustCompile(`^(root|0)(:.*)?$`).MatchString(users[len(users)-1].args)
		scriptsOff := env["KEYTURN_DISABLE_SCRIPTS"] == "true"
		switch {
		case st.name == final.name && root:
			t.Errorf("Dockerfile: the default image (the last stage, %s) runs as root: want a non-root USER", st.name)
		case !root && !scriptsOff:
			t.Errorf("Dockerfile: stage %s runs as a non-root user, which cannot sandbox scripts, so the server would refuse to start: set KEYTURN_DISABLE_SCRIPTS=true", st.name)
		case root && !scriptsOff:
			haveScripts = true
			checkScriptTools(t, st)
		}
		h := st.all("HEALTHCHECK")
		if len(h) != 1 {
			t.Errorf("Dockerfile: stage %s: want one HEALTHCHECK", st.name)
			continue
		}
		_, cmd, _ := strings.Cut(h[0].args, "CMD ")
		argv, ok := execForm(cmd)
		if !ok || argv[0] != installed {
			t.Errorf("Dockerfile:%d: HEALTHCHECK %s: want CMD [%q, ...] (exec form: the default image has no shell, nor curl)", h[0].line, h[0].args, installed)
			continue
		}
		t.Run(st.name+" HEALTHCHECK", func(t *testing.T) { checkHealthcheck(t, st.name, argv[1:], env) })
	}
	if !haveScripts {
		t.Error("Dockerfile: no target runs PAM scripts (root, scripts not disabled)")
	}

	// The build context leaves out the history and anything secret a working copy may hold.
	ignore := strings.Fields(string(mustRead(t, "../../.dockerignore")))
	for _, must := range []string{".git", "**/*.json", "**/*.pem", "**/*.key"} {
		if !slices.Contains(ignore, must) {
			t.Errorf(".dockerignore: want %s", must)
		}
	}
	for _, need := range []string{"cmd", "internal", "examples", "go.mod", "go.sum"} {
		if slices.Contains(ignore, need) {
			t.Errorf(".dockerignore: %s is needed to build", need)
		}
	}
}

// checkScriptTools checks that an image that runs scripts installs what the sandbox and
// Keeper's scripts need, and keeps no package lists.
func checkScriptTools(t *testing.T, st stage) {
	t.Helper()
	var run string
	for _, in := range st.all("RUN") {
		run += in.args + " "
	}
	for _, pkg := range []string{"bash", "jq", "curl", "python3", "python3-requests", "util-linux", "mount", "ca-certificates"} {
		if !regexp.MustCompile(`\s` + regexp.QuoteMeta(pkg) + `(\s|$)`).MatchString(run) {
			t.Errorf("Dockerfile: stage %s runs scripts but does not install %s", st.name, pkg)
		}
	}
	if !strings.Contains(run, "--no-install-recommends") || !strings.Contains(run, "rm -rf /var/lib/apt/lists") {
		t.Errorf("Dockerfile: stage %s: apt-get install --no-install-recommends, then rm -rf /var/lib/apt/lists/*", st.name)
	}
}

// checkHealthcheck runs a stage's HEALTHCHECK command, in the stage's environment, against a
// server listening where that environment says (on this test's port): it must report ready,
// then, once the server is gone, not ready.
func checkHealthcheck(t *testing.T, name string, args []string, env map[string]string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	initVault(t, dir)
	srv := startServer(t, "--data", dir)
	_, port, _ := net.SplitHostPort(srv.addr)
	for k, v := range env {
		t.Setenv(k, v)
	}
	host, _, _ := net.SplitHostPort(env["KEYTURN_LISTEN"])
	t.Setenv("KEYTURN_LISTEN", net.JoinHostPort(host, port))
	if code, out, errOut := keyturn(t, args...); code != 0 {
		t.Errorf("Dockerfile: stage %s: HEALTHCHECK keyturn %s against a ready server: exit %d %q %q", name, strings.Join(args, " "), code, out, errOut)
	}
	srv.stop(t)
	if code, _, _ := keyturn(t, args...); code == 0 {
		t.Errorf("Dockerfile: stage %s: HEALTHCHECK keyturn %s with the server stopped: exit 0", name, strings.Join(args, " "))
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustExec(t *testing.T, in instruction) []string {
	t.Helper()
	argv, ok := execForm(in.args)
	if !ok {
		t.Errorf("Dockerfile:%d: %s %s: use the exec form [\"...\"]", in.line, in.cmd, in.args)
	}
	return argv
}
