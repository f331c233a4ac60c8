package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/cli"
	"github.com/keyturn/keyturn/internal/emulator"
)

// newEmulatorCommand returns "keyturn emulator", whose subcommands serve emulators of the
// services keyturn rotates credentials in, for tests and the sandbox.
func newEmulatorCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "emulator",
		Short: "Serve an emulator of an external service, for tests and the sandbox",
		Args:  cobra.NoArgs,
	}
	var (
		listen, token, team string
		users, rateLimit    int
		lockout             int
		app                 oauthAppFlags
	)
	okta := &cobra.Command{
		Use:   "okta [--listen ADDR] [--token T] [--users N] [--team NAME]",
		Short: "Serve an in-memory Okta org (Users, OAuth, Authn APIs) and Okta Privileged Access team",
		Long: `Serve an in-memory emulator of the Okta Management API (users, SSWS tokens, OAuth 2.0
private_key_jwt, /api/v1/authn) and of the Okta Privileged Access service-user API under
/v1/teams/NAME/. It prints one line of JSON on stdout: the base URL, the SSWS token, the
seeded users' login and password patterns, and the OPA admin service user's key id and secret.
It serves until SIGINT or SIGTERM. Seeded user i (1..N) has login user%04d@example.com and
password Seed-%04d-Pass. State is lost when it stops.

--oauth-public-key FILE or --oauth-generate-key registers an OAuth 2.0 "API Services" app
(private_key_jwt at /oauth2/v1/token), optionally requiring DPoP, with the scopes granted; the
output's "oauth" object gives its client_id, key ids and token URL. A generated private key is
printed once (as oauth.private_key_pem) or written to --oauth-private-key-out, mode 0600.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if users < 0 {
				return cli.Usagef("--users must not be negative")
			}
			opts := emulator.Options{Users: users, OPATeam: team, RateLimit: rateLimit, LockoutThreshold: lockout}
			if token != "" {
				opts.Tokens = []string{token}
			}
			client, privateKey, err := app.client(cmd.Flags())
			if err != nil {
				return err
			}
			em := emulator.New(opts)
			if client != nil {
				em.AddOAuthClient(*client)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			base := "http://" + ln.Addr().String()
			keyID, secret := em.AdminKey()
			out := map[string]any{
				"base_url":        base,
				"token":           em.Token(),
				"users":           users,
				"login_format":    "user%04d@example.com",
				"password_format": "Seed-%04d-Pass",
				"opa": map[string]string{
					"base_url":     base,
					"team":         em.OPATeam(),
					"service_user": em.OPAAdmin(),
					"key_id":       keyID,
					"key_secret":   secret,
				},
			}
			if client != nil {
				o, err := app.output(*client, privateKey, base)
				if err != nil {
					_ = ln.Close()
					return err
				}
				out["oauth"] = o
			}
			err = json.NewEncoder(cmd.OutOrStdout()).Encode(out)
			privateKey.Clear()
			if err != nil {
				_ = ln.Close()
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			srv := &http.Server{Handler: em, ReadHeaderTimeout: 10 * time.Second}
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			em.Close() // release requests hanging on injected timeouts
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return nil
		},
	}
	f := okta.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	f.StringVar(&token, "token", "", "SSWS API token to accept (default: a random one, printed)")
	f.IntVar(&users, "users", 100, "number of users to seed")
	f.StringVar(&team, "team", "emulator", "Okta Privileged Access team name")
	f.IntVar(&rateLimit, "rate-limit", emulator.DefaultRateLimit, "requests per minute allowed in each rate-limit bucket")
	f.IntVar(&lockout, "lockout", 10, "failed /api/v1/authn attempts before a user is locked out (negative: never)")
	app.register(f)
	cmd.AddCommand(okta)
	return cmd
}
