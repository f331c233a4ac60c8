package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/store"
)

// BrokenChainError is the error of audit verify when the chain does not hold: it names the
// first broken link. Its exit code is ExitFailed.
type BrokenChainError struct{ Break audit.Break }

func (e BrokenChainError) Error() string {
	return fmt.Sprintf("the audit chain is broken at event %d (%s): %s", e.Break.Seq, e.Break.Reason, e.Break.Message)
}

func (e *env) auditVerifyCommand() *cobra.Command {
	var head, dir, team, passphraseFile, storage string
	var out Output
	cmd := &cobra.Command{
		Use:   "verify [--head SEQ:ID] [--data DIR --team T [--passphrase-file F]]",
		Short: "Check the team's audit hash chain end to end",
		Long: `Check the team's audit hash chain end to end. Every event is chained to the one before it by
a keyed hash, so an event altered (hash_mismatch), removed (sequence_gap) or inserted or
reordered (link_mismatch) breaks the chain. verify exits 0 when the chain holds, printing the
number of the team's events and its head (SEQ:ID, the newest event and its hash), and 1 when
it does not, naming the first broken link and why.

Removing the newest events leaves a shorter chain that holds. Keep the head printed by one run
somewhere else and pass it to the next as --head SEQ:ID: that event must still be there
(head_missing otherwise). An audit sink that acknowledged events beyond the end of the trail
also shows it (tail_truncated).

The chain runs through every team's events, so verify reads them all; a caller limited to
folders is refused, since it may not see them. It needs the security_admin role.

With --data DIR it needs no server: it reads the data directory directly, unsealing it with
the key file in DIR or --passphrase-file as keyturn server does; the team is --team, else
KEYTURN_TEAM. With --storage (default KEYTURN_STORAGE) postgres://…, the vault's database is
that PostgreSQL database and DIR holds its key file. Use it when you would rather not start a server on a database you doubt. It
can run beside a running server.
` + envHelp,
		Example: `  keyturn audit verify
  keyturn audit verify --head 1042:5f0c…e1 -o json
  keyturn audit verify --data /var/lib/keyturn --team acme --passphrase-file /etc/keyturn/pass`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := out.Format()
			if err != nil {
				return err
			}
			var o audit.VerifyOptions
			if head != "" {
				h, err := audit.ParseLink(head)
				if err != nil {
					return Usagef("--head %w", err)
				}
				o.Head = &h
			}
			var rep audit.Report
			var raw []byte
			if dir != "" {
				if team == "" {
					team = strings.TrimSpace(e.getenv(EnvTeam))
				}
				if team == "" {
					return Usagef("--data needs --team (or %s)", EnvTeam)
				}
				if storage == "" {
					storage = strings.TrimSpace(e.getenv(envStorage))
				}
				if storage != "" && !store.IsPostgres(storage) {
					return Usagef("--storage: give a postgres:// URL, or nothing for the SQLite database in --data")
				}
				if rep, err = verifyDataDir(cmd.Context(), dir, storage, team, passphraseFile, o); err != nil {
					return err
				}
			} else {
				if team != "" || passphraseFile != "" || storage != "" {
					return Usagef("--team, --passphrase-file and --storage go with --data; against a server the team is %s", EnvTeam)
				}
				c, err := e.client()
				if err != nil {
					return err
				}
				if rep, raw, err = c.VerifyAudit(cmd.Context(), o.Head); err != nil {
					return err
				}
			}
			inv := &invocation{cmd: cmd, w: cmd.OutOrStdout(), format: format}
			if !rep.OK {
				if rep.FirstBroken == nil {
					return errors.New("the server answered that the audit chain is broken without saying where")
				}
				if format != FormatTable {
					if err := writeReport(inv, rep, raw); err != nil {
						return err
					}
				}
				return BrokenChainError{Break: *rep.FirstBroken}
			}
			return writeReport(inv, rep, raw)
		},
	}
	f := cmd.Flags()
	f.StringVar(&head, "head", "", "a head an earlier verify printed (SEQ:ID): it must still be in the trail")
	f.StringVar(&dir, "data", "", "verify the data directory DIR directly, without a server")
	f.StringVar(&team, "team", "", "with --data: the team (default KEYTURN_TEAM)")
	f.StringVar(&passphraseFile, "passphrase-file", "", "with --data: file holding the passphrase, if the vault was sealed with one")
	f.StringVar(&storage, "storage", "", "with --data: the postgres:// URL of the vault's database (default KEYTURN_STORAGE, else the SQLite database in DIR)")
	AddOutputFlag(cmd, &out)
	return cmd
}

// envStorage names the vault's database, as for keyturn server.
const envStorage = "KEYTURN_STORAGE"

// writeReport writes a verification: the API's answer as it came (raw) or the report, as
// JSON or YAML, or a sentence.
func writeReport(inv *invocation, rep audit.Report, raw []byte) error {
	text := func(w io.Writer) error {
		head := "none (no events yet)"
		if rep.Head != nil {
			head = rep.Head.String()
		}
		_, err := fmt.Fprintf(w, "The audit chain holds: %d events of the team; head %s\n", rep.Events, head)
		return err
	}
	if raw != nil {
		return inv.writeRaw(raw, text)
	}
	return inv.write(rep, text)
}

// verifyDataDir verifies a team's chain in the data directory dir (its database in storage:
// empty for the SQLite file in dir, or a postgres:// URL), without a server.
func verifyDataDir(ctx context.Context, dir, storage, team, passphraseFile string, o audit.VerifyOptions) (audit.Report, error) {
	v, err := datadir.OpenStorage(ctx, dir, storage, datadir.Unseal{PassphraseFile: passphraseFile})
	if err != nil {
		return audit.Report{}, err
	}
	defer v.Close()
	t, err := v.DB.TeamByName(ctx, team)
	if errors.Is(err, store.ErrNotFound) {
		return audit.Report{}, fmt.Errorf("%s has no team %q", dir, team)
	}
	if err != nil {
		return audit.Report{}, fmt.Errorf("read team %q: %w", team, err)
	}
	return audit.New(v.DB, v.Keys).VerifyTeam(ctx, t.ID, o)
}

// VerifyAudit asks the server to verify the team's audit chain; head, when not nil, is a head
// an earlier verification reported.
func (c *Client) VerifyAudit(ctx context.Context, head *audit.Link) (audit.Report, []byte, error) {
	q := url.Values{}
	if head != nil {
		q.Set("head", head.String())
	}
	var rep audit.Report
	raw, err := c.call(ctx, "GET", c.url(c.teamPath("audit", "verify"), q), nil, &rep)
	return rep, raw, err
}
