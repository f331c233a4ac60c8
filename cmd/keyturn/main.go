// Command keyturn is the privileged-credential rotation gateway: server, vault tools and CLI.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		if strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
			err = cli.UsageError{Err: err}
		}
		fmt.Fprintf(stderr, "keyturn: %v\n", err)
		if cli.ExitCode(err) == cli.ExitBadUsage && cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return cli.ExitCode(err)
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "keyturn",
		Short:         "Privileged-credential rotation gateway",
		Long:          "keyturn keeps an encrypted vault of credentials, rotates them, and serves them to the applications that need them.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.Version = currentVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newVersionCommand(), newInitCommand(), newServerCommand(), newTeamCommand(), newEmulatorCommand(), newSandboxCommand(), newHealthCommand(), newStorageCommand())
	root.AddCommand(cli.Commands()...)
	cli.MarkUsageErrors(root)
	return root
}
