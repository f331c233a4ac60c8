package cli

import (
	"context"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// followPage is how many events audit --follow asks for at a time when --limit is not given.
const followPage = 1000

func (e *env) auditCommand() *cobra.Command {
	var after int64
	var limit int
	var follow bool
	var out Output
	cmd := &cobra.Command{
		Use:   "audit [--after N] [--limit N] [--follow] | audit verify",
		Short: "Show the team's audit events",
		Long: `Show the team's audit events, oldest first: sequence number, time, type, actor, record and
details (never a secret). --after N shows the events after sequence number N; --limit N at
most N of them (1 to 1000; default the server's, 100). A service user limited to folders sees
only the events of records in them: not those of service users, keys or deleted records.

--follow then keeps asking for new events every second and shows them as they come, until
interrupted (Ctrl-C). With -o json each event is printed as one line of JSON, with -o yaml as
one YAML document ("---" first); without --follow the API's {"list": [...]} is printed.
` + envHelp,
		Example: `  keyturn audit --follow
  keyturn audit --after 1200 --limit 50 -o json`,
		Args: cobra.NoArgs,
		RunE: e.run(&out, func(cmd *cobra.Command, _ []string) error {
			if after < 0 {
				return Usagef("--after %d: give an event sequence number (0 or more)", after)
			}
			if cmd.Flags().Changed("limit") && limit < 1 {
				return Usagef("--limit %d: give a number from 1 to 1000", limit)
			}
			return nil
		}, func(ctx context.Context, c *Client, inv *invocation) error {
			if !follow {
				events, raw, err := c.AuditEvents(ctx, after, limit)
				if err != nil {
					return err
				}
				return inv.writeRaw(raw, func(w io.Writer) error { return (&eventTable{w: w}).write(events) })
			}
			return e.followAudit(ctx, c, inv.w, after, limit, inv.format)
		}),
	}
	f := cmd.Flags()
	f.Int64Var(&after, "after", 0, "show the events after this sequence number")
	f.IntVar(&limit, "limit", 0, "show at most this many events (1 to 1000; default 100)")
	f.BoolVar(&follow, "follow", false, "keep showing new events as they come, until interrupted")
	AddOutputFlag(cmd, &out)
	cmd.AddCommand(e.auditVerifyCommand())
	return cmd
}

// followAudit shows the events after seq after, then polls for new ones until ctx ends,
// which is how it stops: that is not an error.
func (e *env) followAudit(ctx context.Context, c *Client, w io.Writer, after int64, limit int, f Format) error {
	page := limit
	if page <= 0 {
		page = followPage
	}
	interval := orDefault(e.auditPoll, time.Second)
	table := &eventTable{w: w}
	first := true
	for {
		// Drain what there is: a full page means more may wait.
		for {
			events, _, err := c.AuditEvents(ctx, after, page)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if f != FormatTable {
				for _, ev := range events {
					if err := writeEvent(w, f, ev); err != nil {
						return err
					}
				}
			} else if len(events) > 0 || !table.header {
				if err := table.write(events); err != nil {
					return err
				}
			}
			if len(events) > 0 {
				after = events[len(events)-1].Seq
			}
			// The first page answers --limit; after it, follow everything.
			if first {
				first = false
				if limit > 0 {
					break
				}
			}
			if len(events) < page {
				break
			}
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// writeEvent writes one followed event: with -o json as one line of compact JSON, with -o yaml
// as one YAML document starting with "---".
func writeEvent(w io.Writer, f Format, ev AuditEvent) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if f == FormatYAML {
		if _, err := io.WriteString(w, "---\n"); err != nil {
			return err
		}
		return writeRawYAML(w, b)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// eventTable writes audit events as a table in batches, as they come; its columns keep the
// widths of the widest cell so far, so that later batches line up with earlier ones.
type eventTable struct {
	w      io.Writer
	widths []int
	header bool // the header has been written
}

// write writes a batch of events, after the header if it has not been written yet.
func (t *eventTable) write(events []AuditEvent) error {
	var rows [][]string
	if !t.header {
		rows = append(rows, []string{"SEQ", "TIME", "TYPE", "ACTOR", "RECORD", "DETAILS"})
		t.header = true
	}
	for _, ev := range events {
		rows = append(rows, []string{strconv.FormatInt(ev.Seq, 10), timeText(ev.CreatedAt), clean(ev.Type),
			orDash(ev.Actor), orDash(ev.RecordUID), detailsText(ev.Details)})
	}
	for _, row := range rows {
		for i, cell := range row {
			if i == len(t.widths) {
				t.widths = append(t.widths, 0)
			}
			t.widths[i] = max(t.widths[i], displayWidth(cell))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		for i, cell := range row {
			b.WriteString(cell)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", t.widths[i]-displayWidth(cell)+2))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(t.w, b.String())
	return err
}

// detailsText shows event details in a table cell: key=value pairs in key order, a string
// value bare when it can be and quoted otherwise, any other value as compact JSON; empty
// strings and nulls are left out.
func detailsText(d map[string]any) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		var v string
		switch x := d[k].(type) {
		case nil:
			continue
		case string:
			if x == "" {
				continue
			}
			v = x
			if strings.ContainsAny(x, " \"=,") || clean(x) != x {
				v = strconv.Quote(x)
			}
		default:
			b, err := json.Marshal(x)
			if err != nil {
				continue
			}
			v = string(b)
		}
		parts = append(parts, clean(k)+"="+v)
	}
	if len(parts) == 0 {
		return "-"
	}
	return clean(strings.Join(parts, " "))
}
