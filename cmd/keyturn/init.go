package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/cli"
	"github.com/keyturn/keyturn/internal/config"
	"github.com/keyturn/keyturn/internal/datadir"
)

func newInitCommand() *cobra.Command {
	var dir, team, passphraseFile, storage string
	var out cli.Output
	cmd := &cobra.Command{
		Use:   "init --data DIR --team NAME [--passphrase-file F] [--storage postgres://…] [-o json|yaml|table]",
		Short: "Create a vault: data directory, database, master key, first team and its admin key",
		Long: `Create a vault in DIR (mode 0700): the SQLite database, a random master key wrapped by a key
derived from the passphrase in F (Argon2id) or, without --passphrase-file, by a random key file
DIR/master.key (mode 0600), the team NAME, and an admin service user holding every role.

Prints the admin's API key once, as JSON by default: {"team_name", "service_user", "key_id",
"key_secret"} (-o yaml: the same as YAML; -o table: one "name: value" line each).

With --storage (or KEYTURN_STORAGE) postgres://user@host/database, the database is that
PostgreSQL database, which must be empty of keyturn data; DIR then holds only the key file.
The URL holds no password: put it in a passfile (?passfile=/path, PGPASSFILE or ~/.pgpass).
Keep the key secret: it is stored only as a keyed hash and cannot be shown again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := out.Format()
			if err != nil {
				return err
			}
			if dir == "" || team == "" {
				return cli.Usagef("--data and --team are required")
			}
			if err := config.ValidateStorage(storage); err != nil {
				return cli.Usagef("--storage: %v", err)
			}
			creds, err := datadir.InitStorage(cmd.Context(), dir, storage, team, datadir.Unseal{PassphraseFile: passphraseFile})
			if err != nil {
				return err
			}
			return printCredentials(cmd.OutOrStdout(), format, creds)
		},
	}
	cli.AddOutputFlagDefault(cmd, &out, "json")
	cmd.Flags().StringVar(&dir, "data", "", "data directory to create")
	cmd.Flags().StringVar(&team, "team", "", "name of the first team")
	cmd.Flags().StringVar(&storage, "storage", os.Getenv("KEYTURN_STORAGE"),
		"a postgres://user@host/database URL, its password in a passfile (default: KEYTURN_STORAGE, else the SQLite database in DIR)")
	cmd.Flags().StringVar(&passphraseFile, "passphrase-file", "", "file holding the passphrase that seals the master key (default: a key file in DIR)")
	return cmd
}

// printCredentials prints a team's first admin key, the only time its secret is shown, in
// format f.
func printCredentials(w io.Writer, f cli.Format, creds auth.Credentials) error {
	v := struct {
		TeamName    string `json:"team_name"`
		ServiceUser string `json:"service_user"`
		KeyID       string `json:"key_id"`
		KeySecret   string `json:"key_secret"`
	}{creds.TeamName, creds.ServiceUser, creds.KeyID, creds.KeySecret.Reveal()}
	if f == cli.FormatTable {
		_, err := fmt.Fprintf(w, "team_name: %s\nservice_user: %s\nkey_id: %s\nkey_secret: %s\n",
			v.TeamName, v.ServiceUser, v.KeyID, v.KeySecret)
		return err
	}
	return cli.WriteAs(w, f, v)
}
