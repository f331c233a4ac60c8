package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/app"
	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/audit/sink"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/cli"
	"github.com/keyturn/keyturn/internal/config"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/ui"
)

func newServerCommand() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "server --data DIR [--listen 127.0.0.1:8200] [--passphrase-file F]",
		Short: "Unseal the vault and serve the API",
		Long: `Unseal the vault in DIR and serve the HTTP API, /healthz and /readyz until SIGINT or SIGTERM,
then finish in-flight requests and close the database.

Settings come from defaults < --config FILE (YAML) < KEYTURN_* variables (KEYTURN_DATA,
KEYTURN_LISTEN, KEYTURN_PASSPHRASE_FILE, KEYTURN_TOKEN_TTL, KEYTURN_LOG_LEVEL, ...) < flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configFile, cmd.Flags())
			if err != nil {
				return cli.UsageError{Err: err}
			}
			return serve(cmd.Context(), cfg, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML configuration file")
	config.AddFlags(cmd.Flags())
	return cmd
}

// serve runs the server until ctx ends.
func serve(ctx context.Context, cfg config.Config, logOut interface{ Write([]byte) (int, error) }) error {
	level, _ := cfg.Level()
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level}))

	v, err := datadir.OpenExclusiveStorage(ctx, cfg.Data, cfg.Storage, cfg.NodeName(), datadir.Unseal{PassphraseFile: cfg.PassphraseFile})
	if err != nil {
		return err
	}
	defer v.Close()

	sinks, err := openSinks(cfg.AuditSinks)
	if err != nil {
		return err
	}
	sandbox, err := scriptSandbox(ctx, cfg, log)
	if err != nil {
		return err
	}
	svc := app.New(v, app.Options{
		Auth:       auth.Options{TokenTTL: cfg.TokenTTL},
		AuditSinks: sinks,
		Rotation: rotation.Options{Node: cfg.NodeName(), Lease: cfg.RotationLease, Workers: cfg.RotationWorkers, Attempts: cfg.RotationAttempts,
			BackoffBase: cfg.RotationBackoff, BackoffMax: cfg.RotationBackoffMax,
			TargetRate: unlimitedIfZero(cfg.TargetRate), TargetBurst: cfg.TargetBurst,
			MinInterval: orNever(cfg.ScheduleMinInterval), CatchUp: cfg.ScheduleCatchUp, HeartbeatInterval: orNever(cfg.HeartbeatInterval)},
		Scripts: script.Options{TempDir: cfg.ScriptDir, Sandbox: &sandbox},
		// Browsers reach the UI over https when keyturn serves TLS or a TLS proxy fronts it.
		UI:     ui.Options{Secure: cfg.TLSCertFile != "" || cfg.InsecureNoTLS},
		Logger: log,
	})
	if err := svc.Start(ctx); err != nil {
		return err
	}
	defer svc.Stop(cfg.ShutdownTimeout)
	var tlsConfig *tls.Config
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("tls: cannot load the certificate and key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	srv := &http.Server{
		Handler:           svc.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving", "addr", ln.Addr().String(), "tls", tlsConfig != nil, "data", cfg.Data, "storage", v.DB.Dialect(), "node", cfg.NodeName(), "pid", os.Getpid())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case err := <-v.NodeLost:
		// Another server runs as this node now, and takes over its runs: stop at once, as a
		// crash would (the engine is crash-safe; scripts die with the server), rather than
		// let two processes work on the same runs during a graceful shutdown.
		log.Error("stopping at once", "err", err)
		os.Exit(cli.ExitFailed)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// scriptSandbox works out how scripts are isolated, and refuses a data directory that the
// script user could enter.
func scriptSandbox(ctx context.Context, cfg config.Config, log *slog.Logger) (script.Sandbox, error) {
	sb, warning, err := script.Choose(ctx, cfg.ScriptUser, cfg.AllowUnsandboxedScripts, cfg.DisableScripts)
	if err != nil {
		return sb, err
	}
	if warning != "" {
		log.Warn(warning)
	}
	if sb.Mode == script.Sandboxed {
		fi, err := os.Stat(cfg.Data)
		if err != nil {
			return sb, err
		}
		if perm := fi.Mode().Perm(); perm&0o007 != 0 {
			return sb, fmt.Errorf("data directory %s is open to other users (mode %04o), so scripts running as %s could read it: chmod 700 %s",
				cfg.Data, perm, sb.User, cfg.Data)
		}
	}
	log.Info("scripts", "isolation", sb.Mode, "user", sb.User)
	return sb, nil
}

// openSinks opens the audit sinks the configuration names.
func openSinks(cfgs []config.AuditSink) (map[string]audit.Sink, error) {
	sinks := map[string]audit.Sink{}
	for _, c := range cfgs {
		var roots *x509.CertPool
		if c.CAFile != "" {
			var err error
			if roots, err = sink.ReadCAFile(c.CAFile); err != nil {
				return nil, fmt.Errorf("audit sink %s: %w", c.Name, err)
			}
		}
		tlsConfig := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		var s audit.Sink
		var err error
		switch c.Type {
		case "jsonl":
			s, err = sink.NewJSONL(c.Path)
		case "webhook":
			var key secret.Secret
			if key, err = sink.ReadKeyFile(c.SecretFile); err == nil {
				tr := http.DefaultTransport.(*http.Transport).Clone()
				tr.TLSClientConfig = tlsConfig
				s, err = sink.NewWebhook(c.URL, key, &http.Client{Timeout: 10 * time.Second, Transport: tr})
			}
		case "syslog":
			s, err = sink.NewSyslog(c.Network, c.Address, tlsConfig)
		}
		if err != nil {
			for _, opened := range sinks {
				opened.Close()
			}
			return nil, fmt.Errorf("audit sink %s: %w", c.Name, err)
		}
		sinks[c.Name] = s
	}
	return sinks, nil
}

// unlimitedIfZero maps the configuration's 0 ("unlimited") to the engine's negative value.
func unlimitedIfZero(perSecond float64) float64 {
	if perSecond == 0 {
		return -1
	}
	return perSecond
}

// orNever maps the configuration's 0 ("none") to the engine's negative value (its 0 means
// "the default").
func orNever(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
