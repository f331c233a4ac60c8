package main

import (
	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/cli"
	"github.com/keyturn/keyturn/internal/datadir"
)

func newTeamCommand() *cobra.Command {
	team := &cobra.Command{
		Use:   "team",
		Short: "Manage the teams of a vault (works on the data directory directly)",
		Args:  cobra.NoArgs,
	}
	var dir, name, passphraseFile string
	var out cli.Output
	add := &cobra.Command{
		Use:   "add --data DIR --team NAME [--passphrase-file F] [-o json|yaml|table]",
		Short: "Add a team with an admin service user holding every role",
		Long: `Add the team NAME to the vault in DIR, with an admin service user holding every role, and
print the admin's API key once, as keyturn init does (JSON by default; -o yaml or table).
Nothing of one team is visible to another. It can run while the server runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := out.Format()
			if err != nil {
				return err
			}
			if dir == "" || name == "" {
				return cli.Usagef("--data and --team are required")
			}
			if err := auth.ValidateTeamName(name); err != nil {
				return cli.UsageError{Err: err}
			}
			v, err := datadir.Open(cmd.Context(), dir, datadir.Unseal{PassphraseFile: passphraseFile})
			if err != nil {
				return err
			}
			defer v.Close()
			creds, err := auth.New(v.DB, v.Keys, auth.Options{}).CreateTeam(cmd.Context(), name)
			if err != nil {
				return err
			}
			return printCredentials(cmd.OutOrStdout(), format, creds)
		},
	}
	cli.AddOutputFlagDefault(add, &out, "json")
	add.Flags().StringVar(&dir, "data", "", "data directory made by keyturn init")
	add.Flags().StringVar(&name, "team", "", "name of the new team")
	add.Flags().StringVar(&passphraseFile, "passphrase-file", "", "file holding the passphrase, if the vault was sealed with one")
	team.AddCommand(add)
	return team
}
