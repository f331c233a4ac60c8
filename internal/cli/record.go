package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/vault"
)

const fieldHelp = `
Fields:
  --field type[.label]=value   a standard field, such as --field login=alice or
                               --field url.console=https://example.com (repeatable)
  --custom label=value         a custom text field, such as --custom env=prod (repeatable)

  A value of "-" is read from standard input instead, with one trailing newline removed,
  so that a password never has to appear on the command line (where other users can see it
  in the process list and it lands in shell history):

    printf '%s' "$PW" | keyturn record create ... --field password=-
    keyturn record update UID --field password=- < password.txt

  Only one value per command can come from standard input.`

func (e *env) recordCommand() *cobra.Command {
	return groupCommand("record", "Create, read, list, update and delete vault records",
		e.recordCreate(), e.recordGet(), e.recordList(), e.recordUpdate(), e.recordDelete(), e.recordHistory())
}

// uidArg returns the record argument, refusing an empty one. It is a record's UID or its
// exact title: the server resolves it, and refuses a title several records share
// (ambiguous_title, a usage error).
func uidArg(args []string) (string, error) { return idArg(args[0], "record UID or title") }

// uidTo is an argCheck that keeps the record argument (see uidArg) in *uid.
func uidTo(uid *string) argCheck {
	return func(_ *cobra.Command, args []string) (err error) {
		*uid, err = uidArg(args)
		return err
	}
}

