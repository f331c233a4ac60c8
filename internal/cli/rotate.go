package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/rotation"
)

// Defaults of the rotate command's waiting and parallelism.
const (
	defaultWaitTimeout = 5 * time.Minute
	defaultPollMin     = 250 * time.Millisecond
	defaultPollMax     = 2 * time.Second
	defaultParallelism = 4
)

// notStarted is the status shown for a record whose rotation could not be started.
const notStarted = "not_started"

// rotateOutcome is what became of one record's rotation.
type rotateOutcome struct {
	RecordUID  string    `json:"record_uid"`
	RotationID string    `json:"rotation_id,omitempty"`
	Status     string    `json:"status"`
	Error      *RunError `json:"error,omitempty"`
	Run        *Run      `json:"run,omitempty"` // the run as last read, with --wait

	lost *ConnError // why the server could not be asked how the run went, with --wait
}

// goOn says which rotations were left running in the server, and how to follow them, with
// the verb for one rotation and for several.
func goOn(outcomes []rotateOutcome, one, several string) string {
	var ids []string
	for _, o := range outcomes {
		if o.RotationID != "" && (o.Run == nil || !o.Run.Terminal()) {
			ids = append(ids, "keyturn job "+clean(o.RotationID))
		}
	}
	switch len(ids) {
	case 0:
		return "the server reported no rotation started that goes on"
	case 1:
		return "the rotation " + one + " in the server: follow it with " + ids[0]
	}
	return fmt.Sprintf("the %d rotations %s in the server: follow them with %s", len(ids), several, strings.Join(ids, ", "))
}

func (e *env) rotateCommand() *cobra.Command {
	var folder string
	var wait bool
	var timeout time.Duration
	var names []string // the records named: UIDs or titles
	var out Output
	cmd := &cobra.Command{
		Use:   "rotate UID|TITLE ... [--folder F] [--wait] [--timeout 5m]",
		Short: "Rotate the passwords of pamUser records now",
		Long: `Start a rotation of each record named, and of every pamUser record in or below --folder,
a few at a time; each record is rotated once however often it is named. An argument is a
record UID, or else the exact title of one record (a title several records share is refused:
give the UID).

Without --wait the command returns once every rotation has started (a record already rotating
keeps its running rotation). With --wait it then waits until each has ended, at most --timeout
(default 5m). A progress bar is shown on standard error when several records rotate and
standard error is a terminal.

The table shows each record's rotation id and status, and why it failed; "keyturn job ID"
shows a rotation's exec log. With -o json: {"list": [{record_uid, rotation_id, status,
error, run}]}.

Exit code 1 when a rotation could not start, or, with --wait, did not succeed in time. When
the server cannot be reached while waiting, the command stops at once (exit code 1): the
rotations may go on there. Interrupted while waiting (Ctrl-C), it stops waiting and exits with
130: the rotations go on in the server, and the message says how to follow them.
` + envHelp,
		Example: `  keyturn rotate 3bX... --wait
  keyturn rotate "Okta admin" "OPA admin"
  keyturn rotate --folder Shared/Okta --wait --timeout 10m`,
		Args: cobra.ArbitraryArgs,
		RunE: e.run(&out, func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && folder == "" {
				return Usagef("name the records to rotate (UIDs or titles), or give --folder")
			}
			for _, a := range args {
				if strings.TrimSpace(a) == "" {
					return Usagef("a record UID or title is empty")
				}
			}
			if cmd.Flags().Changed("folder") && strings.TrimSpace(folder) == "" {
				return Usagef("--folder is empty: give a folder path such as Shared/Okta")
			}
			if cmd.Flags().Changed("timeout") {
				if !wait {
					return Usagef("--timeout is how long --wait waits: give --wait too")
				}
				if timeout <= 0 {
					return Usagef("--timeout %s: give a positive duration such as 5m", timeout)
				}
			}
			names = args
			return nil
		}, func(ctx context.Context, c *Client, inv *invocation) error {
			uids, err := resolveTargets(ctx, c, names, folder)
			if err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			if stderr := inv.cmd.ErrOrStderr(); len(uids) > 1 && e.terminal(stderr) {
				bar = newBar(stderr, len(uids), wait)
			}
			outcomes := e.rotateAll(ctx, c, uids, wait, timeout, bar)
			if bar != nil {
				_ = bar.Finish()
			}
			if err := writeOutcomes(inv, outcomes); err != nil {
				return err
			}
			if ctx.Err() != nil {
				what := "interrupted"
				if wait {
					what += ": stopped waiting"
				}
				return InterruptedError{fmt.Errorf("%s; %s", what, goOn(outcomes, "goes on", "go on"))}
			}
			if lost := slices.IndexFunc(outcomes, func(o rotateOutcome) bool { return o.lost != nil }); lost >= 0 {
				return fmt.Errorf("lost the connection to the server at %s while waiting: %w; %s",
					c.cfg.Addr.Redacted(), outcomes[lost].lost, goOn(outcomes, "may go on", "may go on"))
			}
			failed := 0
			for _, o := range outcomes {
				if !o.ok(wait) {
					failed++
				}
			}
			switch {
			case failed == 0:
				return nil
			case wait:
				return fmt.Errorf("%d of %d rotations did not succeed", failed, len(outcomes))
			default:
				return fmt.Errorf("%d of %d rotations could not start", failed, len(outcomes))
			}
		}),
	}
	f := cmd.Flags()
	f.StringVar(&folder, "folder", "", "rotate every pamUser record in or below this folder too")
	f.BoolVar(&wait, "wait", false, "wait until each rotation has ended")
	f.DurationVar(&timeout, "timeout", defaultWaitTimeout, "how long --wait waits at most")
	AddOutputFlag(cmd, &out)
	return cmd
}

