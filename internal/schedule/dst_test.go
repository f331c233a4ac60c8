package schedule

import (
	"strings"
	"testing"
	"time"
)

// In 2027 Europe/Berlin springs forward on 28 March (02:00 CET -> 03:00 CEST) and falls back
// on 31 October (03:00 CEST -> 02:00 CET); America/New_York springs forward on 14 March
// (02:00 EST -> 03:00 EDT) and falls back on 7 November (02:00 EDT -> 01:00 EST).
func TestDST(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw, from string
		want            []string
	}{
		// Spring forward: a wall time in the gap fires at the end of the gap, once.
		{"berlin 02:30 in gap", cronJSON("0 30 2 * * ?", "Europe/Berlin"), "2027-03-27T12:00:00Z",
			[]string{"2027-03-28T01:00:00Z", "2027-03-29T00:30:00Z"}},
		{"berlin 02:00 in gap", cronJSON("0 0 2 * * ?", "Europe/Berlin"), "2027-03-27T12:00:00Z",
			[]string{"2027-03-28T01:00:00Z", "2027-03-29T00:00:00Z"}},
		{"berlin four times in gap fire once", cronJSON("0 0/15 2 * * ?", "Europe/Berlin"), "2027-03-27T12:00:00Z",
			[]string{"2027-03-28T01:00:00Z", "2027-03-29T00:00:00Z"}},
		{"berlin gap then 03:xx", cronJSON("0 0/15 2-3 * * ?", "Europe/Berlin"), "2027-03-27T23:00:00Z",
			[]string{"2027-03-28T01:00:00Z", "2027-03-28T01:15:00Z", "2027-03-28T01:30:00Z", "2027-03-28T01:45:00Z", "2027-03-29T00:00:00Z"}},
		{"berlin hourly across gap", cronJSON("0 0 * * * ?", "Europe/Berlin"), "2027-03-27T23:30:00Z",
			[]string{"2027-03-28T00:00:00Z", "2027-03-28T01:00:00Z", "2027-03-28T02:00:00Z"}},
		{"new york 02:30 in gap", cronJSON("0 30 2 * * ?", "America/New_York"), "2027-03-13T12:00:00Z",
			[]string{"2027-03-14T07:00:00Z", "2027-03-15T06:30:00Z"}},
		{"new york daily object in gap", `{"type":"DAILY","time":"02:30","tz":"America/New_York"}`, "2027-03-13T12:00:00Z",
			[]string{"2027-03-14T07:00:00Z", "2027-03-15T06:30:00Z"}},
		{"new york run once in gap", `{"type":"RUN_ONCE","time":"2027-03-14T02:30:00","tz":"America/New_York"}`, "2027-03-13T12:00:00Z",
			[]string{"2027-03-14T07:00:00Z", "never"}},
		// utcTime is not affected by the zone's DST.
		{"utcTime ignores tz", `{"type":"DAILY","utcTime":"02:30","tz":"America/New_York"}`, "2027-03-13T12:00:00Z",
			[]string{"2027-03-14T02:30:00Z", "2027-03-15T02:30:00Z"}},

		// Fall back: a wall time that occurs twice fires once, at its first occurrence.
		{"berlin 02:30 twice", cronJSON("0 30 2 * * ?", "Europe/Berlin"), "2027-10-30T12:00:00Z",
			[]string{"2027-10-31T00:30:00Z", "2027-11-01T01:30:00Z"}},
		{"berlin hourly across overlap", cronJSON("0 0 * * * ?", "Europe/Berlin"), "2027-10-30T22:30:00Z",
			[]string{"2027-10-30T23:00:00Z", "2027-10-31T00:00:00Z", "2027-10-31T02:00:00Z", "2027-10-31T03:00:00Z"}},
		{"new york 01:30 twice", cronJSON("0 30 1 * * ?", "America/New_York"), "2027-11-06T12:00:00Z",
			[]string{"2027-11-07T05:30:00Z", "2027-11-08T06:30:00Z"}},
		// Restarting inside the repeated hour neither fires 01:30 again nor goes back.
		{"new york restart in first 01:xx", cronJSON("0 30 1 * * ?", "America/New_York"), "2027-11-07T05:45:00Z",
			[]string{"2027-11-08T06:30:00Z"}},
		{"new york restart in second 01:xx", cronJSON("0 30 1 * * ?", "America/New_York"), "2027-11-07T06:15:00Z",
			[]string{"2027-11-08T06:30:00Z"}},
		{"new york every 20 min across overlap", cronJSON("0 0/20 * * * ?", "America/New_York"), "2027-11-07T05:30:00Z",
			[]string{"2027-11-07T05:40:00Z", "2027-11-07T07:00:00Z", "2027-11-07T07:20:00Z"}},
		{"new york weekly object twice", `{"type":"WEEKLY","time":"01:30","weekday":"SUNDAY","tz":"America/New_York"}`, "2027-11-06T12:00:00Z",
			[]string{"2027-11-07T05:30:00Z", "2027-11-14T06:30:00Z"}},
		{"new york run once twice", `{"type":"RUN_ONCE","time":"2027-11-07T01:30","tz":"America/New_York"}`, "2027-11-07T05:30:00Z",
			[]string{"never"}},
		{"new york run once first", `{"type":"RUN_ONCE","time":"2027-11-07T01:30","tz":"America/New_York"}`, "2027-11-07T05:29:59Z",
			[]string{"2027-11-07T05:30:00Z"}},
	}
	for _, tt := range tests {
		s := mustLoad(t, tt.raw)
		got := fires(s, at(tt.from), time.Time{}, len(tt.want))
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s: %s from %s:\n got  %v\n want %v", tt.name, tt.raw, tt.from, got, tt.want)
		}
	}
}

