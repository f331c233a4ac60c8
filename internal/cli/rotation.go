package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/passgen"
	"github.com/keyturn/keyturn/internal/rotation"
)

// defaultTZ is the time zone of a cron schedule given without --tz.
const defaultTZ = "Etc/UTC"

func (e *env) rotationCommand() *cobra.Command {
	return groupCommand("rotation", "Set and show records' rotation settings, and list rotation runs",
		e.rotationSet(), e.rotationPause(true), e.rotationPause(false), e.rotationInfo(), e.rotationList())
}

func (e *env) rotationSet() *cobra.Command {
	var f setFlags
	var uid string
	var change rotationChange // what the flags change
	var out Output
	cmd := &cobra.Command{
		Use: `set UID|TITLE [--method scripts_only|general] [--connector okta|opa|rest|ssh|mysql|postgresql|ldap] [--schedule "CRON"|on-demand|default|JSON] [--tz ZONE] ` +
			`[--window DURATION] [--pause|--resume] [--catch-up run_once|skip|default] [--next-run-at TIME] ` +
			`[--complexity "len,caps,lower,digits,special[,chars]"|default] [--config UID] [--resource UID] [--verify-with okta|opa|rest|ssh|mysql|postgresql|ldap] [--disable|--enable]`,
		Short: "Set a pamUser record's rotation settings",
		Long: `Set a pamUser record's rotation settings: what the flags give changes, everything else stays as
the record has it (the settings are read first, then stored whole). A record without settings
needs --method; what no flag gives takes the defaults. Then show the settings (with -o json, as
the API returns them). An empty value ("--connector ''") removes a setting.

--method general: the connector (okta, opa, rest, ssh, mysql, postgresql or ldap) changes the
  password on the target named by the --resource record, then the record's scripts run.
--method scripts_only: the record's scripts are the rotation ("keyturn script add");
  --verify-with names a connector that checks the new password afterwards. Changing the
  method to scripts_only drops the connector unless --connector is given.
--schedule: a Quartz cron expression, such as "0 0 3 * * ?", in the --tz time zone (default
  ` + defaultTZ + `); on-demand (the default): rotate only when asked ("keyturn rotate");
  default: the --config configuration's default schedule; or a schedule object as JSON,
  sent as given, such as '{"type":"DAILY","time":"03:00","tz":"Europe/Berlin"}'.
--window: how late after its time a scheduled run may still start, such as 2h; later, it
  waits for the next one. "none" removes the window.
--pause, --resume: stop scheduled runs (on-demand rotation still works), or start them again.
--catch-up: what to do with runs missed while the server was down: run_once (one run for
  them all), skip, or default (the server's policy).
--next-run-at: when the next scheduled run happens (RFC 3339, such as 2030-01-02T03:04:05Z,
  in the future); the schedule goes on from there.
--complexity: the new passwords' length and the least number of capitals, lower-case
  letters, digits and special characters, optionally followed by the special characters
  allowed, such as "32,2,2,2,2" or "24,1,1,1,1,!@#$%"; or default (the default): 20, with
  one of each.
--config: the pamConfiguration record the rotation belongs to.
--disable: keep the settings, but rotate no more until --enable.
` + envHelp,
		Example: `  keyturn rotation set 3bX... --method scripts_only --complexity "32,2,2,2,2"
  keyturn rotation set 3bX... --method general --connector okta --resource 7Yk... --schedule "0 0 3 * * ?" --tz Europe/Berlin
  keyturn rotation set 3bX... --schedule '{"type":"WEEKLY","time":"03:00","weekday":"SUNDAY","tz":"Europe/Berlin"}' --window 2h
  keyturn rotation set 3bX... --next-run-at 2030-01-02T03:00:00Z`,
		Args: cobra.ExactArgs(1),
		RunE: e.run(&out, func(cmd *cobra.Command, args []string) (err error) {
			if uid, err = uidArg(args); err != nil {
				return err
			}
			change, err = f.change(cmd.Flags().Changed)
			return err
		}, func(ctx context.Context, c *Client, inv *invocation) error {
			saved, raw, err := updateRotation(ctx, c, uid, func(cur *RotationSettings) (RotationSettings, error) {
				return change.apply(uid, cur)
			})
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, func(w io.Writer) error {
				return writeRotation(w, uid, RotationInfo{Settings: saved}, false)
			})
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&f.method, "method", "", "scripts_only or general (required when the record has no settings yet)")
	fs.StringVar(&f.connector, "connector", "", "the connector of method general: okta, opa, rest, ssh, mysql, postgresql or ldap")
	fs.StringVar(&f.schedule, "schedule", "", `a cron expression such as "0 0 3 * * ?", on-demand, default, or a JSON schedule object`)
	fs.StringVar(&f.tz, "tz", "", "the time zone of a cron schedule (default "+defaultTZ+")")
	fs.StringVar(&f.window, "window", "", `how late a scheduled run may start, such as 2h; "none" for no limit`)
	fs.BoolVar(&f.pause, "pause", false, "stop scheduled runs")
	fs.BoolVar(&f.resume, "resume", false, "start scheduled runs again")
	fs.StringVar(&f.catchUp, "catch-up", "", "runs missed while the server was down: run_once, skip or default")
	fs.StringVar(&f.nextRunAt, "next-run-at", "", "when the next scheduled run happens (RFC 3339)")
	fs.StringVar(&f.complexity, "complexity", "", `password complexity "len,caps,lower,digits,special[,chars]", or default`)
	fs.StringVar(&f.config, "config", "", "UID or title of the pamConfiguration record")
	fs.StringVar(&f.resource, "resource", "", "UID or title of the record holding the target and its admin credential")
	fs.StringVar(&f.verifyWith, "verify-with", "", "a connector that verifies the new password: okta, opa, rest, ssh, mysql, postgresql or ldap")
	fs.BoolVar(&f.disable, "disable", false, "keep the settings but rotate no more")
	fs.BoolVar(&f.enable, "enable", false, "rotate again after --disable")
	completeFlag(cmd, "method", methodValues...)
	completeFlag(cmd, "connector", connectorValues...)
	completeFlag(cmd, "verify-with", connectorValues...)
	completeFlag(cmd, "catch-up", rotation.CatchUpRunOnce, rotation.CatchUpSkip, "default")
	AddOutputFlag(cmd, &out)
	return cmd
}

// setFlags are the flags of rotation set, as given.
type setFlags struct {
	method, connector, schedule, tz, window, catchUp, nextRunAt string
	complexity, config, resource, verifyWith                    string
	pause, resume, disable, enable                              bool
}

// rotationChange is what a rotation set changes; nil fields stay as the record has them.
type rotationChange struct {
	method, connector, config, resource, verifyWith *string
	window, catchUp                                 *string
	schedule                                        json.RawMessage
	complexity                                      **passgen.Complexity
	paused, enabled                                 *bool
	nextRunAt                                       *time.Time
}

// change checks the flags that changed (as changed reports) and returns what they change.
// Every mistake it finds is a usage error, found before the server is asked anything.
func (f *setFlags) change(changed func(name string) bool) (rotationChange, error) {
	var ch rotationChange
	text := func(name, v string) *string {
		if !changed(name) {
			return nil
		}
		v = strings.TrimSpace(v)
		return &v
	}
	if ch.method = text("method", f.method); ch.method != nil && *ch.method == "" {
		return ch, Usagef("--method is empty: give scripts_only or general")
	}
	ch.connector, ch.config, ch.resource = text("connector", f.connector), text("config", f.config), text("resource", f.resource)
	ch.verifyWith = text("verify-with", f.verifyWith)
	if f.pause && f.resume {
		return ch, Usagef("--pause and --resume contradict each other: give one")
	}
	if f.disable && f.enable {
		return ch, Usagef("--disable and --enable contradict each other: give one")
	}
	switch {
	case changed("pause"):
		ch.paused = &f.pause
	case changed("resume"):
		paused := !f.resume
		ch.paused = &paused
	}
	switch {
	case changed("disable"):
		enabled := !f.disable
		ch.enabled = &enabled
	case changed("enable"):
		ch.enabled = &f.enable
	}
	if changed("tz") && !changed("schedule") {
		return ch, Usagef("--tz is the time zone of a cron --schedule: give the schedule too")
	}
	if changed("schedule") {
		sched, err := scheduleJSON(f.schedule, f.tz, changed("tz"))
		if err != nil {
			return ch, err
		}
		ch.schedule = sched
	}
	if ch.window = text("window", f.window); ch.window != nil {
		switch w := strings.ToLower(*ch.window); w {
		case "", "none":
			*ch.window = ""
		default:
			if d, err := time.ParseDuration(w); err != nil || d <= 0 {
				return ch, Usagef("--window %q: give a positive duration such as 30m or 2h, or none", *ch.window)
			}
		}
	}
	if ch.catchUp = text("catch-up", f.catchUp); ch.catchUp != nil {
		switch v := strings.ToLower(strings.ReplaceAll(*ch.catchUp, "-", "_")); v {
		case rotation.CatchUpRunOnce, rotation.CatchUpSkip:
			*ch.catchUp = v
		case "", "default":
			*ch.catchUp = ""
		default:
			return ch, Usagef("--catch-up %q: give %s, %s or default", *ch.catchUp, rotation.CatchUpRunOnce, rotation.CatchUpSkip)
		}
	}
	if changed("next-run-at") {
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(f.nextRunAt))
		if err != nil {
			return ch, Usagef("--next-run-at %q: give an RFC 3339 time such as 2030-01-02T03:04:05Z or 2030-01-02T04:04:05+01:00", f.nextRunAt)
		}
		ch.nextRunAt = &t
	}
	if changed("complexity") {
		var cx *passgen.Complexity
		switch v := strings.TrimSpace(f.complexity); strings.ToLower(v) {
		case "", "default":
		default:
			parsed, err := passgen.ParseCLI(v)
			if err != nil {
				return ch, Usagef("--complexity: %v", err)
			}
			cx = &parsed
		}
		ch.complexity = &cx
	}
	return ch, nil
}