// ok reports whether the rotation started, and, when waited for, succeeded.
func (o rotateOutcome) ok(waited bool) bool {
	if o.RotationID == "" || o.Error != nil {
		return false
	}
	return !waited || o.Status == rotation.StatusSucceeded
}

// resolveTargets turns the arguments and the folder into record UIDs, each once, in order.
func resolveTargets(ctx context.Context, c *Client, args []string, folder string) ([]string, error) {
	var uids []string
	seen := map[string]bool{}
	add := func(uid string) {
		if !seen[uid] {
			seen[uid] = true
			uids = append(uids, uid)
		}
	}
	for _, a := range args {
		uid, err := resolveRecord(ctx, c, a)
		if err != nil {
			return nil, err
		}
		add(uid)
	}
	if folder != "" {
		recs, err := c.ListRecords(ctx, ListFilter{Type: "pamUser", Folder: folder})
		if err != nil {
			return nil, fmt.Errorf("list the pamUser records in folder %s: %w", clean(folder), err)
		}
		if len(recs) == 0 {
			return nil, fmt.Errorf("folder %s holds no pamUser records you can see", clean(folder))
		}
		for _, r := range recs {
			add(r.UID)
		}
	}
	return uids, nil
}

// resolveRecord returns the UID an argument names, as the server resolves a record named in a
// path (its UID, or else its exact title): the UID of the record whose rotation settings the
// name reads. When they cannot be read (no such record, no settings), it returns the argument,
// and the rotate request says what is wrong with it. A title several records share is a usage
// error listing their UIDs (the server's ambiguous_title).
func resolveRecord(ctx context.Context, c *Client, arg string) (string, error) {
	_, raw, err := c.RotationInfo(ctx, arg)
	if ae := (*APIError)(nil); errors.As(err, &ae) {
		if ae.Code == "ambiguous_title" {
			return "", UsageError{fmt.Errorf("rotate %s: %w", clean(arg), err)}
		}
		return arg, nil
	}
	if err != nil {
		return "", err
	}
	var named struct {
		RecordUID string `json:"record_uid"`
	}
	if json.Unmarshal(raw, &named) != nil || named.RecordUID == "" {
		return arg, nil
	}
	return named.RecordUID, nil
}

// newBar returns a progress bar on w counting n rotations as they start, or end when waiting.
func newBar(w io.Writer, n int, wait bool) *progressbar.ProgressBar {
	desc := "starting rotations"
	if wait {
		desc = "rotating"
	}
	bar := progressbar.NewOptions(n,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionClearOnFinish(),
	)
	_ = bar.RenderBlank()
	return bar
}

