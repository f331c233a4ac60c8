package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/cli"
	"github.com/keyturn/keyturn/internal/config"
	"github.com/keyturn/keyturn/internal/datadir"
)

func newTeamCommand() *cobra.Command {
	team := &cobra.Command{
		Use:   "team",
		Short: "Manage the teams of a vault (works on the data directory directly)",
		Args:  cobra.NoArgs,
	}
	var dir, name, passphraseFile, storage string
	var out cli.Output
	add := &cobra.Command{
		Use:   "add --data DIR --team NAME [--passphrase-file F] [--storage postgres://…] [-o json|yaml|table]",
		Short: "Add a team with an admin service user holding every role",
		Long: `Add the team NAME to the vault in DIR, with an admin service user holding every role, and
print the admin's API key once, as keyturn init does (JSON by default; -o yaml or table).
Nothing of one team is visible to another. It can run while the server runs. On a vault in
PostgreSQL, give its database as keyturn init was given it: --storage or KEYTURN_STORAGE.`,
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
			if err := config.ValidateStorage(storage); err != nil {
				return cli.Usagef("--storage: %v", err)
			}
			v, err := datadir.OpenStorage(cmd.Context(), dir, storage, datadir.Unseal{PassphraseFile: passphraseFile})
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
	add.Flags().StringVar(&storage, "storage", os.Getenv("KEYTURN_STORAGE"),
		"the vault's postgres://user@host/database URL (default: KEYTURN_STORAGE, else the SQLite database in DIR)")
	add.Flags().StringVar(&passphraseFile, "passphrase-file", "", "file holding the passphrase, if the vault was sealed with one")
	team.AddCommand(add)
	return team
}
