package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/keyturn/keyturn/internal/config"
)

// clearEnv removes every KEYTURN_* variable for the test (restored afterwards).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "KEYTURN_") {
			t.Setenv(k, "") // registers the restore
			os.Unsetenv(k)
		}
	}
}

// serverFlags builds the flag set of `keyturn server` (cmd/keyturn/server.go) and parses args.
func serverFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	f := pflag.NewFlagSet("server", pflag.ContinueOnError)
	f.String("config", "", "YAML configuration file")
	config.AddFlags(f)
	if err := f.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func writeYAML(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyturn.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaults(t *testing.T) {
	clearEnv(t)
	got, err := config.Load("", serverFlags(t, "--data", "/d"))
	if err != nil {
		t.Fatal(err)
	}
	want := withDefaults(config.Config{Data: "/d", Listen: "127.0.0.1:8200", TokenTTL: time.Hour,
		ShutdownTimeout: 30 * time.Second, LogLevel: "info"})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Load = %+v, want %+v", got, want)
	}
	if !reflect.DeepEqual(config.Defaults(), config.Config{Listen: "127.0.0.1:8200", TokenTTL: time.Hour,
		ShutdownTimeout: 30 * time.Second, LogLevel: "info", RotationWorkers: 16, RotationAttempts: 5,
		RotationBackoff: time.Second, RotationBackoffMax: 5 * time.Minute, RotationLease: 30 * time.Second, TargetRate: 20, ScriptUser: "nobody",
		ScheduleMinInterval: time.Hour, ScheduleCatchUp: "run_once", HeartbeatInterval: 24 * time.Hour}) {
		t.Fatalf("Defaults = %+v", config.Defaults())
	}
}

const fullYAML = `
data: /file/data
listen: 127.0.0.1:1001
passphrase_file: /file/pass
token_ttl: 2h
shutdown_timeout: 10s
log_level: warn
`

// Each key comes from the highest layer that sets it: defaults < file < env < changed flags.
func TestLayering(t *testing.T) {
	clearEnv(t)
	path := writeYAML(t, fullYAML)
	t.Setenv("KEYTURN_LISTEN", "127.0.0.1:1002")
	t.Setenv("KEYTURN_PASSPHRASE_FILE", "/env/pass")
	t.Setenv("KEYTURN_TOKEN_TTL", "3h")
	t.Setenv("KEYTURN_LOG_LEVEL", "debug")
	fs := serverFlags(t, "--config", path, "--listen", "127.0.0.1:1003", "--token-ttl", "4h")

	got, err := config.Load(path, fs)
	if err != nil {
		t.Fatal(err)
	}
	want := withDefaults(config.Config{
		Data:            "/file/data",     // file only
		Listen:          "127.0.0.1:1003", // file < env < flag
		PassphraseFile:  "/env/pass",      // file < env
		TokenTTL:        4 * time.Hour,    // file < env < flag
		ShutdownTimeout: 10 * time.Second, // file over the default
		LogLevel:        "debug",          // file < env
	})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Load\n got %+v\nwant %+v", got, want)
	}

	// Without the flags, env wins over the file; without env, the file wins over defaults.
	got, err = config.Load(path, serverFlags(t))
	if err != nil {
		t.Fatal(err)
	}
	want.Listen, want.TokenTTL = "127.0.0.1:1002", 3*time.Hour
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Load without flags\n got %+v\nwant %+v", got, want)
	}
	clearEnv(t)
	got, err = config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	want = withDefaults(config.Config{Data: "/file/data", Listen: "127.0.0.1:1001", PassphraseFile: "/file/pass",
		TokenTTL: 2 * time.Hour, ShutdownTimeout: 10 * time.Second, LogLevel: "warn"})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Load of the file alone\n got %+v\nwant %+v", got, want)
	}
}

