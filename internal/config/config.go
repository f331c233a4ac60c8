// Package config holds the server's typed configuration, loaded in layers:
// defaults < YAML file < KEYTURN_* environment < command-line flags.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// Config is the server configuration. Secrets are never values here, only paths to files.
type Config struct {
	Data            string        `koanf:"data"`
	Listen          string        `koanf:"listen"`
	Storage         string        `koanf:"storage"`
	PassphraseFile  string        `koanf:"passphrase_file"`
	TokenTTL        time.Duration `koanf:"token_ttl"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	LogLevel        string        `koanf:"log_level"`
	Node            string        `koanf:"node"` // this server's name among the nodes on one database (default: host:data directory)

	RotationWorkers    int           `koanf:"rotation_workers"`     // rotations executed at once
	RotationAttempts   int           `koanf:"rotation_attempts"`    // tries of a transient failure
	RotationBackoff    time.Duration `koanf:"rotation_backoff"`     // first retry delay, doubling
	RotationBackoffMax time.Duration `koanf:"rotation_backoff_max"` // cap of the retry delay
	RotationLease      time.Duration `koanf:"rotation_lease"`       // how long a node holds a run it stopped renewing
	ScriptDir          string        `koanf:"script_dir"`           // where unsandboxed scripts' private directories go (a tmpfs is best)

	ScriptUser              string  `koanf:"script_user"`               // the unprivileged user sandboxed scripts run as (nobody)
	AllowUnsandboxedScripts bool    `koanf:"allow_unsandboxed_scripts"` // run scripts as the server's user when they cannot be sandboxed
	DisableScripts          bool    `koanf:"disable_scripts"`           // run no script at all
	TargetRate              float64 `koanf:"target_rate"`               // connector operations a second to one target; 0: unlimited
	TargetBurst             int     `koanf:"target_burst"`              // operations at once before target_rate applies; 0: the rate

	ScheduleMinInterval time.Duration `koanf:"schedule_min_interval"` // shortest gap a schedule may have; 0: none
	ScheduleCatchUp     string        `koanf:"schedule_catch_up"`     // run_once or skip: occurrences missed while down
	HeartbeatInterval   time.Duration `koanf:"heartbeat_interval"`    // how often verifiable credentials are checked; 0: never

	TLSCertFile   string `koanf:"tls_cert_file"`   // PEM certificate (chain) to serve https with
	TLSKeyFile    string `koanf:"tls_key_file"`    // its PEM private key
	InsecureNoTLS bool   `koanf:"insecure_no_tls"` // allow plain http on a non-loopback address (behind a TLS proxy)

	AuditSinks []AuditSink `koanf:"audit_sinks"` // where the audit trail is exported (the YAML file only)
}

// AuditSink is one destination the audit trail is exported to, at least once and in order.
type AuditSink struct {
	Name       string `koanf:"name"`        // its position in the trail is kept under this name
	Type       string `koanf:"type"`        // jsonl, webhook or syslog
	Path       string `koanf:"path"`        // jsonl: the file to append to
	URL        string `koanf:"url"`         // webhook: where batches are POSTed
	SecretFile string `koanf:"secret_file"` // webhook: the file holding the signing key
	Network    string `koanf:"network"`     // syslog: udp, tcp or tls
	Address    string `koanf:"address"`     // syslog: host:port
	CAFile     string `koanf:"ca_file"`     // webhook, syslog over tls: PEM certificates to trust
}

var sinkName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// validate says what is wrong with the sink's settings.
func (s AuditSink) validate() error {
	if !sinkName.MatchString(s.Name) {
		return fmt.Errorf("name %q is not 1 to 63 of a-z, 0-9, _ and - (starting with a letter or digit)", s.Name)
	}
	switch s.Type {
	case "jsonl":
		if s.Path == "" {
			return errors.New("type jsonl needs a path")
		}
	case "webhook":
		u, err := url.Parse(s.URL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return errors.New("type webhook needs an http(s) url")
		}
		if u.Scheme == "http" && !loopback(u.Hostname()) {
			return errors.New("the webhook url must be https: audit events must not cross a network in clear")
		}
		if s.SecretFile == "" {
			return errors.New("type webhook needs a secret_file holding the signing key")
		}
	case "syslog":
		if s.Network != "udp" && s.Network != "tcp" && s.Network != "tls" {
			return fmt.Errorf("network %q is not udp, tcp or tls", s.Network)
		}
		if _, _, err := net.SplitHostPort(s.Address); err != nil {
			return fmt.Errorf("address %q is not host:port", s.Address)
		}
	default:
		return fmt.Errorf("type %q is not jsonl, webhook or syslog", s.Type)
	}
	return nil
}

// Defaults returns the configuration used when nothing else is set.
func Defaults() Config {
	return Config{
		Listen:          "127.0.0.1:8200",
		TokenTTL:        time.Hour,
		ShutdownTimeout: 30 * time.Second,
		LogLevel:        "info",

		RotationWorkers:    16,
		RotationAttempts:   5,
		RotationBackoff:    time.Second,
		RotationBackoffMax: 5 * time.Minute,
		RotationLease:      30 * time.Second,
		TargetRate:         20,
		ScriptUser:         "nobody",

		ScheduleMinInterval: time.Hour,
		ScheduleCatchUp:     "run_once",
		HeartbeatInterval:   24 * time.Hour,
	}
}

// envKeys are the environment variables the server reads (KEYTURN_ + the upper-cased key).
var envKeys = []string{"data", "listen", "storage", "passphrase_file", "token_ttl", "shutdown_timeout", "log_level", "node",
	"rotation_workers", "rotation_attempts", "rotation_backoff", "rotation_backoff_max", "rotation_lease", "script_dir", "script_user", "allow_unsandboxed_scripts", "disable_scripts", "target_rate", "target_burst",
	"schedule_min_interval", "schedule_catch_up", "heartbeat_interval", "tls_cert_file", "tls_key_file", "insecure_no_tls"}

// EnvVars returns the names of the environment variables the server reads, such as
// KEYTURN_DATA, in the order of the configuration's keys.
func EnvVars() []string {
	names := make([]string, len(envKeys))
	for i, key := range envKeys {
		names[i] = "KEYTURN_" + strings.ToUpper(key)
	}
	return names
}

// AddFlags defines the server's flags on fs, with the defaults as their values.
func AddFlags(fs *pflag.FlagSet) {
	d := Defaults()
	fs.String("data", "", "data directory made by keyturn init")
	fs.String("listen", d.Listen, "address to serve the API on")
	fs.String("storage", "", "a postgres://user@host/database URL, its password in a passfile (default: the SQLite database in the data directory)")
	fs.String("passphrase-file", "", "file holding the passphrase, if the vault was sealed with one")
	fs.Duration("token-ttl", d.TokenTTL, "lifetime of bearer tokens")
	fs.Duration("shutdown-timeout", d.ShutdownTimeout, "how long in-flight requests and rotations may take to finish on shutdown")
	fs.String("log-level", d.LogLevel, "debug, info, warn or error")
	fs.String("node", "", "this server's name among the servers on one PostgreSQL database, unique (default: host:data directory)")
	fs.Int("rotation-workers", d.RotationWorkers, "rotations executed at once")
	fs.Int("rotation-attempts", d.RotationAttempts, "tries of a transient failure before a rotation gives up")
	fs.Duration("rotation-backoff", d.RotationBackoff, "first retry delay of a transient failure (doubles each time)")
	fs.Duration("rotation-backoff-max", d.RotationBackoffMax, "cap of the retry delay")
	fs.Duration("rotation-lease", d.RotationLease, "how long a rotation stays with a node that stopped renewing it (died, paused) before another node settles it")
	fs.Float64("target-rate", d.TargetRate, "connector operations a second to one target (an Okta org, a REST host); 0: unlimited")
	fs.Int("target-burst", d.TargetBurst, "operations one target may take at once before target-rate applies (0: the rate)")
	fs.String("script-dir", "", "directory for unsandboxed scripts' private working directories (default: the system temp dir; a tmpfs is best)")
	fs.String("script-user", d.ScriptUser, "the unprivileged user (and its group) sandboxed scripts run as; the server must run as root")
	fs.Bool("allow-unsandboxed-scripts", false, "when scripts cannot be sandboxed (the server is not root), run them as the server's user: they can then read the data directory")
	fs.Bool("disable-scripts", false, "run no PAM script (rotations that need one fail)")
	fs.Duration("schedule-min-interval", d.ScheduleMinInterval, "shortest gap a rotation schedule may have between runs")
	fs.String("schedule-catch-up", d.ScheduleCatchUp, "occurrences missed while keyturn was down: run_once or skip")
	fs.Duration("heartbeat-interval", d.HeartbeatInterval, "how often credentials that can be verified are checked (0: never)")
	fs.String("tls-cert-file", "", "PEM certificate (chain) to serve https with")
	fs.String("tls-key-file", "", "PEM private key of the certificate")
	fs.Bool("insecure-no-tls", false, "allow plain http on a non-loopback address (only behind a TLS-terminating proxy)")
}

// Load layers defaults, the YAML file at path (if path is not empty), the KEYTURN_* environment
// and the flags that were set on fs (flag "token-ttl" sets key "token_ttl").
func Load(path string, fs *pflag.FlagSet) (Config, error) {
	k := koanf.New(".")
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		// A misspelt key would silently leave its setting at the default (an audit sink
		// never configured): refuse it, naming it.
		if unknown := unknownKeys(k.Raw(), reflect.TypeFor[Config](), ""); len(unknown) > 0 {
			return Config{}, fmt.Errorf("config file %s: unknown key %s (see keyturn server --help for the keys)", path, strings.Join(unknown, ", "))
		}
	}
	known := map[string]bool{}
	for _, key := range envKeys {
		known[key] = true
	}
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix: "KEYTURN_",
		TransformFunc: func(key, value string) (string, any) {
			key = strings.ToLower(strings.TrimPrefix(key, "KEYTURN_"))
			if !known[key] {
				return "", nil // client settings such as KEYTURN_TOKEN are not server config
			}
			return key, value
		},
	}), nil); err != nil {
		return Config{}, fmt.Errorf("environment: %w", err)
	}
	if fs != nil {
		changed := posflag.ProviderWithFlag(fs, ".", nil, func(f *pflag.Flag) (string, any) {
			if !f.Changed {
				return "", nil
			}
			return strings.ReplaceAll(f.Name, "-", "_"), posflag.FlagVal(fs, f)
		})
		if err := k.Load(changed, nil); err != nil {
			return Config{}, fmt.Errorf("flags: %w", err)
		}
	}
	cfg := Defaults()
	if err := k.Unmarshal("", &cfg); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, cfg.Validate()
}

// unknownKeys returns the keys of m, at every level, that no koanf tag of the struct type t
// names, as dotted paths (list elements as name[i]), sorted.
func unknownKeys(m map[string]any, t reflect.Type, prefix string) []string {
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		if tag := f.Tag.Get("koanf"); tag != "" {
			fields[tag] = f.Type
		}
	}
	var unknown []string
	for key, v := range m {
		ft, ok := fields[key]
		if !ok {
			unknown = append(unknown, prefix+key)
			continue
		}
		switch {
		case ft.Kind() == reflect.Struct:
			if sub, ok := v.(map[string]any); ok {
				unknown = append(unknown, unknownKeys(sub, ft, prefix+key+".")...)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			list, _ := v.([]any)
			for i, el := range list {
				if sub, ok := el.(map[string]any); ok {
					unknown = append(unknown, unknownKeys(sub, ft.Elem(), fmt.Sprintf("%s%s[%d].", prefix, key, i))...)
				}
			}
		}
	}
	slices.Sort(unknown)
	return unknown
}

// NodeName returns the server's node name: node, or the host's name and the data directory's
// absolute path, which stay the same across restarts and differ between servers.
func (c Config) NodeName() string {
	if c.Node != "" {
		return c.Node
	}
	host, _ := os.Hostname()
	dir, err := filepath.Abs(c.Data)
	if err != nil {
		dir = c.Data
	}
	return host + ":" + dir
}

// Validate checks the configuration and says what is wrong.
func (c Config) Validate() error {
	var errs []error
	if c.Data == "" {
		errs = append(errs, errors.New("data: the data directory is required (--data or KEYTURN_DATA)"))
	}
	if host, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %q is not host:port", c.Listen))
	} else if c.TLSCertFile == "" && !c.InsecureNoTLS && !loopback(host) {
		errs = append(errs, fmt.Errorf("listen: %q is not a loopback address, and secrets must not cross a network in clear: "+
			"set tls_cert_file and tls_key_file, or insecure_no_tls when a TLS proxy fronts keyturn", c.Listen))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls_cert_file and tls_key_file: set both or neither"))
	}
	if err := ValidateStorage(c.Storage); err != nil {
		errs = append(errs, fmt.Errorf("storage: %w", err))
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("token_ttl: %s is outside 1m..24h", c.TokenTTL))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: %s must be positive", c.ShutdownTimeout))
	}
	if c.RotationWorkers < 1 || c.RotationWorkers > 1024 {
		errs = append(errs, fmt.Errorf("rotation_workers: %d is outside 1..1024", c.RotationWorkers))
	}
	if c.RotationAttempts < 1 || c.RotationAttempts > 100 {
		errs = append(errs, fmt.Errorf("rotation_attempts: %d is outside 1..100", c.RotationAttempts))
	}
	if c.RotationBackoff <= 0 || c.RotationBackoffMax < c.RotationBackoff {
		errs = append(errs, fmt.Errorf("rotation_backoff: %s must be positive and at most rotation_backoff_max (%s)", c.RotationBackoff, c.RotationBackoffMax))
	}
	if c.RotationLease < 3*time.Second || c.RotationLease > 10*time.Minute {
		errs = append(errs, fmt.Errorf("rotation_lease: %s is outside 3s..10m", c.RotationLease))
	}
	if len(c.Node) > 200 || strings.IndexFunc(c.Node, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		errs = append(errs, fmt.Errorf("node: %q is not up to 200 printable characters", c.Node))
	}
	if c.TargetRate < 0 || c.TargetBurst < 0 {
		errs = append(errs, fmt.Errorf("target_rate: %g and target_burst: %d must not be negative (0: unlimited, and the rate)", c.TargetRate, c.TargetBurst))
	}
	if c.ScheduleMinInterval < 0 {
		errs = append(errs, fmt.Errorf("schedule_min_interval: %s must not be negative", c.ScheduleMinInterval))
	}
	if c.ScheduleCatchUp != "run_once" && c.ScheduleCatchUp != "skip" {
		errs = append(errs, fmt.Errorf("schedule_catch_up: %q is not run_once or skip", c.ScheduleCatchUp))
	}
	if c.HeartbeatInterval < 0 || (c.HeartbeatInterval > 0 && c.HeartbeatInterval < time.Minute) {
		errs = append(errs, fmt.Errorf("heartbeat_interval: %s must be 0 (never) or at least 1m", c.HeartbeatInterval))
	}
	if _, err := c.Level(); err != nil {
		errs = append(errs, err)
	}
	names := map[string]bool{}
	for i, s := range c.AuditSinks {
		if err := s.validate(); err != nil {
			errs = append(errs, fmt.Errorf("audit_sinks[%d]: %w", i, err))
		} else if names[s.Name] {
			errs = append(errs, fmt.Errorf("audit_sinks[%d]: the name %q is used twice", i, s.Name))
		}
		names[s.Name] = true
	}
	return errors.Join(errs...)
}

// loopback reports whether a listen host only accepts local connections.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Level returns the slog level named by LogLevel.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("log_level: %q is not debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}

// redactDSN keeps only the scheme of a connection string before it is shown: a password may
// sit anywhere in one (user info, query string, key=value pairs), and the scheme says enough.
// ValidateStorage checks a storage setting: empty (the SQLite database in the data directory)
// or a postgres:// URL without a password. Secrets are never configuration values: the
// password goes in a passfile (the URL's passfile= parameter, PGPASSFILE or ~/.pgpass). Its
// errors never show the setting's password.
func ValidateStorage(storage string) error {
	if storage == "" {
		return nil
	}
	u, err := url.Parse(storage)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return fmt.Errorf("%q is not a postgres://user@host/database URL; leave it empty for the SQLite database in the data directory",
			redactDSN(storage))
	}
	if _, ok := u.User.Password(); ok || u.Query().Has("password") {
		return fmt.Errorf("%q holds a password: put it in a passfile instead (postgres://user@host/db?passfile=/path, PGPASSFILE or ~/.pgpass)",
			redactDSN(storage))
	}
	return nil
}

func redactDSN(dsn string) string {
	scheme, _, ok := strings.Cut(dsn, ":")
	const schemeChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-."
	if ok && scheme != "" && strings.Trim(scheme, schemeChars) == "" {
		return scheme + ":…"
	}
	return "…"
}