// rotateAll starts a rotation of each record, a few at a time, and with wait then waits for
// each to end, at most timeout. bar, when not nil, counts the records done.
func (e *env) rotateAll(ctx context.Context, c *Client, uids []string, wait bool, timeout time.Duration,
	bar *progressbar.ProgressBar) []rotateOutcome {
	outcomes := make([]rotateOutcome, len(uids))
	sem := make(chan struct{}, orDefault(e.parallelism, defaultParallelism))
	step := func() {
		if bar != nil {
			_ = bar.Add(1)
		}
	}
	var wg sync.WaitGroup
	for i, uid := range uids {
		o := &outcomes[i]
		o.RecordUID = uid
		wg.Go(func() {
			st, err := withSlot(ctx, sem, func() (Started, error) {
				st, _, err := c.Rotate(ctx, uid, 0)
				return st, err
			})
			if err != nil {
				o.Status, o.Error = notStarted, errorOf(err)
				step()
				return
			}
			o.RotationID, o.Status = st.RotationID, st.Status
			if !wait {
				step()
			}
		})
	}
	wg.Wait()
	if !wait {
		return outcomes
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for i := range outcomes {
		o := &outcomes[i]
		if o.RotationID == "" {
			continue
		}
		wg.Go(func() {
			e.waitRun(wctx, c, sem, o, timeout)
			step()
		})
	}
	wg.Wait()
	return outcomes
}

// waitRun polls a rotation run, with a growing pause, until it ends or ctx does, and records
// how it ended in o.
func (e *env) waitRun(ctx context.Context, c *Client, sem chan struct{}, o *rotateOutcome, timeout time.Duration) {
	delay, maxDelay := orDefault(e.pollMin, defaultPollMin), orDefault(e.pollMax, defaultPollMax)
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			o.Error = waitEnded(ctx, o, timeout)
			return
		case <-t.C:
		}
		run, err := withSlot(ctx, sem, func() (Run, error) {
			run, _, err := c.GetRun(ctx, o.RotationID)
			return run, err
		})
		switch {
		case err == nil:
			o.Status, o.Run = run.Status, &run
			if run.Terminal() {
				if run.Status != rotation.StatusSucceeded {
					o.Error = run.Error
					if o.Error == nil {
						o.Error = &RunError{Code: run.Status, Message: "the rotation ended " + run.Status}
					}
				}
				return
			}
		case ctx.Err() != nil:
			// the loop reports it
		case errors.As(err, &o.lost):
			// The server went away: asking again until --timeout would only hide that.
			o.Error = &RunError{Code: "server_unreachable", Message: fmt.Sprintf(
				"stopped waiting while %s: the server cannot be reached (%v); see keyturn job %s", o.Status, o.lost, o.RotationID)}
			return
		case !transient(err):
			o.Error = errorOf(fmt.Errorf("read the rotation's status: %w", err))
			return
		}
		delay = min(delay*2, maxDelay)
	}
}

// waitEnded says why waiting for a run stopped before it ended.
func waitEnded(ctx context.Context, o *rotateOutcome, timeout time.Duration) *RunError {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &RunError{Code: "wait_timeout", Message: fmt.Sprintf("still %s after waiting %s; see keyturn job %s",
			o.Status, timeout, o.RotationID)}
	}
	return &RunError{Code: "interrupted", Message: fmt.Sprintf("stopped waiting while %s; it goes on in the server: see keyturn job %s",
		o.Status, o.RotationID)}
}

// transient reports whether a failed API call may succeed if tried again: the server answered
// that it is busy or failing. A server that cannot be reached is not waited for.
func transient(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	return ae.Status >= 500 || ae.Status == http.StatusTooManyRequests
}

// withSlot runs f holding one of sem's slots, waiting for one until ctx ends.
func withSlot[T any](ctx context.Context, sem chan struct{}, f func() (T, error)) (T, error) {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
	defer func() { <-sem }()
	return f()
}

// errorOf turns an error into a run error for output: an API error keeps its code.
func errorOf(err error) *RunError {
	var ae *APIError
	if errors.As(err, &ae) {
		msg := ae.Message
		if msg == "" {
			msg = ae.Error()
		}
		return &RunError{Code: ae.Code, Message: msg}
	}
	return &RunError{Message: err.Error()}
}

// writeOutcomes writes what became of each rotation: JSON {"list": outcomes}, or a table
// RECORD ROTATION STATUS, with an ERROR column when any has one.
func writeOutcomes(inv *invocation, outcomes []rotateOutcome) error {
	withErr := slices.ContainsFunc(outcomes, func(o rotateOutcome) bool { return o.Error != nil })
	header := "RECORD\tROTATION\tSTATUS"
	if withErr {
		header += "\tERROR"
	}
	return writeList(inv, outcomes, header, func(o rotateOutcome) string {
		line := fmt.Sprintf("%s\t%s\t%s", clean(o.RecordUID), orDash(o.RotationID), clean(o.Status))
		if withErr {
			line += "\t" + runErrorText(o.Error)
		}
		return line
	})
}