// A flag left at its default does not override the file or the environment, while a flag
// set explicitly does, even to the default's value.
func TestUnchangedFlagsDoNotOverride(t *testing.T) {
	clearEnv(t)
	path := writeYAML(t, "data: /file/data\nlisten: 127.0.0.1:1001\nlog_level: warn\n")
	t.Setenv("KEYTURN_TOKEN_TTL", "2h")
	t.Setenv("KEYTURN_SHUTDOWN_TIMEOUT", "5s")

	got, err := config.Load(path, serverFlags(t, "--data", "/flag/data"))
	if err != nil {
		t.Fatal(err)
	}
	want := withDefaults(config.Config{Data: "/flag/data", Listen: "127.0.0.1:1001", TokenTTL: 2 * time.Hour,
		ShutdownTimeout: 5 * time.Second, LogLevel: "warn"})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Load\n got %+v\nwant %+v", got, want)
	}

	got, err = config.Load(path, serverFlags(t, "--listen", "127.0.0.1:8200", "--token-ttl", "1h", "--log-level", "info"))
	if err != nil {
		t.Fatal(err)
	}
	want = withDefaults(config.Config{Data: "/file/data", Listen: "127.0.0.1:8200", TokenTTL: time.Hour,
		ShutdownTimeout: 5 * time.Second, LogLevel: "info"})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("flags set to their defaults\n got %+v\nwant %+v", got, want)
	}
}

// Client settings share the KEYTURN_ prefix but are not server configuration.
func TestClientVariablesIgnored(t *testing.T) {
	clearEnv(t)
	t.Setenv("KEYTURN_DATA", "/env/data")
	for _, k := range []string{"KEYTURN_TOKEN", "KEYTURN_ADDR", "KEYTURN_TEAM", "KEYTURN_KEY_ID", "KEYTURN_KEY_SECRET",
		"KEYTURN_CONFIG", "KEYTURN_TOKEN_TTL_X", "KEYTURN_"} {
		t.Setenv(k, "not:a/valid value")
	}
	got, err := config.Load("", serverFlags(t))
	if err != nil {
		t.Fatalf("client variables broke Load: %v", err)
	}
	want := config.Defaults()
	want.Data = "/env/data"
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Load\n got %+v\nwant %+v", got, want)
	}
}

func TestEnvKeyCase(t *testing.T) {
	clearEnv(t)
	t.Setenv("KEYTURN_DATA", "/env/data")
	t.Setenv("KEYTURN_LOG_LEVEL", "ERROR")
	got, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Data != "/env/data" || got.LogLevel != "ERROR" {
		t.Fatalf("Load = %+v", got)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		clearEnv(t)
		missing := filepath.Join(t.TempDir(), "nope.yaml")
		_, err := config.Load(missing, serverFlags(t, "--data", "/d"))
		if err == nil || !strings.Contains(err.Error(), missing) {
			t.Fatalf("Load of a missing file = %v, want an error naming it", err)
		}
	})
	t.Run("bad YAML", func(t *testing.T) {
		clearEnv(t)
		path := writeYAML(t, "data: [unclosed\n")
		if _, err := config.Load(path, nil); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("Load of bad YAML = %v, want an error naming the file", err)
		}
	})
	t.Run("bad duration in env", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("KEYTURN_DATA", "/d")
		t.Setenv("KEYTURN_TOKEN_TTL", "soon")
		if _, err := config.Load("", nil); err == nil || !strings.Contains(err.Error(), "token_ttl") {
			t.Fatalf("Load with KEYTURN_TOKEN_TTL=soon = %v, want an error naming token_ttl", err)
		}
	})
	t.Run("validated", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("KEYTURN_TOKEN_TTL", "48h")
		cfg, err := config.Load("", serverFlags(t, "--log-level", "loud"))
		if err == nil {
			t.Fatal("Load validated nothing")
		}
		for _, key := range []string{"data:", "token_ttl:", "log_level:"} {
			if !strings.Contains(err.Error(), key) {
				t.Errorf("Load error %q does not name %s", err, key)
			}
		}
		if cfg.TokenTTL != 48*time.Hour || cfg.LogLevel != "loud" {
			t.Errorf("Load returned %+v with the error, want the loaded values", cfg)
		}
	})
}

