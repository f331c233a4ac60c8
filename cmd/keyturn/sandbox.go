package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/cli"
	"github.com/keyturn/keyturn/internal/sandbox"
)

func newSandboxCommand() *cobra.Command {
	var listen string
	var once, asJSON bool
	var out cli.Output
	cmd := &cobra.Command{
		Use:   "sandbox [--listen ADDR] [--once] [-o table|json|yaml]",
		Short: "Run keyturn against its Okta and OPA emulator: seeded scenarios, rotations, report",
		Long: `Start the Okta + OPA emulator and a keyturn server on a temporary vault, seed the scenarios of
Keeper's Okta and REST guides and an OPA service-user key, rotate each once, check every new
credential against the emulator, and print a report. The exit code is 0 only when every
scenario ended as expected and its credential works. Needs bash, jq and curl.

Without --once it keeps serving and prints the API address, the web UI's address (/ui/ on the
same server) and an admin key to explore both with.

With -o json the report is {"scenarios": [{"name", "method", "status", "expected_status",
"verified", "detail"}]}; -o yaml prints the same as YAML. --json is -o json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := out.Format()
			if err != nil {
				return err
			}
			if asJSON {
				if cmd.Flags().Changed("output") && format != cli.FormatJSON {
					return cli.Usagef("--json is -o json: give one of them")
				}
				format = cli.FormatJSON
			}
			return runSandbox(cmd.Context(), listen, once, format, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8200", "address of the sandbox's keyturn API")
	cmd.Flags().BoolVar(&once, "once", false, "exit after the report")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON (the same as -o json)")
	cli.AddOutputFlag(cmd, &out)
	return cmd
}

func runSandbox(ctx context.Context, listen string, once bool, format cli.Format, stdout, stderr io.Writer) error {
	if once && listen == "127.0.0.1:8200" {
		listen = "127.0.0.1:0" // a one-shot run must not collide with a server already there
	}
	s, err := sandbox.Start(ctx, sandbox.Options{Listen: listen,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Seed(ctx); err != nil {
		return err
	}
	report, err := s.Run(ctx)
	if err != nil {
		return err
	}
	if format != cli.FormatTable {
		if err := cli.WriteAs(stdout, format, report); err != nil {
			return err
		}
	} else {
		printReport(stdout, report)
	}
	if !once {
		link, expires, err := s.SignInLink(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "\nkeyturn API:  %s (team %s)\nadmin key:    KEYTURN_KEY_ID=%s KEYTURN_KEY_SECRET=%s\n"+
			"UI:           %s/ui/ (sign in with team %s, key id %s and the admin key's secret above)\n"+
			"sign-in link: %s (signs in once as the admin key, until %s)\n"+
			"emulator:     %s (SSWS %s)\nCtrl-C stops the sandbox and deletes its vault.\n",
			s.APIURL, sandbox.Team, s.Creds.KeyID, s.Creds.KeySecret.Reveal(),
			s.APIURL, sandbox.Team, s.Creds.KeyID, link, expires.UTC().Format("15:04:05 UTC"), s.OrgURL, s.Emulator.Token())
		<-ctx.Done()
	}
	if !report.OK() {
		return fmt.Errorf("the sandbox found scenarios that did not end as expected")
	}
	return nil
}

func printReport(w io.Writer, r sandbox.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tMETHOD\tSTATUS\tEXPECTED\tVERIFIED\tDETAIL")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", s.Name, s.Method, s.Status, s.ExpectedStatus, s.Verified, s.Detail)
	}
	_ = tw.Flush()
}