func (e *env) recordCreate() *cobra.Command {
	var in RecordInput
	var fields, custom []string
	var std, cus []fieldSpec // --field and --custom, parsed
	var out Output
	cmd := &cobra.Command{
		Use:   "create --type TYPE --title TITLE [--folder F] [--notes N] [--field type[.label]=value ...] [--custom label=value ...]",
		Short: "Create a record",
		Long: `Create a record and print its UID (with -o json, the record as the API returns it).

TYPE is one of login, pamUser, pamConfiguration, pamMachine, pamDatabase, pamDirectory or
general; a pamUser record needs a login field.
` + fieldHelp + "\n" + envHelp,
		Example: `  keyturn record create --type pamUser --title "Okta admin" --folder Shared/Okta \
      --field login=admin@example.com --field password=- < pw.txt`,
		Args: cobra.NoArgs,
		RunE: e.run(&out, func(*cobra.Command, []string) (err error) {
			if strings.TrimSpace(in.Type) == "" {
				return Usagef("--type is required")
			}
			if strings.TrimSpace(in.Title) == "" {
				return Usagef("--title is required")
			}
			std, cus, err = parseFieldSpecs(fields, custom)
			return err
		}, func(ctx context.Context, c *Client, inv *invocation) error {
			if err := readStdinValues(inv.cmd.InOrStdin(), std, cus); err != nil {
				return err
			}
			in.Fields, in.Custom = newFields(std), newFields(cus)
			rec, raw, err := c.CreateRecord(ctx, in)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, textf("%s\n", rec.UID))
		}),
	}
	f := cmd.Flags()
	f.StringVar(&in.Type, "type", "", "record type (required)")
	completeFlag(cmd, "type", recordTypeValues...)
	f.StringVar(&in.Title, "title", "", "record title (required)")
	f.StringVar(&in.Folder, "folder", "", "folder path, such as Shared/Okta")
	f.StringVar(&in.Notes, "notes", "", "notes")
	f.StringArrayVar(&fields, "field", nil, "standard field type[.label]=value; value - reads standard input (repeatable)")
	f.StringArrayVar(&custom, "custom", nil, "custom text field label=value; value - reads standard input (repeatable)")
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) recordGet() *cobra.Command {
	var reveal bool
	var uid string
	var out Output
	cmd := &cobra.Command{
		Use:   "get UID|TITLE [--reveal]",
		Short: "Show a record with its fields",
		Long: `Show a record with its fields and custom fields. Values of hidden types (password, secret,
pinCode, oneTimeCode, keyPair) are shown as ******** unless --reveal is given.
With -o json the record is printed as the API returns it, values unmasked.
` + envHelp,
		Args: cobra.ExactArgs(1),
		RunE: e.run(&out, uidTo(&uid), func(ctx context.Context, c *Client, inv *invocation) error {
			rec, raw, err := c.GetRecord(ctx, uid)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, func(w io.Writer) error { return writeRecord(w, rec, reveal) })
		}),
	}
	cmd.Flags().BoolVar(&reveal, "reveal", false, "show the values of password and secret fields")
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) recordList() *cobra.Command {
	var filter ListFilter
	var out Output
	cmd := &cobra.Command{
		Use:   "list [--type T] [--folder F] [--title T]",
		Short: "List records (metadata only)",
		Long: `List the records you can see, every page of them: UID, type, title, folder and revision.
With -o json: {"list": [...]} holding every page's records.
` + envHelp,
		Args: cobra.NoArgs,
		RunE: e.run(&out, nil, func(ctx context.Context, c *Client, inv *invocation) error {
			if filter.Type != "" && !slices.Contains(vault.Types, filter.Type) {
				return Usagef("--type %q: want one of %s", filter.Type, strings.Join(vault.Types, ", "))
			}
			items, err := c.ListRecords(ctx, filter)
			if err != nil {
				return err
			}
			return writeList(inv, items, "UID\tTYPE\tTITLE\tFOLDER\tREVISION", func(s Summary) string {
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%d", clean(s.UID), clean(s.Type), clean(s.Title), clean(s.Folder), s.Revision)
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&filter.Type, "type", "", "only records of this type")
	completeFlag(cmd, "type", recordTypeValues...)
	f.StringVar(&filter.Folder, "folder", "", "only records in this folder")
	f.StringVar(&filter.Title, "title", "", "only records with this title")
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) recordUpdate() *cobra.Command {
	var title, folder, notes string
	var fields, custom []string
	var uid string
	var std, cus []fieldSpec // --field and --custom, parsed
	var out Output
	cmd := &cobra.Command{
		Use:   "update UID|TITLE [--title T] [--folder F] [--notes N] [--field type[.label]=value ...] [--custom label=value ...]",
		Short: "Change a record",
		Long: `Read a record, change what the flags give and nothing else, and write it back.

A --field sets the value of the first field of that type (and label, when given) that no
earlier --field has set, or else adds a new field; a --custom does the same for the custom
field with that label. The record is written back with the revision read: if someone changed
it in between, nothing is saved and the command fails (exit code 1); run it again.
` + fieldHelp + "\n" + envHelp,
		Example: `  keyturn record update 3bX... --title "Okta admin (prod)" --field password=- < pw.txt`,
		Args:    cobra.ExactArgs(1),
		RunE: e.run(&out, func(cmd *cobra.Command, args []string) (err error) {
			if uid, err = uidArg(args); err != nil {
				return err
			}
			flags := cmd.Flags()
			if !flags.Changed("title") && !flags.Changed("folder") && !flags.Changed("notes") && len(fields) == 0 && len(custom) == 0 {
				return Usagef("nothing to change: give --title, --folder, --notes, --field or --custom")
			}
			std, cus, err = parseFieldSpecs(fields, custom)
			return err
		}, func(ctx context.Context, c *Client, inv *invocation) error {
			if err := readStdinValues(inv.cmd.InOrStdin(), std, cus); err != nil {
				return err
			}
			rec, _, err := c.GetRecord(ctx, uid)
			if err != nil {
				return err
			}
			rev := rec.Revision
			in := RecordInput{Type: rec.Type, Title: rec.Title, Folder: rec.Folder, Notes: rec.Notes,
				Fields: applyFields(rec.Fields, std), Custom: applyFields(rec.Custom, cus), Revision: &rev}
			flags := inv.cmd.Flags()
			if flags.Changed("title") {
				in.Title = title
			}
			if flags.Changed("folder") {
				in.Folder = folder
			}
			if flags.Changed("notes") {
				in.Notes = notes
			}
			updated, raw, err := c.UpdateRecord(ctx, rec.UID, in) // the uid: the argument may be the title being changed
			if err != nil {
				var ae *APIError
				if errors.As(err, &ae) && ae.Status == http.StatusConflict {
					return fmt.Errorf("record %s was not updated: %w", uid, err)
				}
				return err
			}
			return inv.writeRaw(raw, textf("updated %s (revision %d)\n", updated.UID, updated.Revision))
		}),
	}
	f := cmd.Flags()
	f.StringVar(&title, "title", "", "new title")
	f.StringVar(&folder, "folder", "", "new folder path (\"\" for the root)")
	f.StringVar(&notes, "notes", "", "new notes (\"\" clears them)")
	f.StringArrayVar(&fields, "field", nil, "set standard field type[.label]=value; value - reads standard input (repeatable)")
	f.StringArrayVar(&custom, "custom", nil, "set custom field label=value; value - reads standard input (repeatable)")
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) recordDelete() *cobra.Command {
	var uid string
	var out Output
	cmd := &cobra.Command{
		Use:   "delete UID|TITLE",
		Short: "Delete a record and its password versions",
		Long:  "Delete a record and its password versions. With -o json: {\"uid\": UID, \"deleted\": true}.\n" + envHelp,
		Args:  cobra.ExactArgs(1),
		RunE: e.run(&out, uidTo(&uid), func(ctx context.Context, c *Client, inv *invocation) error {
			if err := c.DeleteRecord(ctx, uid); err != nil {
				return err
			}
			return inv.write(map[string]any{"uid": uid, "deleted": true}, textf("deleted %s\n", uid))
		}),
	}
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) recordHistory() *cobra.Command {
	var reveal bool
	var uid string
	var out Output
	cmd := &cobra.Command{
		Use:   "history UID|TITLE [--reveal]",
		Short: "List a record's password versions",
		Long: `List a record's password versions, newest first, with their states (current, previous,
...). --reveal also shows each version's value (the server audits this).
` + envHelp,
		Args: cobra.ExactArgs(1),
		RunE: e.run(&out, uidTo(&uid), func(ctx context.Context, c *Client, inv *invocation) error {
			versions, raw, err := c.Versions(ctx, uid, reveal)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, func(w io.Writer) error {
				tw := newTable(w)
				if reveal {
					fmt.Fprintln(tw, "VERSION\tSTATE\tCREATED\tUPDATED\tVALUE")
				} else {
					fmt.Fprintln(tw, "VERSION\tSTATE\tCREATED\tUPDATED")
				}
				for _, v := range versions {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s", v.Version, clean(v.State), apiTimeText(v.CreatedAt), apiTimeText(v.UpdatedAt))
					if reveal {
						val := ""
						if v.Value != nil {
							val = clean(*v.Value)
						}
						fmt.Fprintf(tw, "\t%s", val)
					}
					fmt.Fprintln(tw)
				}
				return tw.Flush()
			})
		}),
	}
	cmd.Flags().BoolVar(&reveal, "reveal", false, "show each version's value")
	AddOutputFlag(cmd, &out)
	return cmd
}
