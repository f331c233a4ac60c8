package cli

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// rotationInfo reads a record's rotation info with rotation info -o json.
func (h *harness) rotationInfo(uid string) RotationInfo {
	h.t.Helper()
	out := h.ok("", "rotation", "info", "-o", "json", "--", uid)
	var info RotationInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		h.t.Fatalf("rotation info -o json: %v\n%s", err, out)
	}
	return info
}

// textLine returns the value of a "Name:  value" line of text output, failing when none.
func textLine(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:[ ]+(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s line in:\n%s", name, out)
	}
	return m[1]
}

// compactJSON is raw compacted, with its keys in a canonical order.
func compactJSON(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// apiErrorOf fails unless err is an API error of status, and returns it.
func apiErrorOf(t *testing.T, err error, status int) *APIError {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != status {
		t.Fatalf("error %v is not an HTTP %d answer", err, status)
	}
	return ae
}

func TestRotationSchedule(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	uid := h.pamUser("Sched user", "", pw1)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}

	// a cron schedule in a time zone: the next run is its next time there, in the future
	out := h.ok("", "rotation", "set", "--method", "scripts_only", "--verify-with", "okta",
		"--schedule", "0 0 3 * * ?", "--tz", "Europe/Berlin", "--", uid)
	if got := textLine(t, out, "Schedule"); got != "cron 0 0 3 * * ? (Europe/Berlin)" {
		t.Errorf("set shows schedule %q", got)
	}
	info := h.rotationInfo(uid)
	if info.NextRunAt == nil {
		t.Fatalf("no next run after setting a cron schedule: %+v", info)
	}
	next := *info.NextRunAt
	if local := next.In(berlin); !next.After(time.Now()) || next.After(time.Now().Add(25*time.Hour)) ||
		local.Hour() != 3 || local.Minute() != 0 || local.Second() != 0 {
		t.Errorf("next run %s (%s in Berlin): want the next 03:00 in Berlin", next, next.In(berlin))
	}
	text := h.ok("", "rotation", "info", "--", uid)
	if got := textLine(t, text, "Next run"); got != next.UTC().Format(time.RFC3339) {
		t.Errorf("info shows next run %q, want %s", got, next.UTC().Format(time.RFC3339))
	}
	for name, want := range map[string]string{"Paused": "false", "Window": "-", "Catch-up": "default", "Enabled": "true"} {
		if got := textLine(t, text, name); got != want {
			t.Errorf("info shows %s %q, want %q", name, got, want)
		}
	}
	if info.NextHeartbeatAt == nil || !info.NextHeartbeatAt.After(time.Now()) {
		t.Errorf("a record verified with okta has no future heartbeat: %v", info.NextHeartbeatAt)
	} else if got := textLine(t, text, "Next heartbeat"); got != info.NextHeartbeatAt.UTC().Format(time.RFC3339) {
		t.Errorf("info shows next heartbeat %q, want %s", got, info.NextHeartbeatAt.UTC().Format(time.RFC3339))
	}
	if strings.Contains(text, "Drift") {
		t.Errorf("info shows a drift before any heartbeat:\n%s", text)
	}

	// the server refuses bad schedules: exit 1 with its message, and nothing changes
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--schedule", "0 0 3 32 * ?"}, "day of month"},
		{[]string{"--schedule", "0 0 3 * * ?", "--tz", "Mars/Olympus"}, "Mars/Olympus"},
		{[]string{"--schedule", "0 */5 * * * ?"}, "minimum interval"},
		{[]string{"--schedule", `{"type":"DAILY","time":"25:00"}`}, "25:00"},
		{[]string{"--schedule", `{"type":"WEEKLY","time":"03:00","weekday":"FUNDAY"}`}, "FUNDAY"},
		{[]string{"--next-run-at", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}, "next_run_at must be in the future"},
	} {
		r := h.failCode(ExitFailed, append(append([]string{"rotation", "set"}, c.args...), "--", uid)...)
		ae := apiErrorOf(t, r.err, http.StatusBadRequest)
		if !strings.Contains(ae.Message, c.msg) {
			t.Errorf("rotation set %v: %q does not say %q", c.args, ae.Message, c.msg)
		}
		if strings.HasPrefix(c.args[0], "--schedule") && ae.Code != "invalid_schedule" {
			t.Errorf("rotation set %v: code %q, want invalid_schedule", c.args, ae.Code)
		}
	}
	if got := h.rotationInfo(uid); got.NextRunAt == nil || !got.NextRunAt.Equal(next) ||
		compactJSON(t, got.Schedule) != `{"cron":"0 0 3 * * ?","type":"CRON","tz":"Europe/Berlin"}` {
		t.Errorf("a refused set changed the schedule: %s, next %v", got.Schedule, got.NextRunAt)
	}

	// pause: no next run, the rest kept; resume: the next run is back
	out = h.ok("", "rotation", "pause", "--", uid)
	if textLine(t, out, "Paused") != "true" || textLine(t, out, "Schedule") != "cron 0 0 3 * * ? (Europe/Berlin)" {
		t.Errorf("pause shows:\n%s", out)
	}
	text = h.ok("", "rotation", "info", "--", uid)
	if textLine(t, text, "Paused") != "true" || textLine(t, text, "Next run") != "-" ||
		textLine(t, text, "Method") != "scripts_only" || textLine(t, text, "Verify with") != "okta" {
		t.Errorf("info after pause:\n%s", text)
	}
	if got := h.rotationInfo(uid); !got.Paused || got.NextRunAt != nil {
		t.Errorf("info -o json after pause: paused %v, next %v", got.Paused, got.NextRunAt)
	}
	// a set that says nothing of pausing keeps the record paused
	h.ok("", "rotation", "set", "--window", "90m", "--", uid)
	if got := h.rotationInfo(uid); !got.Paused || got.NextRunAt != nil || got.Window != "90m" {
		t.Errorf("set --window on a paused record: paused %v, next %v, window %q", got.Paused, got.NextRunAt, got.Window)
	}
	h.ok("", "rotation", "resume", "--", uid)
	info = h.rotationInfo(uid)
	if info.Paused || info.NextRunAt == nil || !info.NextRunAt.Equal(next) {
		t.Errorf("after resume: paused %v, next run %v, want %s", info.Paused, info.NextRunAt, next)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(h.ok("", "rotation", "pause", "-o", "json", "--", uid)), &raw); err != nil || raw["paused"] != true {
		t.Errorf("pause -o json: %v %v", raw, err)
	}
	h.ok("", "rotation", "set", "--resume", "--", uid)
	if got := h.rotationInfo(uid); got.Paused || got.NextRunAt == nil {
		t.Errorf("after set --resume: paused %v, next %v", got.Paused, got.NextRunAt)
	}
	h.ok("", "rotation", "set", "--pause", "--", uid)
	if got := h.rotationInfo(uid); !got.Paused || got.NextRunAt != nil {
		t.Errorf("after set --pause: paused %v, next %v", got.Paused, got.NextRunAt)
	}
	h.ok("", "rotation", "resume", "--", uid)

	// window and catch-up round-trip; "none" and "default" remove them
	out = h.ok("", "rotation", "set", "--window", "2h", "--catch-up", "skip", "--", uid)
	if textLine(t, out, "Window") != "2h" || textLine(t, out, "Catch-up") != "skip" {
		t.Errorf("set --window --catch-up shows:\n%s", out)
	}
	info = h.rotationInfo(uid)
	if info.Window != "2h" || info.CatchUp != "skip" {
		t.Errorf("info after --window 2h --catch-up skip: window %q, catch_up %q", info.Window, info.CatchUp)
	}
	h.ok("", "rotation", "set", "--catch-up", "run-once", "--", uid)
	if info = h.rotationInfo(uid); info.Window != "2h" || info.CatchUp != "run_once" {
		t.Errorf("after --catch-up run-once: window %q, catch_up %q", info.Window, info.CatchUp)
	}
	h.ok("", "rotation", "set", "--window", "none", "--catch-up", "default", "--", uid)
	if info = h.rotationInfo(uid); info.Window != "" || info.CatchUp != "" {
		t.Errorf("after --window none --catch-up default: window %q, catch_up %q", info.Window, info.CatchUp)
	}

	// --next-run-at overrides the next run; the schedule stays
	at := time.Now().Add(72 * time.Hour).Truncate(time.Second).UTC()
	h.ok("", "rotation", "set", "--next-run-at", at.In(berlin).Format(time.RFC3339), "--", uid)
	info = h.rotationInfo(uid)
	if info.NextRunAt == nil || !info.NextRunAt.Equal(at) {
		t.Errorf("next run %v after --next-run-at, want %s", info.NextRunAt, at)
	}
	if compactJSON(t, info.Schedule) != `{"cron":"0 0 3 * * ?","type":"CRON","tz":"Europe/Berlin"}` {
		t.Errorf("--next-run-at changed the schedule: %s", info.Schedule)
	}
	if got := textLine(t, h.ok("", "rotation", "info", "--", uid), "Next run"); got != at.Format(time.RFC3339) {
		t.Errorf("info shows next run %q, want %s", got, at.Format(time.RFC3339))
	}
	for _, bad := range []string{"tomorrow", "2030-01-02 03:04:05", "2030-01-02", "1767225600"} {
		r := h.failCode(ExitBadUsage, "rotation", "set", "--next-run-at", bad, "--", uid)
		if !strings.Contains(r.err.Error(), "--next-run-at") {
			t.Errorf("--next-run-at %q: %v does not name the flag", bad, r.err)
		}
	}
	if got := h.rotationInfo(uid); got.NextRunAt == nil || !got.NextRunAt.Equal(at) {
		t.Errorf("a refused --next-run-at changed the next run: %v", got.NextRunAt)
	}

	// read-modify-write: changing the complexity keeps everything else
	h.ok("", "rotation", "set", "--complexity", "28,2,2,2,2", "--", uid)
	info = h.rotationInfo(uid)
	if info.Method != "scripts_only" || info.VerifyWith != "okta" || !info.IsEnabled() ||
		compactJSON(t, info.Schedule) != `{"cron":"0 0 3 * * ?","type":"CRON","tz":"Europe/Berlin"}` ||
		info.Complexity == nil || info.Complexity.Length != 28 {
		t.Errorf("after set --complexity: %+v, schedule %s", info.Settings, info.Schedule)
	}
	if info.NextRunAt == nil || !info.NextRunAt.Equal(at) {
		t.Errorf("set --complexity moved the next run: %v, want %s", info.NextRunAt, at)
	}

	// default: the configuration's schedule, which needs a configuration
	r := h.failCode(ExitFailed, "rotation", "set", "--schedule", "default", "--", uid)
	if ae := apiErrorOf(t, r.err, http.StatusBadRequest); ae.Code != "invalid_schedule" || !strings.Contains(ae.Message, "configuration_uid") {
		t.Errorf("--schedule default without a configuration: %v (code %s)", r.err, ae.Code)
	}
	if got := h.rotationInfo(uid); compactJSON(t, got.Schedule) != `{"cron":"0 0 3 * * ?","type":"CRON","tz":"Europe/Berlin"}` {
		t.Errorf("a refused --schedule default changed the schedule: %s", got.Schedule)
	}

	// a JSON schedule object is sent as given, and info shows it
	daily := `{"type":"DAILY","time":"03:00","tz":"Europe/Berlin"}`
	out = h.ok("", "rotation", "set", "--schedule", daily, "--", uid)
	if got := textLine(t, out, "Schedule"); got != daily {
		t.Errorf("set shows schedule %q, want %s", got, daily)
	}
	text = h.ok("", "rotation", "info", "--", uid)
	if got := textLine(t, text, "Schedule"); got != daily {
		t.Errorf("info shows schedule %q, want %s", got, daily)
	}
	info = h.rotationInfo(uid)
	if compactJSON(t, info.Schedule) != compactJSON(t, []byte(daily)) {
		t.Errorf("info -o json schedule %s, want %s", info.Schedule, daily)
	}
	if info.NextRunAt == nil || info.NextRunAt.Equal(at) || info.NextRunAt.In(berlin).Hour() != 3 || !info.NextRunAt.After(time.Now()) {
		t.Errorf("next run %v after a new DAILY 03:00 Berlin schedule", info.NextRunAt)
	}
	if info.Method != "scripts_only" || info.VerifyWith != "okta" || info.Complexity == nil || info.Complexity.Length != 28 {
		t.Errorf("set --schedule changed other settings: %+v", info.Settings)
	}
	// Keeper's form, a list holding one object, goes as given too
	h.ok("", "rotation", "set", "--schedule", `[{"type":"WEEKLY","time":"04:30","weekday":"SUNDAY"}]`, "--", uid)
	if info = h.rotationInfo(uid); info.NextRunAt == nil || info.NextRunAt.Weekday() != time.Sunday ||
		info.NextRunAt.UTC().Hour() != 4 || info.NextRunAt.Minute() != 30 {
		t.Errorf("next run %v after a WEEKLY Sunday 04:30 schedule (%s)", info.NextRunAt, info.Schedule)
	}

	// on-demand: no next run
	h.ok("", "rotation", "set", "--schedule", "on-demand", "--", uid)
	if text = h.ok("", "rotation", "info", "--", uid); textLine(t, text, "Next run") != "-" || textLine(t, text, "Schedule") != "on-demand" {
		t.Errorf("info after on-demand:\n%s", text)
	}

	// pause and resume need settings, and a UID
	fresh := h.pamUser("No settings", "", pw1)
	for _, cmd := range []string{"pause", "resume"} {
		r := h.failCode(ExitFailed, "rotation", cmd, "--", fresh)
		if ae := apiErrorOf(t, r.err, http.StatusNotFound); !strings.Contains(ae.Message, "no rotation settings") {
			t.Errorf("rotation %s without settings: %v", cmd, r.err)
		}
		h.failCode(ExitBadUsage, "rotation", cmd)
		h.failCode(ExitBadUsage, "rotation", cmd, "-o", "xml", "--", uid)
	}
	h.failCode(ExitFailed, "rotation", "info", "--", fresh)
}

