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
	"github.com/keyturn/keyturn/internal/config"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/store"
)

// EnvStorage names the vault's database for the commands that open a data directory
// directly, as --storage does.
const EnvStorage = "KEYTURN_STORAGE"

// BrokenChainError is the error of audit verify when the chain does not hold: it names the
// first broken link. Its exit code is ExitFailed.
type BrokenChainError struct{ Break audit.Break }

func (e BrokenChainError) Error() string {
	if e.Break.TeamSeq != 0 {
		return fmt.Sprintf("the audit chain is broken at event %d, team event %d (%s): %s", e.Break.Seq, e.Break.TeamSeq, e.Break.Reason, e.Break.Message)
	}
	return fmt.Sprintf("the audit chain is broken at event %d (%s): %s", e.Break.Seq, e.Break.Reason, e.Break.Message)
}

func (e *env) auditVerifyCommand() *cobra.Command {
	var head, dir, team, passphraseFile, storage, chain string
	var out Output
	cmd := &cobra.Command{
		Use:   "verify [--chain team|vault] [--head SEQ:ID] [--data DIR --team T [--passphrase-file F] [--storage postgres://…]]",
		Short: "Check the team's audit hash chain end to end",
		Long: `Check the team's audit hash chain end to end. Each team's events are numbered 1, 2, 3, … (the
team event number) and each is chained to the team's event before it by a keyed hash, so an
event altered (hash_mismatch), removed (sequence_gap) or inserted or reordered
(link_mismatch) breaks the chain. verify exits 0 when the chain holds, printing the number of
the team's events and its head (SEQ:ID, the newest event's number in the vault's trail and
its hash), and 1 when it does not, naming the first broken link (its event number and team
event number) and why.

--chain vault checks the vault-wide chain instead, which runs through every team's events in
the order they were written (the one audit sinks follow): it reads every team's events, reports
an altered event only if it is the team's, and a gap or broken link next to another team's
event by number alone.

Removing the newest events leaves a shorter chain that holds. Keep the head printed by one run
somewhere else and pass it to the next as --head SEQ:ID: that event must still be there
(head_missing otherwise). An audit sink that acknowledged events beyond the end of the trail
also shows it (tail_truncated).

Either chain holds events a caller limited to folders may not see (service users, keys,
records outside the folders), so such a caller is refused. It needs the security_admin role.

With --data DIR it needs no server: it reads the data directory directly, unsealing it with
the key file in DIR or --passphrase-file as keyturn server does; the team is --team, else
KEYTURN_TEAM. On a vault in PostgreSQL, give its database as keyturn init was given it:
--storage, else KEYTURN_STORAGE. Use it when you would rather not start a server on a
database you doubt. It can run beside a running server.
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
			if chain != audit.ChainTeam && chain != audit.ChainVault {
				return Usagef("--chain must be %s or %s, not %q", audit.ChainTeam, audit.ChainVault, chain)
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
					storage = strings.TrimSpace(e.getenv(EnvStorage))
				}
				if err := config.ValidateStorage(storage); err != nil {
					return Usagef("--storage: %w", err)
				}
				if rep, err = verifyDataDir(cmd.Context(), dir, storage, team, passphraseFile, chain, o); err != nil {
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
				if rep, raw, err = c.VerifyAudit(cmd.Context(), chain, o.Head); err != nil {
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
	f.StringVar(&chain, "chain", audit.ChainTeam, "the chain to check: team (the team's own) or vault (the vault-wide one, through every team's events)")
	f.StringVar(&head, "head", "", "a head an earlier verify printed (SEQ:ID): it must still be in the trail")
	f.StringVar(&dir, "data", "", "verify the data directory DIR directly, without a server")
	f.StringVar(&team, "team", "", "with --data: the team (default KEYTURN_TEAM)")
	f.StringVar(&passphraseFile, "passphrase-file", "", "with --data: file holding the passphrase, if the vault was sealed with one")
	f.StringVar(&storage, "storage", "", "with --data: the vault's postgres://user@host/database URL (default: "+EnvStorage+", else the SQLite database in DIR)")
	AddOutputFlag(cmd, &out)
	return cmd
}

// writeReport writes a verification: the API's answer as it came (raw) or the report, as
// JSON or YAML, or a sentence.
func writeReport(inv *invocation, rep audit.Report, raw []byte) error {
	text := func(w io.Writer) error {
		head := "none (no events yet)"
		if rep.Head != nil {
			head = rep.Head.String()
		}
		which := "The audit chain"
		if rep.Chain == audit.ChainVault {
			which = "The vault-wide audit chain"
		}
		_, err := fmt.Fprintf(w, "%s holds: %d events of the team; head %s\n", which, rep.Events, head)
		return err
	}
	if raw != nil {
		return inv.writeRaw(raw, text)
	}
	return inv.write(rep, text)
}

// verifyDataDir verifies a team's chain in the data directory dir, its database in storage
// (empty: the SQLite file in dir), without a server.
func verifyDataDir(ctx context.Context, dir, storage, team, passphraseFile, chain string, o audit.VerifyOptions) (audit.Report, error) {
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
	log := audit.New(v.DB, v.Keys)
	if chain == audit.ChainVault {
		return log.VerifyVault(ctx, t.ID, o)
	}
	return log.VerifyTeam(ctx, t.ID, o)
}

// VerifyAudit asks the server to verify the team's audit chain (audit.ChainTeam or
// audit.ChainVault; empty: the team's); head, when not nil, is a head an earlier verification
// reported.
func (c *Client) VerifyAudit(ctx context.Context, chain string, head *audit.Link) (audit.Report, []byte, error) {
	q := url.Values{}
	if chain != "" {
		q.Set("chain", chain)
	}
	if head != nil {
		q.Set("head", head.String())
	}
	var rep audit.Report
	raw, err := c.call(ctx, "GET", c.url(c.teamPath("audit", "verify"), q), nil, &rep)
	return rep, raw, err
}