// apply returns the settings cur (nil: the record has none yet) with ch's changes.
func (ch rotationChange) apply(uid string, cur *RotationSettings) (RotationSettings, error) {
	var s RotationSettings
	if cur != nil {
		s = *cur
	} else {
		enabled := true
		s.Enabled = &enabled
	}
	switch {
	case ch.method != nil:
		if *ch.method == rotation.MethodScriptsOnly && ch.connector == nil {
			s.Connector = "" // scripts_only takes no connector: a general one's goes
		}
		s.Method = *ch.method
	case cur == nil:
		return s, Usagef("--method is required: record %s has no rotation settings yet; give scripts_only or general", uid)
	}
	for _, p := range []struct {
		from *string
		to   *string
	}{{ch.connector, &s.Connector}, {ch.config, &s.ConfigurationUID}, {ch.resource, &s.ResourceUID},
		{ch.verifyWith, &s.VerifyWith}, {ch.window, &s.Window}, {ch.catchUp, &s.CatchUp}} {
		if p.from != nil {
			*p.to = *p.from
		}
	}
	if ch.schedule != nil {
		s.Schedule = ch.schedule
	}
	if ch.complexity != nil {
		s.Complexity = *ch.complexity
	}
	if ch.paused != nil {
		s.Paused = *ch.paused
	}
	if ch.enabled != nil {
		enabled := *ch.enabled
		s.Enabled = &enabled
	}
	s.NextRunAt = ch.nextRunAt // a one-off override, not a setting: never the current next run
	return s, nil
}