func TestRotationDefaultSchedule(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	uid := h.pamUser("Default user", "", pw1)
	token := h.token()
	var cfg Record
	h.api("POST", "/v1/teams/acme/records", token, map[string]any{
		"type": "pamConfiguration", "title": "Config",
		"fields": []map[string]any{{"type": "schedule", "label": "defaultRotationSchedule",
			"value": []any{map[string]any{"type": "DAILY", "time": "05:15", "tz": "Etc/UTC"}}}},
	}, &cfg, http.StatusCreated)

	// the configuration's default schedule decides the next run
	h.ok("", "rotation", "set", "--method", "scripts_only", "--config", cfg.UID, "--schedule", "default", "--", uid)
	info := h.rotationInfo(uid)
	if compactJSON(t, info.Schedule) != `{"type":"DEFAULT"}` || info.ConfigurationUID != cfg.UID {
		t.Fatalf("after --schedule default: %+v (schedule %s)", info.Settings, info.Schedule)
	}
	if n := info.NextRunAt; n == nil || n.UTC().Hour() != 5 || n.Minute() != 15 || !n.After(time.Now()) {
		t.Errorf("next run %v under the configuration's DAILY 05:15", n)
	}
	if got := textLine(t, h.ok("", "rotation", "info", "--", uid), "Schedule"); got != `{"type":"DEFAULT"}` {
		t.Errorf("info shows schedule %q", got)
	}

	// switching to scripts_only drops a general method's connector; the resource stays
	res := strings.TrimSpace(h.ok("", "record", "create", "--type", "login", "--title", "Target", "--field", "login=admin"))
	h.ok("", "rotation", "set", "--method", "general", "--connector", "okta", "--resource", res, "--", uid)
	if info = h.rotationInfo(uid); info.Method != "general" || info.Connector != "okta" || info.ResourceUID != res ||
		info.ConfigurationUID != cfg.UID || compactJSON(t, info.Schedule) != `{"type":"DEFAULT"}` {
		t.Errorf("after --method general: %+v", info.Settings)
	}
	h.ok("", "rotation", "set", "--method", "scripts_only", "--", uid)
	if info = h.rotationInfo(uid); info.Method != "scripts_only" || info.Connector != "" || info.ResourceUID != res {
		t.Errorf("after --method scripts_only: %+v", info.Settings)
	}
	// an empty value removes a setting
	h.ok("", "rotation", "set", "--resource", "", "--", uid)
	if info = h.rotationInfo(uid); info.ResourceUID != "" || info.ConfigurationUID != cfg.UID {
		t.Errorf("after --resource '': %+v", info.Settings)
	}
}

