package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// maxScriptBytes bounds the size of a script file read by script add. The API takes request
// bodies up to 1 MiB, and base64 makes the content a third larger.
const maxScriptBytes = 700 << 10

func (e *env) scriptCommand() *cobra.Command {
	return groupCommand("script", "Attach, list and detach the PAM scripts that run with a record's rotation",
		e.scriptAdd(), e.scriptList(), e.scriptDelete(), e.scriptParams())
}

func (e *env) scriptAdd() *cobra.Command {
	var file, name, command string
	var creds []string
	var timeout time.Duration
	var uid string
	var in ScriptInput // the script, once read
	var out Output
	cmd := &cobra.Command{
		Use:   "add UID|TITLE --file F [--name N] [--credential UID ...] [--command PREFIX] [--timeout 120s]",
		Short: "Attach a script to a record",
		Long: `Attach a script to a pamUser, resource or configuration record. Scripts run with every
rotation: those of the pamUser, then of its resource, then of its configuration, each record's
in the order attached. In method scripts_only the scripts are the rotation.

The script gets the rotation's parameters (the user, the old and new password, the records)
on standard input; "keyturn script params UID" shows them. --command is the interpreter it
runs with, such as "pwsh -File" (default: the file itself, by its #! line); --credential adds
a record whose values the script receives too; --timeout is how long it may run (whole
seconds, 1s to 1h; default the server's, 120s). The script is named after its file unless
--name is given; --file - reads it from standard input (then --name is required).
With -o json the script is printed as the API returns it (never its content).
` + envHelp,
		Example: `  keyturn script add 3bX... --file rotate-okta.sh --credential 9Qz... --timeout 60s`,
		Args:    cobra.ExactArgs(1),
		RunE: e.run(&out, func(cmd *cobra.Command, args []string) (err error) {
			if uid, err = uidArg(args); err != nil {
				return err
			}
			if file == "" {
				return Usagef("--file is required")
			}
			if name == "" {
				if file == "-" {
					return Usagef("--file - reads the script from standard input: give it a --name")
				}
				name = filepath.Base(file)
			}
			in = ScriptInput{Name: name, Command: command, CredentialUIDs: creds}
			if cmd.Flags().Changed("timeout") {
				if timeout < time.Second || timeout > time.Hour || timeout%time.Second != 0 {
					return Usagef("--timeout %s: give whole seconds from 1s to 1h, such as 120s", timeout)
				}
				in.TimeoutS = int(timeout / time.Second)
			}
			for _, c := range creds {
				if strings.TrimSpace(c) == "" {
					return Usagef("--credential is empty: give a record UID")
				}
			}
			content, err := readScript(cmd.InOrStdin(), file)
			if err != nil {
				return err
			}
			in.ContentBase64 = base64.StdEncoding.EncodeToString(content)
			return nil
		}, func(ctx context.Context, c *Client, inv *invocation) error {
			info, raw, err := c.AddScript(ctx, uid, in)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, func(w io.Writer) error { return writeScript(w, info) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "the script file; - reads standard input (required)")
	f.StringVar(&name, "name", "", "the script's name (default: the file's base name)")
	f.StringArrayVar(&creds, "credential", nil, "UID or title of a record whose values the script receives too (repeatable)")
	f.StringVar(&command, "command", "", "interpreter command the script runs with, such as \"pwsh -File\"")
	f.DurationVar(&timeout, "timeout", 0, "how long the script may run (default the server's, 120s)")
	AddOutputFlag(cmd, &out)
	return cmd
}

// readScript reads a script file, or standard input for "-", refusing an empty or oversized
// one.
func readScript(stdin io.Reader, file string) ([]byte, error) {
	var r io.Reader = stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("read the script: %w", err)
		}
		defer f.Close()
		r = f
	}
	content, err := io.ReadAll(io.LimitReader(r, maxScriptBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the script: %w", err)
	}
	switch {
	case len(content) == 0:
		return nil, fmt.Errorf("the script %s is empty", file)
	case len(content) > maxScriptBytes:
		return nil, fmt.Errorf("the script %s is larger than %d KiB", file, maxScriptBytes>>10)
	}
	return content, nil
}

func (e *env) scriptList() *cobra.Command {
	var uid string
	var out Output
	cmd := &cobra.Command{
		Use:   "list UID|TITLE",
		Short: "List a record's scripts in the order they run",
		Long: `List a record's scripts in the order they run: id, name, command, credential records,
timeout, size and the SHA-256 of the content (never the content itself).
With -o json: the API's {"list": [...]}.
` + envHelp,
		Args: cobra.ExactArgs(1),
		RunE: e.run(&out, uidTo(&uid), func(ctx context.Context, c *Client, inv *invocation) error {
			scripts, raw, err := c.Scripts(ctx, uid)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, tableText("ID\tNAME\tCOMMAND\tCREDENTIALS\tTIMEOUT\tSIZE\tSHA256", scripts,
				func(s ScriptInfo) string {
					return fmt.Sprintf("%s\t%s\t%s\t%s\t%ds\t%d\t%s", clean(s.ID), clean(s.Name), orDash(s.Command),
						listText(s.CredentialUIDs), s.TimeoutS, s.Size, clean(s.SHA256))
				}))
		}),
	}
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) scriptDelete() *cobra.Command {
	var uid, id string
	var out Output
	cmd := &cobra.Command{
		Use:   "delete UID|TITLE SCRIPT_ID",
		Short: "Detach a script from a record",
		Long: `Detach a script from a record; later rotations no longer run it.
With -o json: {"uid": UID, "script_id": SCRIPT_ID, "deleted": true}.
` + envHelp,
		Args: cobra.ExactArgs(2),
		RunE: e.run(&out, func(_ *cobra.Command, args []string) (err error) {
			if uid, err = uidArg(args); err != nil {
				return err
			}
			id, err = idArg(args[1], "script id")
			return err
		}, func(ctx context.Context, c *Client, inv *invocation) error {
			if err := c.DeleteScript(ctx, uid, id); err != nil {
				return err
			}
			return inv.write(map[string]any{"uid": uid, "script_id": id, "deleted": true},
				textf("deleted script %s of %s\n", clean(id), clean(uid)))
		}),
	}
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) scriptParams() *cobra.Command {
	var reveal bool
	var uid string
	var out Output
	cmd := &cobra.Command{
		Use:   "params UID|TITLE [--reveal]",
		Short: "Show the parameters a pamUser record's scripts would receive",
		Long: `Show, as JSON (-o yaml: as YAML), what a pamUser record's scripts would read on standard
input in a rotation now, layer by layer:

  stdin    the one line the script reads: base64 of params
  params   that line decoded: providerRecordUid, resourceRecordUid, userRecordUid,
           newPassword (a placeholder here), oldPassword, user, and records, which the
           script receives as a string: base64 of a JSON array
  records  params.records decoded: one object per record (uid, title, then its fields)

Passwords and other secrets are masked unless --reveal is given (the server audits this);
with --reveal, stdin is the line a script would read but for newPassword, so
"keyturn script params UID --reveal -o json | jq -r .stdin | ./rotate.sh" tries a script
by hand. The record needs rotation settings ("keyturn rotation set").
` + envHelp,
		Args: cobra.ExactArgs(1),
		RunE: e.run(&out, uidTo(&uid), func(ctx context.Context, c *Client, inv *invocation) error {
			raw, err := c.ScriptParams(ctx, uid, reveal)
			if err != nil {
				return err
			}
			if inv.format == FormatYAML {
				return writeRawYAML(inv.w, raw)
			}
			return writeRawJSON(inv.w, raw)
		}),
	}
	cmd.Flags().BoolVar(&reveal, "reveal", false, "show passwords and other secrets")
	AddOutputFlag(cmd, &out)
	return cmd
}

// writeScript writes an attached script as text.
func writeScript(w io.Writer, s ScriptInfo) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "ID:\t%s\n", clean(s.ID))
	fmt.Fprintf(tw, "Record:\t%s\n", clean(s.RecordUID))
	fmt.Fprintf(tw, "Name:\t%s\n", clean(s.Name))
	fmt.Fprintf(tw, "Command:\t%s\n", orDash(s.Command))
	fmt.Fprintf(tw, "Credentials:\t%s\n", listText(s.CredentialUIDs))
	fmt.Fprintf(tw, "Timeout:\t%ds\n", s.TimeoutS)
	fmt.Fprintf(tw, "Size:\t%d bytes\n", s.Size)
	fmt.Fprintf(tw, "SHA-256:\t%s\n", clean(s.SHA256))
	fmt.Fprintf(tw, "Created:\t%s\n", timeText(s.CreatedAt))
	return tw.Flush()
}

// orDash shows text in a table cell, or - when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return clean(s)
}

// listText shows a list in a table cell: comma-separated, or - when empty.
func listText(items []string) string {
	if len(items) == 0 {
		return "-"
	}
	parts := make([]string, len(items))
	for i, s := range items {
		parts[i] = clean(s)
	}
	return strings.Join(parts, ",")
}
