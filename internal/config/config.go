// Package config holds the server's typed configuration, loaded in layers:
// defaults < YAML file < KEYTURN_* environment < command-line flags.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

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
}

// Defaults returns the configuration used when nothing else is set.
func Defaults() Config {
	return Config{
		Listen:          "127.0.0.1:8200",
		TokenTTL:        time.Hour,
		ShutdownTimeout: 30 * time.Second,
		LogLevel:        "info",
	}
}

// envKeys are the environment variables the server reads (KEYTURN_ + the upper-cased key).
var envKeys = []string{"data", "listen", "storage", "passphrase_file", "token_ttl", "shutdown_timeout", "log_level"}

// Load layers defaults, the YAML file at path (if path is not empty), the KEYTURN_* environment
// and the flags that were set on fs (flag "token-ttl" sets key "token_ttl").
func Load(path string, fs *pflag.FlagSet) (Config, error) {
	k := koanf.New(".")
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
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

// Validate checks the configuration and says what is wrong.
func (c Config) Validate() error {
	var errs []error
	if c.Data == "" {
		errs = append(errs, errors.New("data: the data directory is required (--data or KEYTURN_DATA)"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %q is not host:port", c.Listen))
	}
	if c.Storage != "" {
		errs = append(errs, fmt.Errorf("storage: %q is not supported yet; leave it empty for the SQLite database in the data directory", redactDSN(c.Storage)))
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("token_ttl: %s is outside 1m..24h", c.TokenTTL))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: %s must be positive", c.ShutdownTimeout))
	}
	if _, err := c.Level(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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
func redactDSN(dsn string) string {
	scheme, _, ok := strings.Cut(dsn, ":")
	const schemeChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-."
	if ok && scheme != "" && strings.Trim(scheme, schemeChars) == "" {
		return scheme + ":…"
	}
	return "…"
}
