package schedule

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestKeeperObjects checks every Keeper schedule object with intervalCount 1 and above, and
// its anchor. 2027-01-01 is a Friday.
func TestKeeperObjects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw, anchor, from string
		want              []string
	}{
		// DAILY
		{`{"type":"DAILY","time":"03:00","tz":"Europe/Berlin"}`, "", "2027-01-01T11:00:00Z",
			[]string{"2027-01-02T02:00:00Z", "2027-01-03T02:00:00Z", "2027-01-04T02:00:00Z"}},
		{`{"type":"DAILY","time":"03:00","tz":"Europe/Berlin","intervalCount":1}`, "", "2027-07-01T11:00:00Z",
			[]string{"2027-07-02T01:00:00Z"}},
		// Every 3 days, set at 12:00 on 1 January: the first fire is the next 03:00, then +3 days.
		{`{"type":"DAILY","time":"03:00","tz":"Europe/Berlin","intervalCount":3}`, "2027-01-01T11:00:00Z", "2027-01-01T11:00:00Z",
			[]string{"2027-01-02T02:00:00Z", "2027-01-05T02:00:00Z", "2027-01-08T02:00:00Z"}},
		// ... and a restart on 6 January continues the same phase.
		{`{"type":"DAILY","time":"03:00","tz":"Europe/Berlin","intervalCount":3}`, "2027-01-01T11:00:00Z", "2027-01-06T00:00:00Z",
			[]string{"2027-01-08T02:00:00Z", "2027-01-11T02:00:00Z"}},
		// The phase holds across DST and across months.
		{`{"type":"DAILY","time":"03:00","tz":"Europe/Berlin","intervalCount":3}`, "2027-01-01T11:00:00Z", "2027-03-26T00:00:00Z",
			[]string{"2027-03-27T02:00:00Z", "2027-03-30T01:00:00Z"}},
		// Set exactly at a fire time: that fire is occurrence 0 (not repeated), the next is +2.
		{`{"type":"DAILY","utcTime":"03:00","intervalCount":2}`, "2027-01-02T03:00:00Z", "2027-01-02T03:00:00Z",
			[]string{"2027-01-04T03:00:00Z", "2027-01-06T03:00:00Z"}},
		{`{"type":"DAILY","utcTime":"23:59:30"}`, "", "2027-01-01T00:00:00Z",
			[]string{"2027-01-01T23:59:30Z"}},
		// Given both, time (in tz) wins over utcTime.
		{`{"type":"DAILY","time":"03:00","utcTime":"09:00","tz":"Europe/Berlin"}`, "", "2027-01-01T11:00:00Z",
			[]string{"2027-01-02T02:00:00Z"}},

		// WEEKLY (Commander's example object)
		{`{"type":"WEEKLY","utcTime":"15:44","weekday":"SUNDAY","intervalCount":1}`, "", "2027-01-01T00:00:00Z",
			[]string{"2027-01-03T15:44:00Z", "2027-01-10T15:44:00Z"}},
		// Every 2 weeks, set on Wednesday 6 January: Sunday the 10th, then the 24th.
		{`{"type":"WEEKLY","utcTime":"15:44","weekday":"SUNDAY","intervalCount":2}`, "2027-01-06T10:00:00Z", "2027-01-06T10:00:00Z",
			[]string{"2027-01-10T15:44:00Z", "2027-01-24T15:44:00Z", "2027-02-07T15:44:00Z"}},
		{`{"type":"WEEKLY","utcTime":"15:44","weekday":"SUNDAY","intervalCount":2}`, "2027-01-06T10:00:00Z", "2027-01-11T00:00:00Z",
			[]string{"2027-01-24T15:44:00Z"}},
		{`{"type":"WEEKLY","time":"09:00","weekday":"monday","tz":"America/New_York","intervalCount":3}`, "2027-01-01T00:00:00Z", "2027-01-01T00:00:00Z",
			[]string{"2027-01-04T14:00:00Z", "2027-01-25T14:00:00Z", "2027-02-15T14:00:00Z"}},

		// MONTHLY_BY_DAY: day 31 fires on the last day of shorter months.
		{`{"type":"MONTHLY_BY_DAY","utcTime":"03:00","monthDay":31}`, "", "2027-01-01T00:00:00Z",
			[]string{"2027-01-31T03:00:00Z", "2027-02-28T03:00:00Z", "2027-03-31T03:00:00Z", "2027-04-30T03:00:00Z"}},
		{`{"type":"MONTHLY_BY_DAY","utcTime":"03:00","monthDay":"15","intervalCount":2}`, "2027-01-20T00:00:00Z", "2027-01-20T00:00:00Z",
			[]string{"2027-02-15T03:00:00Z", "2027-04-15T03:00:00Z", "2027-06-15T03:00:00Z"}},
		{`{"type":"MONTHLY_BY_DAY","utcTime":"03:00","monthDay":15,"intervalCount":12}`, "2027-01-20T00:00:00Z", "2027-01-20T00:00:00Z",
			[]string{"2027-02-15T03:00:00Z", "2028-02-15T03:00:00Z"}},

		// MONTHLY_BY_WEEKDAY
		{`{"type":"MONTHLY_BY_WEEKDAY","utcTime":"10:15","weekday":"FRIDAY","occurrence":"THIRD"}`, "", "2027-01-01T00:00:00Z",
			[]string{"2027-01-15T10:15:00Z", "2027-02-19T10:15:00Z", "2027-03-19T10:15:00Z"}},
		{`{"type":"MONTHLY_BY_WEEKDAY","utcTime":"10:15","weekday":"FRIDAY","occurrence":"LAST"}`, "", "2027-01-01T00:00:00Z",
			[]string{"2027-01-29T10:15:00Z", "2027-02-26T10:15:00Z", "2027-03-26T10:15:00Z"}},
		{`{"type":"MONTHLY_BY_WEEKDAY","utcTime":"10:15","weekday":"MONDAY","occurrence":"FIRST","intervalCount":3}`, "2027-01-01T00:00:00Z", "2027-01-01T00:00:00Z",
			[]string{"2027-01-04T10:15:00Z", "2027-04-05T10:15:00Z", "2027-07-05T10:15:00Z"}},
		// Set after January's first Monday: February's is occurrence 0.
		{`{"type":"MONTHLY_BY_WEEKDAY","utcTime":"10:15","weekday":"MONDAY","occurrence":"FIRST","intervalCount":3}`, "2027-01-05T00:00:00Z", "2027-01-05T00:00:00Z",
			[]string{"2027-02-01T10:15:00Z", "2027-05-03T10:15:00Z"}},

		// YEARLY: 29 February fires on 28 February in other years.
		{`{"type":"YEARLY","utcTime":"03:00","month":"MARCH","monthDay":15}`, "", "2027-01-01T00:00:00Z",
			[]string{"2027-03-15T03:00:00Z", "2028-03-15T03:00:00Z"}},
		{`{"type":"YEARLY","utcTime":"03:00","month":"FEBRUARY","monthDay":29}`, "", "2027-01-01T00:00:00Z",
			[]string{"2027-02-28T03:00:00Z", "2028-02-29T03:00:00Z", "2029-02-28T03:00:00Z"}},
		{`{"type":"YEARLY","utcTime":"03:00","month":"MARCH","monthDay":15,"intervalCount":2}`, "2027-06-01T00:00:00Z", "2027-06-01T00:00:00Z",
			[]string{"2028-03-15T03:00:00Z", "2030-03-15T03:00:00Z", "2032-03-15T03:00:00Z"}},
		// Keeper's own import writes "monthday"; keys match case-insensitively.
		{`{"type":"YEARLY","utcTime":"03:00","month":"MARCH","monthday":15}`, "", "2027-01-01T00:00:00Z",
			[]string{"2027-03-15T03:00:00Z"}},

		// RUN_ONCE
		{`{"type":"RUN_ONCE","time":"2027-01-31T15:00:00","tz":"Europe/Berlin"}`, "", "2027-01-01T00:00:00Z",
			[]string{"2027-01-31T14:00:00Z", "never"}},
		{`{"type":"RUN_ONCE","utcTime":"2027-01-31T15:00"}`, "", "2027-01-01T00:00:00Z",
			[]string{"2027-01-31T15:00:00Z", "never"}},
		{`{"type":"RUN_ONCE","utcTime":"2027-01-31T15:00"}`, "", "2027-01-31T15:00:00Z",
			[]string{"never"}},

		// Keeper's list form, and Commander's bare cron string.
		{`[{"type":"DAILY","utcTime":"04:00"}]`, "", "2027-01-01T00:00:00Z", []string{"2027-01-01T04:00:00Z"}},
		{`["0 56 17 * * ?"]`, "", "2027-01-01T00:00:00Z", []string{"2027-01-01T17:56:00Z"}},
		{`"0 56 17 * * ?"`, "", "2027-01-01T00:00:00Z", []string{"2027-01-01T17:56:00Z"}},

		// Never fire on their own.
		{`{"type":"ON_DEMAND"}`, "", "2027-01-01T00:00:00Z", []string{"never"}},
		{`{"type":"DEFAULT"}`, "", "2027-01-01T00:00:00Z", []string{"never"}},
		{``, "", "2027-01-01T00:00:00Z", []string{"never"}},
		{`null`, "", "2027-01-01T00:00:00Z", []string{"never"}},
		{`[]`, "", "2027-01-01T00:00:00Z", []string{"never"}},
		{`""`, "", "2027-01-01T00:00:00Z", []string{"never"}},
	}
	for _, tt := range tests {
		s := mustLoad(t, tt.raw)
		var anchor time.Time
		if tt.anchor != "" {
			anchor = at(tt.anchor)
		}
		got := fires(s, at(tt.from), anchor, len(tt.want))
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s anchor %q from %s:\n got  %v\n want %v", tt.raw, tt.anchor, tt.from, got, tt.want)
		}
	}
}

