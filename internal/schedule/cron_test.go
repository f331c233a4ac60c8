package schedule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func mustLoad(t *testing.T, raw string) Schedule {
	t.Helper()
	s, err := Load(json.RawMessage(raw))
	if err != nil {
		t.Fatalf("Load(%s): %v", raw, err)
	}
	return s
}

// fires returns the first n fire times after from, in RFC 3339 (UTC).
func fires(s Schedule, from, anchor time.Time, n int) []string {
	var out []string
	for t := from; len(out) < n; {
		next, ok := s.Next(t, anchor)
		if !ok {
			out = append(out, "never")
			break
		}
		out = append(out, next.UTC().Format(time.RFC3339))
		t = next
	}
	return out
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func cronJSON(expr, tz string) string {
	b, _ := json.Marshal(map[string]string{"type": "CRON", "cron": expr, "tz": tz})
	return string(b)
}

// TestQuartzExamples checks the CronTrigger examples from Quartz's tutorial (2.3) and more,
// in UTC, from Friday 2027-01-01 unless said otherwise.
func TestQuartzExamples(t *testing.T) {
	t.Parallel()
	const jan1 = "2027-01-01T00:00:00Z"
	tests := []struct {
		expr, from string
		want       []string
	}{
		{"0 0 12 * * ?", jan1, []string{"2027-01-01T12:00:00Z", "2027-01-02T12:00:00Z", "2027-01-03T12:00:00Z"}},
		{"0 15 10 ? * *", jan1, []string{"2027-01-01T10:15:00Z", "2027-01-02T10:15:00Z"}},
		{"0 15 10 * * ?", jan1, []string{"2027-01-01T10:15:00Z", "2027-01-02T10:15:00Z"}},
		{"0 15 10 * * ? *", jan1, []string{"2027-01-01T10:15:00Z", "2027-01-02T10:15:00Z"}},
		// "0 15 10 * * ? 2005" with a future year; the year ends the schedule.
		{"0 15 10 * * ? 2030", jan1, []string{"2030-01-01T10:15:00Z", "2030-01-02T10:15:00Z"}},
		{"0 15 10 * * ? 2030", "2030-12-31T10:15:00Z", []string{"never"}},
		{"0 * 14 * * ?", "2027-01-01T14:58:30Z", []string{"2027-01-01T14:59:00Z", "2027-01-02T14:00:00Z", "2027-01-02T14:01:00Z"}},
		{"0 0/5 14 * * ?", "2027-01-01T14:52:00Z", []string{"2027-01-01T14:55:00Z", "2027-01-02T14:00:00Z", "2027-01-02T14:05:00Z"}},
		{"0 0/5 14,18 * * ?", "2027-01-01T14:56:00Z", []string{"2027-01-01T18:00:00Z", "2027-01-01T18:05:00Z"}},
		{"0 0/5 14,18 * * ?", "2027-01-01T18:56:00Z", []string{"2027-01-02T14:00:00Z"}},
		{"0 0-5 14 * * ?", "2027-01-01T14:04:30Z", []string{"2027-01-01T14:05:00Z", "2027-01-02T14:00:00Z"}},
		{"0 10,44 14 ? 3 WED", jan1, []string{"2027-03-03T14:10:00Z", "2027-03-03T14:44:00Z", "2027-03-10T14:10:00Z"}},
		{"0 10,44 14 ? 3 WED", "2027-03-31T14:44:00Z", []string{"2028-03-01T14:10:00Z"}},
		{"0 15 10 ? * MON-FRI", jan1, []string{"2027-01-01T10:15:00Z", "2027-01-04T10:15:00Z", "2027-01-05T10:15:00Z"}},
		{"0 15 10 ? * mon-fri", jan1, []string{"2027-01-01T10:15:00Z", "2027-01-04T10:15:00Z"}},
		{"0 15 10 15 * ?", jan1, []string{"2027-01-15T10:15:00Z", "2027-02-15T10:15:00Z"}},
		{"0 15 10 L * ?", jan1, []string{"2027-01-31T10:15:00Z", "2027-02-28T10:15:00Z", "2027-03-31T10:15:00Z", "2027-04-30T10:15:00Z"}},
		{"0 15 10 L * ?", "2028-02-01T00:00:00Z", []string{"2028-02-29T10:15:00Z"}},
		{"0 15 10 L-2 * ?", jan1, []string{"2027-01-29T10:15:00Z", "2027-02-26T10:15:00Z", "2027-03-29T10:15:00Z"}},
		{"0 15 10 ? * 6L", jan1, []string{"2027-01-29T10:15:00Z", "2027-02-26T10:15:00Z", "2027-03-26T10:15:00Z"}},
		{"0 15 10 ? * FRIL", jan1, []string{"2027-01-29T10:15:00Z"}},
		{"0 15 10 ? * 6L 2027-2028", "2028-12-01T00:00:00Z", []string{"2028-12-29T10:15:00Z", "never"}},
		{"0 15 10 ? * 6#3", jan1, []string{"2027-01-15T10:15:00Z", "2027-02-19T10:15:00Z", "2027-03-19T10:15:00Z"}},
		{"0 15 10 ? * FRI#3", jan1, []string{"2027-01-15T10:15:00Z"}},
		{"0 0 12 ? * 6#5", jan1, []string{"2027-01-29T12:00:00Z", "2027-04-30T12:00:00Z"}},
		{"0 0 12 1/5 * ?", jan1, []string{"2027-01-01T12:00:00Z", "2027-01-06T12:00:00Z", "2027-01-11T12:00:00Z"}},
		{"0 0 12 1/5 * ?", "2027-01-26T13:00:00Z", []string{"2027-01-31T12:00:00Z", "2027-02-01T12:00:00Z", "2027-02-06T12:00:00Z"}},
		{"0 11 11 11 11 ?", jan1, []string{"2027-11-11T11:11:00Z", "2028-11-11T11:11:00Z"}},
		// LW: the last weekday; 31 Jan and 28 Feb 2027 are Sundays.
		{"0 0 12 LW * ?", jan1, []string{"2027-01-29T12:00:00Z", "2027-02-26T12:00:00Z", "2027-03-31T12:00:00Z"}},
		// L-3W: the weekday nearest to three days before the last day (28 Jan, 25 Feb: Thursdays).
		{"0 0 12 L-3W * ?", jan1, []string{"2027-01-28T12:00:00Z", "2027-02-25T12:00:00Z"}},
		// 15W: 15 May 2027 is a Saturday (fires Friday 14), 15 Aug a Sunday (Monday 16).
		{"0 0 12 15W * ?", jan1, []string{"2027-01-15T12:00:00Z", "2027-02-15T12:00:00Z"}},
		{"0 0 12 15W * ?", "2027-05-01T00:00:00Z", []string{"2027-05-14T12:00:00Z", "2027-06-15T12:00:00Z"}},
		{"0 0 12 15W * ?", "2027-08-01T00:00:00Z", []string{"2027-08-16T12:00:00Z"}},
		// 1W never goes back into the previous month: 1 May 2027 is a Saturday, 1 Aug a Sunday.
		{"0 0 12 1W * ?", "2027-05-01T00:00:00Z", []string{"2027-05-03T12:00:00Z", "2027-06-01T12:00:00Z"}},
		{"0 0 12 1W * ?", "2027-08-01T00:00:00Z", []string{"2027-08-02T12:00:00Z"}},
		// 31W: the 31st (a Sunday in January) goes back to Friday; months without a 31st skip.
		{"0 0 12 31W * ?", jan1, []string{"2027-01-29T12:00:00Z", "2027-03-31T12:00:00Z", "2027-05-31T12:00:00Z"}},
		// Days of week are Quartz's: 1 = SUN … 7 = SAT; L alone is Saturday.
		{"0 0 12 ? * 1", jan1, []string{"2027-01-03T12:00:00Z", "2027-01-10T12:00:00Z"}},
		{"0 0 12 ? * 7", jan1, []string{"2027-01-02T12:00:00Z", "2027-01-09T12:00:00Z"}},
		{"0 0 12 ? * L", jan1, []string{"2027-01-02T12:00:00Z", "2027-01-09T12:00:00Z"}},
		{"0 0 12 ? * SUN", jan1, []string{"2027-01-03T12:00:00Z"}},
		{"0 0 12 ? * 2-6", jan1, []string{"2027-01-01T12:00:00Z", "2027-01-04T12:00:00Z"}},
		{"0 0 12 ? * */2", jan1, []string{"2027-01-02T12:00:00Z", "2027-01-03T12:00:00Z", "2027-01-05T12:00:00Z"}},
		{"0 0 12 ? * FRI-MON", jan1, []string{"2027-01-01T12:00:00Z", "2027-01-02T12:00:00Z", "2027-01-03T12:00:00Z", "2027-01-04T12:00:00Z", "2027-01-08T12:00:00Z"}},
		{"0 0 12 ? JAN,JUL MON#1", jan1, []string{"2027-01-04T12:00:00Z", "2027-07-05T12:00:00Z"}},
		// A wrapping hour range, a year step, a seconds step, * in both day fields.
		{"0 0 22-2 * * ?", jan1, []string{"2027-01-01T01:00:00Z", "2027-01-01T02:00:00Z", "2027-01-01T22:00:00Z", "2027-01-01T23:00:00Z", "2027-01-02T00:00:00Z"}},
		{"0 0 0 1 1 ? 2030/5", jan1, []string{"2030-01-01T00:00:00Z", "2035-01-01T00:00:00Z"}},
		{"*/20 * * * * ?", jan1, []string{"2027-01-01T00:00:20Z", "2027-01-01T00:00:40Z", "2027-01-01T00:01:00Z"}},
		{"0 0 4 * * *", jan1, []string{"2027-01-01T04:00:00Z", "2027-01-02T04:00:00Z"}},
		{"0 0 4 15 * *", jan1, []string{"2027-01-15T04:00:00Z"}},
		{"0 0 4 ? * ?", jan1, []string{"2027-01-01T04:00:00Z"}},
		{"  0  0   12 * *\t? ", jan1, []string{"2027-01-01T12:00:00Z"}},
	}
	for _, tt := range tests {
		s := mustLoad(t, cronJSON(tt.expr, ""))
		got := fires(s, at(tt.from), time.Time{}, len(tt.want))
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%q from %s:\n got  %v\n want %v", tt.expr, tt.from, got, tt.want)
		}
	}
}

// TestCronZone checks that a cron's fields are read in its time zone.
func TestCronZone(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, `{"type":"CRON","cron":"0 0 3 * * ?","tz":"Europe/Berlin"}`)
	got := fires(s, at("2027-01-01T00:00:00Z"), time.Time{}, 1)
	if got[0] != "2027-01-01T02:00:00Z" {
		t.Errorf("got %v", got)
	}
	got = fires(s, at("2027-07-01T00:00:00Z"), time.Time{}, 1)
	if got[0] != "2027-07-01T01:00:00Z" {
		t.Errorf("got %v", got)
	}
	if s.String() != `cron "0 0 3 * * ?" (Europe/Berlin)` {
		t.Errorf("String() = %q", s.String())
	}
}