func TestValidate(t *testing.T) {
	valid := config.Defaults()
	valid.Data = "/d"
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	keys := []string{"data:", "listen:", "storage:", "token_ttl:", "shutdown_timeout:", "log_level:"}
	cases := []struct {
		name   string
		change func(*config.Config)
		key    string // "" = valid
	}{
		{"missing data", func(c *config.Config) { c.Data = "" }, "data:"},
		{"listen without port", func(c *config.Config) { c.Listen = "127.0.0.1" }, "listen:"},
		{"listen empty", func(c *config.Config) { c.Listen = "" }, "listen:"},
		{"listen on every address without TLS", func(c *config.Config) { c.Listen = ":8200" }, "listen:"},
		{"listen on a LAN address without TLS", func(c *config.Config) { c.Listen = "10.1.2.3:8200" }, "listen:"},
		{"listen on every address behind a TLS proxy", func(c *config.Config) { c.Listen, c.InsecureNoTLS = ":8200", true }, ""},
		{"listen on every address with TLS", func(c *config.Config) { c.Listen, c.TLSCertFile, c.TLSKeyFile = ":8200", "c.pem", "k.pem" }, ""},
		{"listen on localhost", func(c *config.Config) { c.Listen = "localhost:8200" }, ""},
		{"tls cert without key", func(c *config.Config) { c.TLSCertFile = "c.pem" }, "tls_cert_file"},
		{"listen IPv6", func(c *config.Config) { c.Listen = "[::1]:8200" }, ""},
		{"token_ttl too short", func(c *config.Config) { c.TokenTTL = time.Minute - time.Second }, "token_ttl:"},
		{"token_ttl 1m", func(c *config.Config) { c.TokenTTL = time.Minute }, ""},
		{"token_ttl 24h", func(c *config.Config) { c.TokenTTL = 24 * time.Hour }, ""},
		{"token_ttl too long", func(c *config.Config) { c.TokenTTL = 24*time.Hour + time.Second }, "token_ttl:"},
		{"token_ttl zero", func(c *config.Config) { c.TokenTTL = 0 }, "token_ttl:"},
		{"shutdown_timeout zero", func(c *config.Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout:"},
		{"bad log level", func(c *config.Config) { c.LogLevel = "verbose" }, "log_level:"},
		{"empty log level", func(c *config.Config) { c.LogLevel = "" }, "log_level:"},
		{"log level upper case", func(c *config.Config) { c.LogLevel = "WARN" }, ""},
		{"storage set", func(c *config.Config) { c.Storage = "sqlite:/tmp/x.db" }, "storage:"},
		{"storage host=", func(c *config.Config) { c.Storage = "host=db dbname=keyturn" }, "storage:"},
		{"storage without a host", func(c *config.Config) { c.Storage = "postgres:///keyturn" }, "storage:"},
		{"storage postgres", func(c *config.Config) { c.Storage = "postgres://keyturn@db.internal:5432/keyturn?sslmode=verify-full" }, ""},
		{"storage postgres passfile", func(c *config.Config) { c.Storage = "postgresql://keyturn@db/keyturn?passfile=/etc/keyturn/pgpass" }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := valid
			c.change(&cfg)
			err := cfg.Validate()
			if c.key == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want an error naming %s", c.key)
			}
			for _, k := range keys {
				if got := strings.HasPrefix(err.Error(), k) || strings.Contains(err.Error(), "\n"+k); got != (k == c.key) {
					t.Errorf("Validate = %q: names %s = %v", err, k, got)
				}
			}
		})
	}

	multi := config.Config{Listen: "nope", LogLevel: "x"}
	err := multi.Validate()
	for _, k := range []string{"data:", "listen:", "token_ttl:", "shutdown_timeout:", "log_level:"} {
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("Validate of a config wrong everywhere = %v, want it to name %s", err, k)
		}
	}

	level, err := config.Config{LogLevel: "debug"}.Level()
	if err != nil || level.String() != "DEBUG" {
		t.Errorf("Level(debug) = %v, %v", level, err)
	}
}