// TestIntervalFirstFire checks that the first fire at or after the anchor does not depend
// on intervalCount: every N-th period counts from it. (03:00 CEST on 28 March 2027 is itself
// a fire time of the first object.)
func TestIntervalFirstFire(t *testing.T) {
	t.Parallel()
	objects := []string{
		`{"type":"DAILY","time":"03:00","tz":"Europe/Berlin"`,
		`{"type":"WEEKLY","time":"03:00","weekday":"TUESDAY","tz":"Europe/Berlin"`,
		`{"type":"MONTHLY_BY_DAY","time":"03:00","monthDay":30,"tz":"America/New_York"`,
		`{"type":"MONTHLY_BY_WEEKDAY","utcTime":"03:00","weekday":"SATURDAY","occurrence":"FOURTH"`,
		`{"type":"YEARLY","time":"03:00","month":"OCTOBER","monthDay":31,"tz":"Europe/Berlin"`,
	}
	anchors := []string{"2027-01-01T00:00:00Z", "2027-03-28T01:00:00Z", "2027-10-31T00:30:00Z", "2028-02-29T23:59:59Z", "2031-12-31T12:00:00Z"}
	for _, obj := range objects {
		for _, a := range anchors {
			anchor := at(a)
			before := anchor.Add(-time.Nanosecond) // the first fire at or after anchor
			one, ok := mustLoad(t, obj+"}").Next(before, anchor)
			if !ok {
				t.Fatalf("%s}: no fire", obj)
			}
			for n := 2; n <= 5; n++ {
				s := mustLoad(t, fmt.Sprintf(`%s,"intervalCount":%d}`, obj, n))
				got, ok := s.Next(before, anchor)
				if !ok || !got.Equal(one) {
					t.Errorf("%s} N=%d anchor %s: first fire %v, want %v", obj, n, a, got, one)
				}
			}
		}
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct{ raw, want string }{
		{`{"type":"ON_DEMAND"}`, "on demand"},
		{`{"type":"DEFAULT"}`, "the configuration's default schedule"},
		{`{"type":"CRON","cron":"0  0 4 * * ?"}`, `cron "0 0 4 * * ?" (UTC)`},
		{`{"type":"DAILY","time":"03:00","tz":"Europe/Berlin","intervalCount":3}`, "every 3 days at 03:00 (Europe/Berlin)"},
		{`{"type":"WEEKLY","utcTime":"15:44","weekday":"SUNDAY","tz":"Europe/Berlin"}`, "every week on SUNDAY at 15:44 (UTC)"},
		{`{"type":"MONTHLY_BY_DAY","time":"3:00:30","monthDay":31}`, "every month on day 31 (or the last day of a shorter month) at 03:00:30 (UTC)"},
		{`{"type":"MONTHLY_BY_WEEKDAY","time":"03:00","weekday":"friday","occurrence":"last","intervalCount":2}`, "every 2 months on the LAST FRIDAY at 03:00 (UTC)"},
		{`{"type":"YEARLY","time":"03:00","month":"MARCH","monthDay":15,"tz":"Etc/UTC"}`, "every year on MARCH 15 at 03:00 (Etc/UTC)"},
		{`{"type":"RUN_ONCE","time":"2027-01-31T15:00","tz":"Europe/Berlin"}`, "once at 2027-01-31 15:00:00 (Europe/Berlin)"},
	}
	for _, tt := range tests {
		s := mustLoad(t, tt.raw)
		if got := s.String(); got != tt.want {
			t.Errorf("%s: String() = %q, want %q", tt.raw, got, tt.want)
		}
	}
	var zero Schedule
	if !zero.OnDemand() || zero.UsesDefault() || zero.Type() != "ON_DEMAND" || zero.String() != "on demand" {
		t.Error("the zero Schedule is not ON_DEMAND")
	}
	if s := mustLoad(t, `{"type":"DEFAULT"}`); !s.UsesDefault() || s.OnDemand() || s.Type() != "DEFAULT" {
		t.Error("DEFAULT")
	}
	if s := mustLoad(t, `{"type":"weekly","utcTime":"15:44","weekday":"SUNDAY"}`); s.Type() != "WEEKLY" {
		t.Errorf("Type() = %q", s.Type())
	}
}

func TestMinInterval(t *testing.T) {
	t.Parallel()
	from := at("2027-01-01T00:00:00Z")
	tests := []struct {
		raw  string
		n    int
		want time.Duration
		ok   bool
	}{
		{cronJSON("0 0 3 * * ?", "Europe/Berlin"), 10, 24 * time.Hour, true},
		{cronJSON("0 0/30 * * * ?", ""), 10, 30 * time.Minute, true},
		{cronJSON("0 0 1,2 * * ?", ""), 10, time.Hour, true},
		{cronJSON("0 0 0,23 * * ?", ""), 10, time.Hour, true},
		// Across spring-forward in Berlin, 01:30 and 03:30 are one hour apart.
		{cronJSON("0 30 1,3 * * ?", "Europe/Berlin"), 200, time.Hour, true},
		{`{"type":"WEEKLY","utcTime":"15:44","weekday":"SUNDAY","intervalCount":2}`, 5, 14 * 24 * time.Hour, true},
		{`{"type":"RUN_ONCE","utcTime":"2027-01-31T15:00"}`, 5, 0, false},
		{`{"type":"ON_DEMAND"}`, 5, 0, false},
		{cronJSON("0 0 3 * * ?", ""), 1, 0, false},
	}
	for _, tt := range tests {
		got, ok := mustLoad(t, tt.raw).MinInterval(from, from, tt.n)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s n=%d: MinInterval = %v, %v; want %v, %v", tt.raw, tt.n, got, ok, tt.want, tt.ok)
		}
	}
}

// TestParseClock checks the rules Parse adds to Load: the next fire must come, within 5 years.
func TestParseClock(t *testing.T) {
	t.Parallel()
	now := at("2027-01-01T00:00:00Z")
	for _, raw := range []string{
		cronJSON("0 0 12 * * ? 2031", ""), // within 5 years
		`{"type":"RUN_ONCE","utcTime":"2027-01-01T00:00:01"}`,
		`{"type":"YEARLY","utcTime":"03:00","month":"MARCH","monthDay":15,"intervalCount":5}`,
		`{"type":"ON_DEMAND"}`, `{"type":"DEFAULT"}`,
	} {
		if _, err := Parse(json.RawMessage(raw), now); err != nil {
			t.Errorf("Parse(%s): %v", raw, err)
		}
	}
}