func TestWriteRotationDrift(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	next := at.Add(24 * time.Hour)
	info := RotationInfo{Settings: RotationSettings{Method: "general", Connector: "okta", Window: "2h", Paused: true,
		CatchUp: "skip", Schedule: json.RawMessage(`{"type":"MONTHLY_BY_DAY", "time":"03:00",  "monthDay":31}`)},
		State: "succeeded", NextHeartbeatAt: &next,
		Drift: &DriftInfo{State: "drifted", At: &at, Message: "the target refuses\nthe password"}}
	var b strings.Builder
	if err := writeRotation(&b, "uid1", info, true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for name, want := range map[string]string{
		"Schedule":       `{"type":"MONTHLY_BY_DAY","time":"03:00","monthDay":31}`,
		"Window":         "2h",
		"Paused":         "true",
		"Catch-up":       "skip",
		"Next run":       "-",
		"Next heartbeat": "2030-01-03T03:04:05Z",
		"Drift":          "drifted",
		"Drift at":       "2030-01-02T03:04:05Z",
		"Drift message":  `"the target refuses\nthe password"`,
	} {
		if got := textLine(t, out, name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	// without the state, no next run, heartbeat or drift
	b.Reset()
	if err := writeRotation(&b, "uid1", info, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "Drift") || strings.Contains(b.String(), "Next") {
		t.Errorf("settings alone show state:\n%s", b.String())
	}
}
