package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/cli"
	"github.com/keyturn/keyturn/internal/config"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/store"
)

func newStorageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "storage",
		Short: "Move a vault between databases",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newStorageCopyCommand())
	return cmd
}

func newStorageCopyCommand() *cobra.Command {
	var from, to string
	var out cli.Output
	cmd := &cobra.Command{
		Use:   "copy --from sqlite:DIR --to postgres://… [-o json|yaml|table]",
		Short: "Copy a vault from its SQLite data directory into an empty PostgreSQL database",
		Long: `Copy the vault in data directory DIR (its SQLite database) into the PostgreSQL database at
--to (default KEYTURN_STORAGE): every table, in one transaction, so the target gets all of it
or nothing. Ciphertexts and the wrapped master key are copied as they are: nothing is
decrypted, and DIR's key file (or the passphrase) unseals the copy. The audit chain is copied
whole, and keyturn audit verify passes on the copy.

It refuses, writing nothing (exit 1), a target that already holds keyturn data, and a data
directory a server is running on (stop it first); no server starts on DIR while it copies.
Afterwards serve the copy with keyturn server --data DIR --storage postgres://…; the SQLite
database stays in DIR as it was.

The URL holds no password: put it in a passfile (?passfile=/path, PGPASSFILE or ~/.pgpass).
Prints the rows copied per table and the audit chain's head.`,
		Example: `  keyturn storage copy --from sqlite:/var/lib/keyturn --to postgres://keyturn@db.internal/keyturn`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := out.Format()
			if err != nil {
				return err
			}
			dir, ok := strings.CutPrefix(from, "sqlite:")
			if !ok || dir == "" {
				return cli.Usagef("--from: give the data directory as sqlite:DIR")
			}
			if to == "" {
				return cli.Usagef("--to (or KEYTURN_STORAGE) is required: the postgres:// URL to copy into")
			}
			if err := config.ValidateStorage(to); err != nil {
				return cli.Usagef("--to: %v", err)
			}
			rep, err := datadir.CopyToPostgres(cmd.Context(), dir, to)
			if errors.Is(err, store.ErrTargetNotEmpty) {
				return fmt.Errorf("%w; nothing was copied (copy only into a database that holds no keyturn vault)", err)
			}
			if err != nil {
				return err
			}
			return printCopyReport(cmd.OutOrStdout(), format, rep)
		},
	}
	cli.AddOutputFlagDefault(cmd, &out, "table")
	cmd.Flags().StringVar(&from, "from", "", "the vault to copy: sqlite:DIR, its data directory")
	cmd.Flags().StringVar(&to, "to", os.Getenv("KEYTURN_STORAGE"),
		"the empty PostgreSQL database to copy into, a postgres://user@host/database URL (default: KEYTURN_STORAGE)")
	return cmd
}

// printCopyReport prints what a copy copied in format f.
func printCopyReport(w io.Writer, f cli.Format, rep store.CopyReport) error {
	if f != cli.FormatTable {
		return cli.WriteAs(w, f, rep)
	}
	for _, t := range rep.Tables {
		if _, err := fmt.Fprintf(w, "%-20s %d\n", t.Table, t.Rows); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "copied; the audit chain's head is event %d\n", rep.AuditHead)
	return err
}