// The storage setting may hold a DSN with a password: the error never shows it.
func TestValidateRedactsDSN(t *testing.T) {
	for _, dsn := range []string{
		"postgres://keyturn:hunter2@db.internal:5432/keyturn?sslmode=disable",
		"postgresql://keyturn:hunter2@db.internal/keyturn",
		"postgres://keyturn:p@ss:hunter2@db/keyturn", // '@' and ':' in the password
		"postgres://db.internal/keyturn?user=keyturn&password=hunter2",
		"host=db.internal user=keyturn password=hunter2 dbname=keyturn",
		"keyturn:hunter2@tcp(db:3306)/keyturn",
	} {
		cfg := config.Defaults()
		cfg.Data, cfg.Storage = "/d", dsn
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "storage:") {
			t.Errorf("Validate with storage %q = %v, want a storage error", dsn, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Validate shows the DSN password: %v", err)
		}
	}

	// Through Load as well (the flag and the environment).
	clearEnv(t)
	t.Setenv("KEYTURN_STORAGE", "postgres://u:hunter2@db/k")
	_, err := config.Load("", serverFlags(t, "--data", "/d"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Load with KEYTURN_STORAGE = %v", err)
	}
	_, err = config.Load("", serverFlags(t, "--data", "/d", "--storage", "host=db password=hunter2"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Load with --storage = %v", err)
	}
}

// withDefaults fills the rotation settings, which these tests leave at their defaults.
func withDefaults(c config.Config) config.Config {
	d := config.Defaults()
	c.RotationWorkers, c.RotationAttempts, c.RotationBackoff, c.RotationBackoffMax =
		d.RotationWorkers, d.RotationAttempts, d.RotationBackoff, d.RotationBackoffMax
	c.TargetRate, c.TargetBurst = d.TargetRate, d.TargetBurst
	c.RotationLease = d.RotationLease
	c.ScriptUser = d.ScriptUser
	c.ScheduleMinInterval, c.ScheduleCatchUp, c.HeartbeatInterval = d.ScheduleMinInterval, d.ScheduleCatchUp, d.HeartbeatInterval
	return c
}

func TestRotationSettings(t *testing.T) {
	clearEnv(t)
	t.Setenv("KEYTURN_ROTATION_WORKERS", "3")
	got, err := config.Load("", serverFlags(t, "--data", "/d", "--rotation-backoff", "2s", "--script-dir", "/dev/shm"))
	if err != nil {
		t.Fatal(err)
	}
	if got.RotationWorkers != 3 || got.RotationBackoff != 2*time.Second || got.ScriptDir != "/dev/shm" || got.RotationAttempts != 5 {
		t.Fatalf("Load = %+v", got)
	}
	for _, bad := range [][]string{
		{"--rotation-workers", "0"}, {"--rotation-attempts", "0"}, {"--rotation-backoff", "10m"},
	} {
		if _, err := config.Load("", serverFlags(t, append([]string{"--data", "/d"}, bad...)...)); err == nil || !strings.Contains(err.Error(), "rotation_") {
			t.Errorf("%v: %v", bad, err)
		}
	}
}

func TestTargetRate(t *testing.T) {
	clearEnv(t)
	t.Setenv("KEYTURN_TARGET_RATE", "2.5")
	got, err := config.Load("", serverFlags(t, "--data", "/d", "--target-burst", "4"))
	if err != nil {
		t.Fatal(err)
	}
	if got.TargetRate != 2.5 || got.TargetBurst != 4 {
		t.Fatalf("Load = %+v", got)
	}
	if got, err = config.Load("", serverFlags(t, "--data", "/d", "--target-rate", "0")); err != nil || got.TargetRate != 0 {
		t.Fatalf("--target-rate 0 (unlimited): %+v %v", got, err)
	}
	for _, bad := range [][]string{{"--target-rate", "-1"}, {"--target-burst", "-2"}} {
		if _, err := config.Load("", serverFlags(t, append([]string{"--data", "/d"}, bad...)...)); err == nil || !strings.Contains(err.Error(), "target_rate") {
			t.Errorf("%v: %v", bad, err)
		}
	}
}

func TestAuditSinks(t *testing.T) {
	clearEnv(t)
	path := writeYAML(t, `
data: /d
audit_sinks:
  - name: archive
    type: jsonl
    path: /var/log/keyturn/audit.jsonl
  - name: siem
    type: webhook
    url: https://siem.example.com/keyturn
    secret_file: /etc/keyturn/webhook.key
  - name: syslog
    type: syslog
    network: tls
    address: logs.example.com:6514
    ca_file: /etc/keyturn/logs-ca.pem
`)
	got, err := config.Load(path, serverFlags(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []config.AuditSink{
		{Name: "archive", Type: "jsonl", Path: "/var/log/keyturn/audit.jsonl"},
		{Name: "siem", Type: "webhook", URL: "https://siem.example.com/keyturn", SecretFile: "/etc/keyturn/webhook.key"},
		{Name: "syslog", Type: "syslog", Network: "tls", Address: "logs.example.com:6514", CAFile: "/etc/keyturn/logs-ca.pem"},
	}
	if !reflect.DeepEqual(got.AuditSinks, want) {
		t.Fatalf("AuditSinks = %+v", got.AuditSinks)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"- {name: a, type: jsonl}", "needs a path"},
		{"- {name: A, type: jsonl, path: /x}", "is not 1 to 63"},
		{"- {name: a, type: kafka}", `type "kafka"`},
		{"- {name: a, type: webhook, url: 'http://siem.example.com/', secret_file: /k}", "must be https"},
		{"- {name: a, type: webhook, url: 'https://siem.example.com/'}", "secret_file"},
		{"- {name: a, type: syslog, network: smtp, address: 'h:1'}", `network "smtp"`},
		{"- {name: a, type: syslog, network: tcp, address: h}", "host:port"},
		{"- {name: a, type: jsonl, path: /x}\n  - {name: a, type: jsonl, path: /y}", "used twice"},
	} {
		path := writeYAML(t, "data: /d\naudit_sinks:\n  "+tc.yaml+"\n")
		if _, err := config.Load(path, serverFlags(t)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// A webhook on loopback may be plain http (a local collector).
	path = writeYAML(t, "data: /d\naudit_sinks:\n  - {name: a, type: webhook, url: 'http://127.0.0.1:9000/', secret_file: /k}\n")
	if _, err := config.Load(path, serverFlags(t)); err != nil {
		t.Errorf("a loopback webhook: %v", err)
	}
}

// TestScriptIsolation reads the script sandbox's keys from YAML, the environment and flags.
func TestScriptIsolation(t *testing.T) {
	clearEnv(t)
	path := writeYAML(t, "data: /d\nscript_user: keyturn-scripts\nallow_unsandboxed_scripts: true\n")
	got, err := config.Load(path, serverFlags(t))
	if err != nil {
		t.Fatal(err)
	}
	if got.ScriptUser != "keyturn-scripts" || !got.AllowUnsandboxedScripts || got.DisableScripts {
		t.Errorf("from YAML: %+v", got)
	}
	t.Setenv("KEYTURN_DISABLE_SCRIPTS", "true")
	got, err = config.Load(path, serverFlags(t, "--script-user", "65000"))
	if err != nil {
		t.Fatal(err)
	}
	if got.ScriptUser != "65000" || !got.DisableScripts {
		t.Errorf("from the environment and flags: %+v", got)
	}
}

// TestUnknownKeysRefused: a misspelt key in the YAML file, at the top or inside an audit sink,
// is refused and named, instead of leaving its setting at the default.
func TestUnknownKeysRefused(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct{ yaml, want string }{
		{"data: /d\naudit_sink:\n  - {name: a, type: jsonl, path: /tmp/a}\n", "unknown key audit_sink"},
		{"data: /d\naudit_sinks:\n  - {name: a, type: jsonl, path: /tmp/a, secretfile: /k}\n", "unknown key audit_sinks[0].secretfile"},
		{"data: /d\nscript_users: bob\nlisten_addr: x\n", "unknown key listen_addr, script_users"},
	} {
		_, err := config.Load(writeYAML(t, tc.yaml), serverFlags(t))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	if _, err := config.Load(writeYAML(t, "data: /d\naudit_sinks:\n  - {name: a, type: jsonl, path: /tmp/a}\n"), serverFlags(t)); err != nil {
		t.Errorf("known keys: %v", err)
	}
}
