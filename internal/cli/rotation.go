package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/passgen"
)

// defaultTZ is the time zone of a cron schedule given without --tz.
const defaultTZ = "Etc/UTC"

func (e *env) rotationCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotation",
		Short: "Set and show records' rotation settings, and list rotation runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(e.rotationSet(), e.rotationInfo(), e.rotationList())
	return cmd
}

func (e *env) rotationSet() *cobra.Command {
	var s RotationSettings
	var schedule, tz, complexity string
	var disable bool
	var out *output
	cmd := &cobra.Command{
		Use:   `set UID --method scripts_only|general [--connector okta|opa|rest] [--schedule "CRON"|on-demand] [--tz ZONE] [--complexity "len,caps,lower,digits,special[,chars]"] [--config UID] [--resource UID] [--verify-with okta|opa|rest] [--disable]`,
		Short: "Set a pamUser record's rotation settings",
		Long: `Set a pamUser record's rotation settings, replacing any it had: what the flags give, and
the defaults for the rest. Then show them (with -o json, as the API returns them).

--method general: the connector (okta, opa or rest) changes the password on the target named
  by the --resource record, then the record's scripts run.
--method scripts_only: the record's scripts are the rotation ("keyturn script add");
  --verify-with names a connector that checks the new password afterwards.
--schedule: a cron expression, such as "0 0 3 * * ?", in the --tz time zone (default
  ` + defaultTZ + `), or on-demand (the default): rotate only when asked ("keyturn rotate").
--complexity: the new passwords' length and the least number of capitals, lower-case
  letters, digits and special characters, optionally followed by the special characters
  allowed, such as "32,2,2,2,2" or "24,1,1,1,1,!@#$%"; default 20 with one of each.
--config: the pamConfiguration record the rotation belongs to.
--disable: keep the settings, but rotate no more until they are set again without it.
` + envHelp,
		Example: `  keyturn rotation set 3bX... --method scripts_only --complexity "32,2,2,2,2"
  keyturn rotation set 3bX... --method general --connector okta --resource 7Yk... --schedule "0 0 3 * * ?" --tz Europe/Berlin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			uid, err := uidArg(args)
			if err != nil {
				return err
			}
			if strings.TrimSpace(s.Method) == "" {
				return Usagef("--method is required: scripts_only or general")
			}
			flags := cmd.Flags()
			if flags.Changed("tz") && !flags.Changed("schedule") {
				return Usagef("--tz is the time zone of a cron --schedule: give the schedule too")
			}
			if flags.Changed("schedule") {
				sched, err := scheduleJSON(schedule, tz, flags.Changed("tz"))
				if err != nil {
					return err
				}
				s.Schedule = sched
			}
			if flags.Changed("complexity") {
				cx, err := passgen.ParseCLI(complexity)
				if err != nil {
					return Usagef("--complexity: %v", err)
				}
				s.Complexity = &cx
			}
			enabled := !disable
			s.Enabled = &enabled
			c, err := e.client()
			if err != nil {
				return err
			}
			saved, raw, err := c.SetRotation(cmd.Context(), uid, s)
			if err != nil {
				return err
			}
			if asJSON {
				return writeRawJSON(cmd.OutOrStdout(), raw)
			}
			return writeRotation(cmd.OutOrStdout(), uid, RotationInfo{Settings: saved}, false)
		},
	}
	f := cmd.Flags()
	f.StringVar(&s.Method, "method", "", "scripts_only or general (required)")
	f.StringVar(&s.Connector, "connector", "", "the connector of method general: okta, opa or rest")
	f.StringVar(&schedule, "schedule", "", `a cron expression such as "0 0 3 * * ?", or on-demand (the default)`)
	f.StringVar(&tz, "tz", "", "the time zone of a cron schedule (default "+defaultTZ+")")
	f.StringVar(&complexity, "complexity", "", `password complexity "len,caps,lower,digits,special[,chars]"`)
	f.StringVar(&s.ConfigurationUID, "config", "", "UID of the pamConfiguration record")
	f.StringVar(&s.ResourceUID, "resource", "", "UID of the record holding the target and its admin credential")
	f.StringVar(&s.VerifyWith, "verify-with", "", "a connector that verifies the new password: okta, opa or rest")
	f.BoolVar(&disable, "disable", false, "keep the settings but rotate no more")
	out = addOutputFlag(cmd)
	return cmd
}

// scheduleJSON turns --schedule and --tz into the API's schedule object.
func scheduleJSON(schedule, tz string, tzGiven bool) (json.RawMessage, error) {
	schedule = strings.TrimSpace(schedule)
	switch strings.ToLower(strings.ReplaceAll(schedule, "_", "-")) {
	case "":
		return nil, Usagef(`--schedule is empty: give a cron expression such as "0 0 3 * * ?", or on-demand`)
	case "on-demand":
		if tzGiven {
			return nil, Usagef("--tz is the time zone of a cron --schedule, not of on-demand")
		}
		return json.RawMessage(`{"type":"ON_DEMAND"}`), nil
	}
	tz = strings.TrimSpace(tz)
	if tz == "" {
		if tzGiven {
			return nil, Usagef("--tz is empty: give a time zone such as %s or Europe/Berlin", defaultTZ)
		}
		tz = defaultTZ
	}
	return json.Marshal(map[string]string{"type": "CRON", "cron": schedule, "tz": tz})
}

func (e *env) rotationInfo() *cobra.Command {
	var out *output
	cmd := &cobra.Command{
		Use:   "info UID",
		Short: "Show a record's rotation settings and state",
		Long: `Show a pamUser record's rotation settings, the status of its last rotation ("never_rotated"
when there has been none), that rotation's id, and when the next scheduled one is due.
With -o json, as the API returns it.
` + envHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			uid, err := uidArg(args)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			info, raw, err := c.RotationInfo(cmd.Context(), uid)
			if err != nil {
				return err
			}
			if asJSON {
				return writeRawJSON(cmd.OutOrStdout(), raw)
			}
			return writeRotation(cmd.OutOrStdout(), uid, info, true)
		},
	}
	out = addOutputFlag(cmd)
	return cmd
}

func (e *env) rotationList() *cobra.Command {
	var filter RunFilter
	var out *output
	cmd := &cobra.Command{
		Use:   "list [--record UID] [--status S]",
		Short: "List rotation runs, newest first",
		Long: `List rotation runs, newest first, every page of them: id, record, status, state, attempt,
and when each was created and finished. --status is one of queued, running, succeeded, failed
or needs_attention. "keyturn job ID" shows one run with its exec log.
With -o json: {"list": [...]} holding every page's runs.
` + envHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			runs, err := c.ListRuns(cmd.Context(), filter)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string][]Run{"list": runs})
			}
			tw := newTable(&trimWriter{w: cmd.OutOrStdout()})
			fmt.Fprintln(tw, "ID\tRECORD\tSTATUS\tSTATE\tATTEMPT\tCREATED\tFINISHED")
			for _, r := range runs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", clean(r.ID), clean(r.RecordUID), clean(r.Status),
					clean(r.State), r.Attempt, timeText(r.CreatedAt), orDash(timePtrText(r.FinishedAt)))
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&filter.RecordUID, "record", "", "only runs of this record")
	f.StringVar(&filter.Status, "status", "", "only runs with this status")
	out = addOutputFlag(cmd)
	return cmd
}

// writeRotation writes rotation settings as text, with the state when withState is set.
func writeRotation(w io.Writer, uid string, info RotationInfo, withState bool) error {
	tw := newTable(&trimWriter{w: w})
	fmt.Fprintf(tw, "Record:\t%s\n", clean(uid))
	fmt.Fprintf(tw, "Method:\t%s\n", clean(info.Method))
	fmt.Fprintf(tw, "Connector:\t%s\n", orDash(info.Connector))
	fmt.Fprintf(tw, "Configuration:\t%s\n", orDash(info.ConfigurationUID))
	fmt.Fprintf(tw, "Resource:\t%s\n", orDash(info.ResourceUID))
	fmt.Fprintf(tw, "Schedule:\t%s\n", scheduleText(info.Schedule))
	cx := "default (" + passgen.Default().String() + ")"
	if info.Complexity != nil {
		cx = info.Complexity.String()
	}
	fmt.Fprintf(tw, "Complexity:\t%s\n", clean(cx))
	fmt.Fprintf(tw, "Verify with:\t%s\n", orDash(info.VerifyWith))
	fmt.Fprintf(tw, "Enabled:\t%s\n", strconv.FormatBool(info.IsEnabled()))
	if withState {
		fmt.Fprintf(tw, "State:\t%s\n", clean(info.State))
		fmt.Fprintf(tw, "Last rotation:\t%s\n", orDash(info.LastRotationID))
		fmt.Fprintf(tw, "Next run:\t%s\n", orDash(timePtrText(info.NextRunAt)))
	}
	return tw.Flush()
}

// scheduleText shows a schedule object: on-demand, cron EXPR (TZ), or else its JSON.
func scheduleText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return "on-demand"
	}
	var s struct {
		Type string `json:"type"`
		Cron string `json:"cron"`
		TZ   string `json:"tz"`
	}
	if json.Unmarshal(raw, &s) == nil {
		switch s.Type {
		case "ON_DEMAND":
			return "on-demand"
		case "CRON":
			if s.TZ == "" {
				s.TZ = defaultTZ
			}
			return clean(fmt.Sprintf("cron %s (%s)", s.Cron, s.TZ))
		}
	}
	return valueText(raw)
}

// timePtrText shows an optional time, or "" when there is none.
func timePtrText(t *time.Time) string {
	if t == nil {
		return ""
	}
	return timeText(*t)
}
