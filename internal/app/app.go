// Package app assembles keyturn from an unsealed data directory: the vault, identities,
// audit trail, rotation engine and the HTTP API and web UI over them, wired together and started and
// stopped as one. cmd/keyturn, the sandbox and the tests' environments build on it.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/api"
	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/connector"
	ldapconn "github.com/keyturn/keyturn/internal/connector/ldap"
	"github.com/keyturn/keyturn/internal/connector/mysql"
	"github.com/keyturn/keyturn/internal/connector/okta"
	"github.com/keyturn/keyturn/internal/connector/opa"
	"github.com/keyturn/keyturn/internal/connector/postgresql"
	"github.com/keyturn/keyturn/internal/connector/rest"
	sshconn "github.com/keyturn/keyturn/internal/connector/ssh"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/fault"
	"github.com/keyturn/keyturn/internal/metrics"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/store"
	"github.com/keyturn/keyturn/internal/ui"
	"github.com/keyturn/keyturn/internal/vault"
)

// Options configure the services; zero values take each service's defaults.
type Options struct {
	Auth       auth.Options
	Rotation   rotation.Options
	Scripts    script.Options
	Connectors map[string]connector.Connector // default: DefaultConnectors()
	AuditSinks map[string]audit.Sink          // where the audit trail is exported, by name
	UI         ui.Options                     // the web UI under /ui/
	Logger     *slog.Logger
}

// App holds the services of one open vault.
type App struct {
	DB      *store.DB
	Vault   *vault.Vault
	Auth    *auth.Service
	Audit   *audit.Log
	Engine  *rotation.Engine
	Metrics *metrics.Metrics
	Handler http.Handler

	forwarder *audit.Forwarder // nil without sinks
}

// DefaultConnectors returns the connectors keyturn ships, by the names settings use.
func DefaultConnectors() map[string]connector.Connector {
	return map[string]connector.Connector{"okta": okta.New(okta.Options{}), "opa": opa.New(nil), "rest": rest.New(nil),
		"ssh": sshconn.New(0), "mysql": mysql.New(0), "postgresql": postgresql.New(), "ldap": ldapconn.New(0)}
}

// New wires the services over an open data directory.
func New(dv *datadir.Vault, o Options) *App {
	if o.Connectors == nil {
		o.Connectors = DefaultConnectors()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Rotation.Logger == nil {
		o.Rotation.Logger = o.Logger
	}
	m := metrics.New()
	m.ObserveWriter(func() (int64, int64, time.Duration) {
		st := dv.DB.WriterStats()
		return st.Batches, st.Transactions, st.Busy
	})
	if o.Rotation.Observer == nil {
		o.Rotation.Observer = m
	}
	log := audit.New(dv.DB, dv.Keys)
	o.Auth.Journal = log
	s := &App{
		DB:      dv.DB,
		Metrics: m,
		Vault:   vault.New(dv.DB, dv.Keys, log),
		Auth:    auth.New(dv.DB, dv.Keys, o.Auth),
		Audit:   log,
	}
	if len(o.AuditSinks) > 0 {
		s.forwarder = audit.NewForwarder(dv.DB, o.AuditSinks, audit.ForwarderOptions{Logger: o.Logger, Observer: m, Node: o.Rotation.Node})
	}
	s.Engine = rotation.New(dv.DB, s.Vault, s.Audit, script.NewRunner(o.Scripts), o.Connectors, o.Rotation)
	apiHandler := api.New(api.Deps{Vault: s.Vault, Auth: s.Auth, Engine: s.Engine, Audit: s.Audit,
		Ready: ready(dv), Logger: o.Logger, Meter: m})
	root := http.NewServeMux()
	web := ui.New(ui.Deps{Vault: s.Vault, Auth: s.Auth, Engine: s.Engine, Audit: s.Audit, Logger: o.Logger}, o.UI)
	root.Handle(ui.Prefix, web)
	root.Handle(strings.TrimSuffix(ui.Prefix, "/"), web) // redirected to /ui/, with the UI's headers
	root.Handle("/", apiHandler)
	s.Handler = root
	return s
}

// readyTimeout bounds how long /readyz waits for the database.
const readyTimeout = 3 * time.Second

// ready says whether the server can take requests: it holds the unsealed keys and the
// database answers within readyTimeout. Its errors are fault.Unavailable, naming what is wrong.
func ready(dv *datadir.Vault) func(context.Context) error {
	return func(ctx context.Context) error {
		if dv.Keys == nil {
			return &fault.Error{Kind: fault.Unavailable, Code: "sealed", Message: "the vault is sealed: the server does not hold its keys"}
		}
		ctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		if err := dv.DB.Ping(ctx); err != nil {
			return &fault.Error{Kind: fault.Unavailable, Code: "database_unreachable",
				Message: "the " + dv.DB.Dialect() + " database cannot be reached", Err: fmt.Errorf("ping the database: %w", err)}
		}
		return nil
	}
}

// Start starts the audit writer, the export to the audit sinks, and the rotation engine, which
// first resumes the runs a crash left unfinished.
func (s *App) Start(ctx context.Context) error {
	s.Audit.Start()
	if s.forwarder != nil {
		s.forwarder.Start()
	}
	return s.Engine.Start(ctx)
}

// Stop lets running rotations finish for up to grace, then interrupts them; an interrupted run
// is resumed by the next Start.
func (s *App) Stop(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.Engine.Stop(ctx)
	s.Audit.Stop()
	if s.forwarder != nil {
		s.forwarder.Stop()
	}
}
