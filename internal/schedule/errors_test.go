package schedule

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/fault"
)

// TestErrors checks that bad schedules are refused with a message naming what is wrong.
func TestErrors(t *testing.T) {
	t.Parallel()
	now := at("2027-01-01T00:00:00Z")
	cron := func(expr string) string { return cronJSON(expr, "") }
	tests := []struct{ raw, want string }{
		// cron fields
		{cron("0 0 3 32 * ?"), `cron field 4 (day of month) "32": out of range 1-31`},
		{cron("0 0 3 1,32 * ?"), `cron field 4 (day of month) "32": out of range 1-31`},
		{cron("60 0 3 * * ?"), `cron field 1 (seconds) "60": out of range 0-59`},
		{cron("0 60 3 * * ?"), `cron field 2 (minutes) "60": out of range 0-59`},
		{cron("0 0 24 * * ?"), `cron field 3 (hours) "24": out of range 0-23`},
		{cron("0 0 3 ? 13 MON"), `cron field 5 (month) "13": out of range 1-12`},
		{cron("0 0 3 ? JANUARY MON"), `cron field 5 (month) "JANUARY": "JANUARY" is not a number 1-12 or a name JAN-DEC`},
		{cron("0 0 3 ? * 0"), `cron field 6 (day of week) "0": out of range 1-7 (Quartz numbers days 1 = SUN to 7 = SAT)`},
		{cron("0 0 3 ? * 8"), `cron field 6 (day of week) "8": out of range 1-7 (Quartz numbers days 1 = SUN to 7 = SAT)`},
		{cron("0 0 3 ? * FUN"), `cron field 6 (day of week) "FUN": "FUN" is not a number 1-7 or a name SUN-SAT`},
		{cron("0 0 3 * * ? 1969"), `cron field 7 (year) "1969": out of range 1970-2099`},
		{cron("0 0 3 * * ? 2100"), `cron field 7 (year) "2100": out of range 1970-2099`},
		{cron("0 0 3 * * ? 2030-2027"), `cron field 7 (year) "2030-2027": range ends before it starts`},
		// gronx would read this as minutes..year; in Quartz the 6th field is the day of week.
		{cron("0 0 12 * * 2030"), `cron field 6 (day of week) "2030": out of range 1-7 (Quartz numbers days 1 = SUN to 7 = SAT)`},
		{cron("0 0/0 3 * * ?"), `cron field 2 (minutes) "0/0": step "0": use a number 1-60`},
		{cron("0 0/x 3 * * ?"), `cron field 2 (minutes) "0/X": step "X": use a number 1-60`},
		{cron("0 1-2-3 3 * * ?"), `cron field 2 (minutes) "1-2-3": "2-3" is not a number 0-59`},
		{cron("0 0, 3 * * ?"), `cron field 2 (minutes) "": empty list item`},
		{cron("0 0 ? * * *"), `cron field 3 (hours) "?": ? is only allowed in day of month or day of week`},
		{cron("0 0 3 ?,1 * *"), `cron field 4 (day of month) "?": ? must stand alone`},
		{cron("0 0 3 L-31 * ?"), `cron field 4 (day of month) "L-31": offset from the last day must be 0-30`},
		{cron("0 0 3 L-x * ?"), `cron field 4 (day of month) "L-X": use L, L-n, LW or L-nW (n = days before the last day)`},
		{cron("0 0 3 32W * ?"), `cron field 4 (day of month) "32W": W needs a day 1-31`},
		{cron("0 0 3 1-5W * ?"), `cron field 4 (day of month) "1-5W": use nW for the weekday nearest to day n, or L, L-n, LW`},
		{cron("0 0 3 1,L * ?"), `cron field 4 (day of month) "1,L": L and W cannot be combined with other days in a list`},
		{cron("0 0 3 ? * 6#6"), `cron field 6 (day of week) "6#6": # needs an occurrence 1-5`},
		{cron("0 0 3 ? * 8#1"), `cron field 6 (day of week) "8#1": out of range 1-7 (Quartz numbers days 1 = SUN to 7 = SAT)`},
		{cron("0 0 3 ? * 2-3L"), `cron field 6 (day of week) "2-3L": use nL (last n-day of the month), e.g. 6L for the last Friday`},
		{cron("0 0 3 ? * 6L,2"), `cron field 6 (day of week) "6L,2": L and # cannot be combined with other days in a list`},
		{cron("0 0 3 15 * MON"), `cron "0 0 3 15 * MON": day of month (field 4) and day of week (field 6) are both set; Quartz needs ? in one of them`},
		{cron("0 0 3 L * 6#3"), `cron "0 0 3 L * 6#3": day of month (field 4) and day of week (field 6) are both set; Quartz needs ? in one of them`},
		{cron("0 2 * * *"), `cron "0 2 * * *" has 5 fields: Quartz cron has 6 or 7 (seconds minutes hours day-of-month month day-of-week [year]); put the seconds first and ? in one day field, e.g. "0 0 2 * * ?" for "0 2 * * *"`},
		{cron("0 0 0 2 * * ? 2030"), `cron "0 0 0 2 * * ? 2030" has 8 fields: Quartz cron has 6 or 7 (seconds minutes hours day-of-month month day-of-week [year])`},
		{cron("@daily"), `cron "@daily": macros such as @daily are not Quartz cron; use e.g. "0 0 0 * * ?"`},
		{cron("  "), `cron is required for type CRON, e.g. "0 0 3 * * ?"`},
		// can never fire
		{cron("0 0 0 30 2 ?"), `cron "0 0 0 30 2 ?" never fires: no date from 1970 to 2099 matches it`},
		{cron("0 0 0 31W 4 ?"), `cron "0 0 0 31W 4 ?" never fires: no date from 1970 to 2099 matches it`},
		{cron("0 0 0 29 2 ? 2099"), `cron "0 0 0 29 2 ? 2099" never fires: no date from 1970 to 2099 matches it`},
		// the clock (Parse only)
		{cron("0 0 12 * * ? 2099"), `cron "0 0 12 * * ? 2099": next fire 2099-01-01T12:00:00Z is more than 5 years away`},
		{cron("0 0 12 * * ? 2020"), `cron "0 0 12 * * ? 2020" never fires after 2027-01-01T00:00:00Z`},
		{`{"type":"RUN_ONCE","time":"2026-12-31T23:00","tz":"Europe/Berlin"}`, `time "2026-12-31T23:00:00" is in the past`},
		{`{"type":"RUN_ONCE","utcTime":"2035-01-01T00:00"}`, `utcTime "2035-01-01T00:00:00": next fire 2035-01-01T00:00:00Z is more than 5 years away`},
		// objects
		{`{"type":"WEEKLY","time":"03:00","weekday":"FUNDAY"}`, `weekday "FUNDAY": use SUNDAY…SATURDAY`},
		{`{"type":"WEEKLY","time":"03:00"}`, `weekday is required: use SUNDAY…SATURDAY`},
		{`{"type":"WEEKLY","time":"03:00","weekday":1}`, `weekday must be a string such as "SUNDAY", not 1`},
		{`{"type":"CRON","cron":"0 0 3 * * ?","tz":"Mars/Base"}`, `tz "Mars/Base": unknown time zone`},
		{`{"type":"CRON","cron":"0 0 3 * * ?","tz":"Local"}`, `tz "Local": give an IANA time zone such as Europe/Berlin`},
		{`{"type":"CRON","cron":"0 0 3 * * ?","tz":"../../etc/passwd"}`, `tz "../../etc/passwd": unknown time zone`},
		{`{"type":"DAILY","time":"25:00"}`, `time "25:00": use HH:MM or HH:MM:SS (24-hour clock)`},
		{`{"type":"DAILY","utcTime":"03:0"}`, `utcTime "03:0": use HH:MM or HH:MM:SS (24-hour clock)`},
		{`{"type":"DAILY","time":"03:00:60"}`, `time "03:00:60": use HH:MM or HH:MM:SS (24-hour clock)`},
		{`{"type":"DAILY"}`, `time or utcTime is required for type DAILY`},
		{`{"type":"DAILY","time":"03:00","intervalCount":-1}`, `intervalCount -1: must be at least 1`},
		{`{"type":"DAILY","time":"03:00","intervalCount":1.5}`, `intervalCount must be a whole number, not 1.5`},
		{`{"type":"DAILY","time":"03:00","intervalCount":1827}`, `intervalCount 1827: fires would be more than 5 years apart; use at most 1826`},
		{`{"type":"WEEKLY","time":"03:00","weekday":"MONDAY","intervalCount":261}`, `intervalCount 261: fires would be more than 5 years apart; use at most 260`},
		{`{"type":"MONTHLY_BY_DAY","time":"03:00","monthDay":1,"intervalCount":61}`, `intervalCount 61: fires would be more than 5 years apart; use at most 60`},
		{`{"type":"YEARLY","time":"03:00","month":"MAY","monthDay":1,"intervalCount":6}`, `intervalCount 6: fires would be more than 5 years apart; use at most 5`},
		{`{"type":"CRON","cron":"0 0 3 * * ?","intervalCount":2}`, `intervalCount 2 does not apply to type CRON`},
		{`{"type":"MONTHLY_BY_DAY","time":"03:00","monthDay":32}`, `monthDay 32: out of range 1-31`},
		{`{"type":"MONTHLY_BY_DAY","time":"03:00","monthDay":0}`, `monthDay 0: out of range 1-31`},
		{`{"type":"MONTHLY_BY_DAY","time":"03:00"}`, `monthDay is required for type MONTHLY_BY_DAY: a day 1-31`},
		{`{"type":"YEARLY","time":"03:00","month":"FEBRUARY","monthDay":30}`, `monthDay 30: out of range 1-29`},
		{`{"type":"YEARLY","time":"03:00","month":"SMARCH","monthDay":3}`, `month "SMARCH": use JANUARY…DECEMBER`},
		{`{"type":"MONTHLY_BY_WEEKDAY","time":"03:00","weekday":"MONDAY","occurrence":"FIFTH"}`, `occurrence "FIFTH": use FIRST…LAST`},
		{`{"type":"RUN_ONCE","time":"2027-02-30T10:00"}`, `time "2027-02-30T10:00": RUN_ONCE needs a date and time such as "2027-01-31T15:00:00"`},
		{`{"type":"RUN_ONCE","time":"10:00"}`, `time "10:00": RUN_ONCE needs a date and time such as "2027-01-31T15:00:00"`},
		// shape
		{`{"cron":"0 0 3 * * ?"}`, `type is required: ON_DEMAND, DEFAULT, CRON, DAILY, WEEKLY, MONTHLY_BY_DAY, MONTHLY_BY_WEEKDAY, YEARLY, RUN_ONCE`},
		{`{"type":"HOURLY"}`, `type "HOURLY": use ON_DEMAND, DEFAULT, CRON, DAILY, WEEKLY, MONTHLY_BY_DAY, MONTHLY_BY_WEEKDAY, YEARLY, RUN_ONCE`},
		{`{"type":"DAILY","time":"03:00","wekday":"MONDAY"}`, `unknown key "wekday" in schedule (keys: type, tz, cron, time, utcTime, intervalCount, weekday, monthDay, month, occurrence)`},
		{`{"type":"DAILY","time":"03:00","weekday":"MONDAY"}`, `key "weekday" does not apply to type DAILY`},
		{`{"type":"ON_DEMAND","cron":"0 0 3 * * ?"}`, `key "cron" does not apply to type ON_DEMAND`},
		{`{"type":"DAILY","time":"03:00","Time":"04:00"}`, `key "time" appears twice in schedule`},
		{`[{"type":"ON_DEMAND"},{"type":"ON_DEMAND"}]`, `schedule list holds 2 schedules: give one`},
		{`[[]]`, `schedule list holds a list: give one schedule object`},
		{`42`, `schedule must be an object such as {"type":"ON_DEMAND"}`},
		{`{"type":"DAILY"`, `schedule is not valid JSON`},
		{`{"type":"DAILY"} {}`, `schedule is not valid JSON`},
	}
	for _, tt := range tests {
		_, err := Parse(json.RawMessage(tt.raw), now)
		if err == nil {
			t.Errorf("Parse(%s) succeeded, want %q", tt.raw, tt.want)
			continue
		}
		fe, ok := fault.As(err)
		if !ok || fe.Kind != fault.Invalid || fe.Code != "invalid_schedule" {
			t.Errorf("Parse(%s): error %#v is not fault.Invalid/invalid_schedule", tt.raw, err)
		}
		if err.Error() != tt.want {
			t.Errorf("Parse(%s):\n got  %s\n want %s", tt.raw, err, tt.want)
		}
	}
}

// TestLoadSkipsClock checks that Load accepts schedules that no longer fire, or fire late,
// so that stored settings still load.
func TestLoadSkipsClock(t *testing.T) {
	t.Parallel()
	now := at("2027-01-01T00:00:00Z")
	for _, tt := range []struct {
		raw  string
		next bool
	}{
		{cronJSON("0 0 12 * * ? 2020", ""), false},
		{`{"type":"RUN_ONCE","utcTime":"2020-01-01T00:00"}`, false},
		{cronJSON("0 0 12 * * ? 2099", ""), true},
	} {
		s := mustLoad(t, tt.raw)
		if _, ok := s.Next(now, time.Time{}); ok != tt.next {
			t.Errorf("%s: Next reports %v, want %v", tt.raw, ok, tt.next)
		}
	}
}