// TestDSTEveryMinute walks a whole DST day minute by minute and checks that each wall-clock
// minute of the day fires exactly once, the ones in the gap at its end.
func TestDSTEveryMinute(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		tz, day string
	}{
		{"Europe/Berlin", "2027-03-28"}, {"Europe/Berlin", "2027-10-31"},
		{"America/New_York", "2027-03-14"}, {"America/New_York", "2027-11-07"},
		{"Australia/Lord_Howe", "2027-04-04"}, {"Australia/Lord_Howe", "2027-10-03"}, // 30-minute shifts
	} {
		loc, err := time.LoadLocation(tc.tz)
		if err != nil {
			t.Fatal(err)
		}
		s := mustLoad(t, cronJSON("0 * * * * ?", tc.tz))
		day, _ := time.ParseInLocation("2006-01-02", tc.day, loc)
		end := day.AddDate(0, 0, 1)
		seen := map[string]int{}
		prev := day.Add(-time.Nanosecond)
		for {
			next, ok := s.Next(prev, time.Time{})
			if !ok {
				t.Fatal("no fire")
			}
			if !next.Before(end) {
				break
			}
			if next.Sub(prev) <= 0 {
				t.Fatalf("%s: went back from %v to %v", tc.tz, prev, next)
			}
			seen[next.In(loc).Format("15:04:05")]++
			prev = next
		}
		// Every minute of the day is either seen once, or lies in the gap (and the gap's end
		// was seen).
		for m := 0; m < 24*60; m++ {
			hhmm := time.Date(2000, 1, 1, m/60, m%60, 0, 0, time.UTC).Format("15:04:05")
			if seen[hhmm] > 1 {
				t.Errorf("%s %s: %s fired %d times", tc.tz, tc.day, hhmm, seen[hhmm])
			}
			if seen[hhmm] == 0 {
				w := time.Date(day.Year(), day.Month(), day.Day(), m/60, m%60, 0, 0, time.UTC)
				r := resolve(w, loc)
				if wallOf(r.In(loc)).Equal(w) {
					t.Errorf("%s %s: %s exists but never fired", tc.tz, tc.day, hhmm)
				}
			}
		}
	}
}