// updateRotation reads a record's rotation settings (none yet when the API answers 404),
// changes them with apply and stores them whole, as PUT replaces them; when they changed in
// between (409 stale_revision), it reads and applies again. It returns the settings stored
// and the raw answer.
func updateRotation(ctx context.Context, c *Client, uid string,
	apply func(cur *RotationSettings) (RotationSettings, error)) (RotationSettings, []byte, error) {
	for attempt := 1; ; attempt++ {
		var cur *RotationSettings
		info, _, err := c.RotationInfo(ctx, uid)
		var apiErr *APIError
		switch {
		case err == nil:
			cur = &info.Settings // with its revision: the server refuses the write if they changed since
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
		default:
			return RotationSettings{}, nil, err
		}
		s, err := apply(cur)
		if err != nil {
			return RotationSettings{}, nil, err
		}
		saved, raw, err := c.SetRotation(ctx, uid, s)
		if errors.As(err, &apiErr) && apiErr.Code == "stale_revision" && attempt < 3 {
			continue // someone changed them in between: apply the flags to what they hold now
		}
		return saved, raw, err
	}
}

// scheduleJSON turns --schedule and --tz into the API's schedule object.
func scheduleJSON(schedule, tz string, tzGiven bool) (json.RawMessage, error) {
	schedule = strings.TrimSpace(schedule)
	if strings.HasPrefix(schedule, "{") || strings.HasPrefix(schedule, "[") {
		if tzGiven {
			return nil, Usagef(`--tz is the time zone of a cron --schedule; a JSON schedule gives its own "tz"`)
		}
		var v any
		if err := json.Unmarshal([]byte(schedule), &v); err != nil {
			return nil, Usagef("--schedule is not valid JSON: %v", err)
		}
		return json.RawMessage(schedule), nil
	}
	switch word := strings.ToLower(strings.ReplaceAll(schedule, "_", "-")); word {
	case "":
		return nil, Usagef(`--schedule is empty: give a cron expression such as "0 0 3 * * ?", on-demand, default or a JSON schedule`)
	case "on-demand", "default":
		if tzGiven {
			return nil, Usagef("--tz is the time zone of a cron --schedule, not of %s", word)
		}
		if word == "default" {
			return json.RawMessage(`{"type":"DEFAULT"}`), nil
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

// rotationPause is rotation pause (pause) or rotation resume: a read-modify-write of paused.
func (e *env) rotationPause(pause bool) *cobra.Command {
	var uid string
	var out Output
	name, short, long := "resume", "Start a record's scheduled rotations again",
		`Start a pamUser record's scheduled rotations again after "keyturn rotation pause": the next
run is the schedule's next time from now. The other settings stay as they are. Then show the
settings (with -o json, as the API returns them).
`
	if pause {
		name, short, long = "pause", "Stop a record's scheduled rotations",
			`Stop a pamUser record's scheduled rotations until "keyturn rotation resume"; on-demand
rotation ("keyturn rotate") still works. The other settings stay as they are. Then show the
settings (with -o json, as the API returns them).
`
	}
	cmd := &cobra.Command{
		Use:   name + " UID|TITLE",
		Short: short,
		Long:  long + envHelp,
		Args:  cobra.ExactArgs(1),
		RunE: e.run(&out, uidTo(&uid), func(ctx context.Context, c *Client, inv *invocation) error {
			info, _, err := c.RotationInfo(ctx, uid)
			if err != nil {
				return err
			}
			s := info.Settings
			s.Paused, s.NextRunAt = pause, nil
			saved, raw, err := c.SetRotation(ctx, uid, s)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, func(w io.Writer) error {
				return writeRotation(w, uid, RotationInfo{Settings: saved}, false)
			})
		}),
	}
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) rotationInfo() *cobra.Command {
	var uid string
	var out Output
	cmd := &cobra.Command{
		Use:   "info UID|TITLE",
		Short: "Show a record's rotation settings and state",
		Long: `Show a pamUser record's rotation settings, the status of its last rotation ("never_rotated"
when there has been none), that rotation's id, when the next scheduled one is due ("-" when
none is: on-demand, paused or disabled) and when the next heartbeat checks the credential.
When a heartbeat found the credential changed behind keyturn's back, or could not check it,
the drift: its state, since when, and the message. With -o json, as the API returns it.
` + envHelp,
		Args: cobra.ExactArgs(1),
		RunE: e.run(&out, uidTo(&uid), func(ctx context.Context, c *Client, inv *invocation) error {
			info, raw, err := c.RotationInfo(ctx, uid)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, func(w io.Writer) error { return writeRotation(w, uid, info, true) })
		}),
	}
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) rotationList() *cobra.Command {
	var filter RunFilter
	var out Output
	cmd := &cobra.Command{
		Use:   "list [--record UID] [--status S]",
		Short: "List rotation runs, newest first",
		Long: `List rotation runs, newest first, every page of them: id, record, status, state, attempt,
and when each was created and finished. --status is one of queued, running, succeeded, failed
or needs_attention. "keyturn job ID" shows one run with its exec log.
With -o json: {"list": [...]} holding every page's runs.
` + envHelp,
		Args: cobra.NoArgs,
		RunE: e.run(&out, nil, func(ctx context.Context, c *Client, inv *invocation) error {
			if filter.Status != "" && !slices.Contains(rotation.Statuses, filter.Status) {
				return Usagef("--status %q: want one of %s", filter.Status, strings.Join(rotation.Statuses, ", "))
			}
			runs, err := c.ListRuns(ctx, filter)
			if err != nil {
				return err
			}
			return writeList(inv, runs, "ID\tRECORD\tSTATUS\tSTATE\tATTEMPT\tCREATED\tFINISHED", func(r Run) string {
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%s\t%s", clean(r.ID), clean(r.RecordUID), clean(r.Status),
					clean(r.State), r.Attempt, timeText(r.CreatedAt), orDash(timePtrText(r.FinishedAt)))
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&filter.RecordUID, "record", "", "only runs of this record")
	f.StringVar(&filter.Status, "status", "", "only runs with this status")
	completeFlag(cmd, "status", runStatusValues...)
	AddOutputFlag(cmd, &out)
	return cmd
}

// writeRotation writes rotation settings as text, with the state when withState is set.
func writeRotation(w io.Writer, uid string, info RotationInfo, withState bool) error {
	tw := newTable(w)
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
	fmt.Fprintf(tw, "Window:\t%s\n", orDash(info.Window))
	fmt.Fprintf(tw, "Paused:\t%s\n", strconv.FormatBool(info.Paused))
	catchUp := "default"
	if info.CatchUp != "" {
		catchUp = clean(info.CatchUp)
	}
	fmt.Fprintf(tw, "Catch-up:\t%s\n", catchUp)
	if withState {
		fmt.Fprintf(tw, "State:\t%s\n", clean(info.State))
		fmt.Fprintf(tw, "Last rotation:\t%s\n", orDash(info.LastRotationID))
		fmt.Fprintf(tw, "Next run:\t%s\n", orDash(timePtrText(info.NextRunAt)))
		fmt.Fprintf(tw, "Next heartbeat:\t%s\n", orDash(timePtrText(info.NextHeartbeatAt)))
		if d := info.Drift; d != nil {
			fmt.Fprintf(tw, "Drift:\t%s\n", orDash(d.State))
			fmt.Fprintf(tw, "Drift at:\t%s\n", orDash(timePtrText(d.At)))
			fmt.Fprintf(tw, "Drift message:\t%s\n", orDash(d.Message))
		}
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
