package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func (e *env) jobCommand() *cobra.Command {
	var id string
	var out Output
	cmd := &cobra.Command{
		Use:   "job ROTATION_ID",
		Short: "Show a rotation run: status, state, error, times and the scripts' exec log",
		Long: `Show a rotation run: its record, trigger, status, state, attempt, error and times, then the
exec log: each script that ran, with its return code, duration, standard output and standard
error (capped, and with every secret of the run replaced by [REDACTED]).
The exit code is 0 whatever the run's status; "keyturn rotate --wait" fails when a run does.
With -o json, the run as the API returns it.
` + envHelp,
		Args: cobra.ExactArgs(1),
		RunE: e.run(&out, func(_ *cobra.Command, args []string) (err error) {
			id, err = idArg(args[0], "rotation id")
			return err
		}, func(ctx context.Context, c *Client, inv *invocation) error {
			run, raw, err := c.GetRun(ctx, id)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, func(w io.Writer) error { return writeRun(w, run) })
		}),
	}
	AddOutputFlag(cmd, &out)
	return cmd
}

// writeRun writes a rotation run and its exec log as text.
func writeRun(w io.Writer, r Run) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "ID:\t%s\n", clean(r.ID))
	fmt.Fprintf(tw, "Record:\t%s\n", clean(r.RecordUID))
	fmt.Fprintf(tw, "Trigger:\t%s\n", clean(r.Trigger))
	fmt.Fprintf(tw, "Status:\t%s\n", clean(r.Status))
	fmt.Fprintf(tw, "State:\t%s\n", clean(r.State))
	fmt.Fprintf(tw, "Attempt:\t%d\n", r.Attempt)
	fmt.Fprintf(tw, "Error:\t%s\n", runErrorText(r.Error))
	fmt.Fprintf(tw, "Created:\t%s\n", timeText(r.CreatedAt))
	fmt.Fprintf(tw, "Started:\t%s\n", orDash(timePtrText(r.StartedAt)))
	fmt.Fprintf(tw, "Finished:\t%s\n", orDash(timePtrText(r.FinishedAt)))
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	if len(r.ExecLog) == 0 {
		b.WriteString("Exec log: (none)\n")
	} else {
		b.WriteString("Exec log:\n")
	}
	for i, x := range r.ExecLog {
		fmt.Fprintf(&b, "  [%d] %s\n", i+1, clean(x.Name))
		fmt.Fprintf(&b, "      return code: %d\n", x.ReturnCode)
		fmt.Fprintf(&b, "      duration:    %s\n", time.Duration(x.DurationMS)*time.Millisecond)
		writeStream(&b, "stdout:", x.Stdout)
		writeStream(&b, "stderr:", x.Stderr)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeStream writes a script's captured output under a label, each line indented and made
// safe to print.
func writeStream(b *strings.Builder, label, text string) {
	text = strings.TrimRight(text, "\n")
	if text == "" {
		fmt.Fprintf(b, "      %-12s (empty)\n", label)
		return
	}
	fmt.Fprintf(b, "      %s\n", label)
	for _, line := range strings.Split(text, "\n") {
		fmt.Fprintf(b, "        %s\n", strings.TrimRight(cleanLine(strings.TrimSuffix(line, "\r")), " "))
	}
}

// runErrorText shows why a run failed: "code: message", or - when it did not.
func runErrorText(e *RunError) string {
	if e == nil || (e.Code == "" && e.Message == "") {
		return "-"
	}
	if e.Code == "" {
		return clean(e.Message)
	}
	return clean(e.Code + ": " + e.Message)
}
