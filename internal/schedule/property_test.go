package schedule

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/adhocore/gronx"

	"github.com/keyturn/keyturn/internal/fault"
)

var zones = []string{"Etc/UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata", "Pacific/Chatham"}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// randomCron returns a valid Quartz expression.
func randomCron(r *rand.Rand) string {
	sec := pick(r, []string{"0", "0", "0", "*/15", "0,30", "5-10", "7/20"})
	mins := pick(r, []string{"0", "0", "30", "*/5", "15,45", "0-10/3", "50-10", "*"})
	hour := pick(r, []string{"*", "2", "2", "1-3", "0/6", "22-2", "3,15", "1", "0"})
	dom := pick(r, []string{"?", "*", "1", "15", "L", "L-2", "LW", "L-3W", "15W", "1W", "31", "1/5", "28-3", "29"})
	dow := pick(r, []string{"?", "*", "MON", "1", "2-6", "6L", "6#3", "L", "FRI-MON", "*/2", "2#5", "7", "SUN#1"})
	if dom != "?" && dom != "*" && dow != "?" && dow != "*" {
		if r.IntN(2) == 0 {
			dom = "?"
		} else {
			dow = "?"
		}
	}
	month := pick(r, []string{"*", "*", "*", "3", "JAN,JUL", "11-2", "*/3", "FEB", "10"})
	year := pick(r, []string{"", "", "", " *", " 2025-2040", " 2027/2"})
	return fmt.Sprintf("%s %s %s %s %s %s%s", sec, mins, hour, dom, month, dow, year)
}

// randomSchedule returns a valid schedule object of any type that fires.
func randomSchedule(r *rand.Rand) string {
	tz := pick(r, zones)
	if r.IntN(3) == 0 {
		return cronJSON(randomCron(r), tz)
	}
	timeKey := pick(r, []string{"time", "time", "utcTime"})
	tod := fmt.Sprintf("%02d:%02d", pick(r, []int{0, 1, 2, 2, 3, 12, 23}), pick(r, []int{0, 0, 30, 59}))
	m := map[string]any{"tz": tz, timeKey: tod, "intervalCount": pick(r, []int{1, 1, 2, 3, 5})}
	switch r.IntN(6) {
	case 0:
		m["type"] = "DAILY"
	case 1:
		m["type"] = "WEEKLY"
		m["weekday"] = pick(r, weekdayNames)
	case 2:
		m["type"] = "MONTHLY_BY_DAY"
		m["monthDay"] = 1 + r.IntN(31)
	case 3:
		m["type"] = "MONTHLY_BY_WEEKDAY"
		m["weekday"] = pick(r, weekdayNames)
		m["occurrence"] = pick(r, occurrenceNames)
	case 4:
		m["type"] = "YEARLY"
		m["month"] = pick(r, monthNames)
		m["monthDay"] = 1 + r.IntN(28)
	case 5:
		delete(m, "intervalCount")
		m["type"] = "RUN_ONCE"
		m[timeKey] = fmt.Sprintf("2027-%02d-%02dT%s", 1+r.IntN(12), 1+r.IntN(28), tod)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// randomInstant returns an instant in 2025-2030, often close to one of loc's transitions.
func randomInstant(r *rand.Rand, loc *time.Location) time.Time {
	t := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(6 * 365 * 24 * time.Hour))))
	if r.IntN(2) == 0 {
		if start, _ := t.In(loc).ZoneBounds(); !start.IsZero() {
			t = start.Add(time.Duration(r.Int64N(int64(6*time.Hour))) - 3*time.Hour)
		}
	}
	return t.Add(time.Duration(r.Int64N(int64(time.Second))) * time.Duration(r.IntN(2)))
}

// TestRestartConsistency is the property the scheduler relies on: for random schedules and
// instants t1 < t2, iterating Next from t1 passes through Next(t2), so computing from any
// point gives the same sequence. It also checks that fires strictly increase and that no
// wall-clock reading fires twice.
func TestRestartConsistency(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	cases := 3000
	if testing.Short() {
		cases = 300
	}
	for i := 0; i < cases; i++ {
		raw := randomSchedule(r)
		s, err := Load(json.RawMessage(raw))
		if err != nil && strings.Contains(err.Error(), "never fires") {
			continue // e.g. 31 FEB
		} else if err != nil {
			t.Fatalf("Load(%s): %v", raw, err)
		}
		t1 := randomInstant(r, s.loc)
		anchor := randomInstant(r, s.loc)
		var seq []time.Time
		seen := map[string]bool{}
		for prev := t1; len(seq) < 40; {
			next, ok := s.Next(prev, anchor)
			if !ok {
				break
			}
			if !next.After(prev) {
				t.Fatalf("%s: Next(%v) = %v is not after it", raw, prev, next)
			}
			wall := next.In(s.loc).Format("2006-01-02 15:04:05")
			if seen[wall] {
				t.Fatalf("%s: wall time %s fired twice (%v)", raw, wall, next)
			}
			seen[wall] = true
			seq = append(seq, next)
			prev = next
		}
		if len(seq) == 0 {
			continue
		}
		for j := 0; j < 5; j++ {
			t2 := t1.Add(time.Duration(r.Int64N(int64(seq[len(seq)-1].Sub(t1)))))
			got, ok := s.Next(t2, anchor)
			want := seq[0]
			for k := 0; !want.After(t2); k++ {
				want = seq[k]
			}
			if !ok || !got.Equal(want) {
				t.Fatalf("%s anchor %v: from t1=%v the first fire after t2=%v is %v, but Next(t2) = %v, %v",
					raw, anchor, t1, t2, want, got, ok)
			}
		}
	}
}

// TestAgainstGronx runs gronx as an oracle, in UTC, on random expressions built only from
// constructs that both implement (after moving days of week from Quartz's 1 = SUN to
// gronx's 0 = SUN, and always giving gronx 7 fields).
func TestAgainstGronx(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	type pair struct{ quartz, unix string }
	doms := []string{"?", "*", "1", "15", "31", "L", "15W", "1W", "30W", "1/5", "*/4", "10-20", "1,15,28"}
	dows := []pair{{"?", "?"}, {"*", "*"}, {"1", "0"}, {"7", "6"}, {"2-6", "1-5"}, {"MON-FRI", "MON-FRI"}, {"1,4", "0,3"},
		{"SAT", "SAT"}, {"6L", "5L"}, {"1L", "0L"}, {"6#3", "5#3"}, {"7#2", "6#2"}, {"2#5", "1#5"}, {"FRI#1", "FRI#1"}}
	cases, compared := 1500, 0
	if testing.Short() {
		cases = 200
	}
	for i := 0; i < cases; i++ {
		dom, dow := pick(r, doms), pick(r, dows)
		if dom != "?" && dom != "*" && dow.quartz != "?" && dow.quartz != "*" {
			dom = "?"
		}
		head := fmt.Sprintf("%s %s %s %s %s",
			pick(r, []string{"0", "*/15", "5/20", "10-12"}),
			pick(r, []string{"0", "*/7", "15,45", "0-10/3", "59"}),
			pick(r, []string{"*", "3", "1-5", "0/6", "23"}),
			dom,
			pick(r, []string{"*", "3", "JAN,JUL", "*/3", "2-4", "FEB"}))
		year := pick(r, []string{"*", "*", "2027-2031", "2028"})
		quartz := head + " " + dow.quartz + " " + year
		unix := head + " " + dow.unix + " " + year
		s, err := Load(json.RawMessage(cronJSON(quartz, "Etc/UTC")))
		if err != nil && strings.Contains(err.Error(), "never fires") {
			continue // e.g. the fifth Monday of March 2028
		} else if err != nil {
			t.Fatal(err)
		}
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(3 * 365 * 24 * time.Hour)))).Truncate(time.Second)
		ours, theirs := from, from
		for k := 0; k < 5; k++ {
			next, ok := s.Next(ours, time.Time{})
			g, err := gronx.NextTickAfter(unix, theirs, false)
			if err != nil || !g.After(theirs) {
				break // gronx gives up on sparse expressions ("tried so hard"), or returns its input when none is left
			}
			compared++
			if !ok || !next.Equal(g) {
				t.Fatalf("%q (gronx %q) after %v: ours %v %v, gronx %v", quartz, unix, ours, next, ok, g)
			}
			ours, theirs = next, g
		}
	}
	t.Logf("compared %d fire times with gronx", compared)
	if compared < cases {
		t.Errorf("only %d comparisons", compared)
	}
}

// FuzzLoad checks that Load and Parse never panic, and that what loads yields increasing
// fire times.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		`{"type":"CRON","cron":"0 0 3 * * ?","tz":"Europe/Berlin"}`,
		`{"type":"CRON","cron":"0 15 10 ? * 6L 2027-2030"}`,
		`{"type":"CRON","cron":"0 0 12 LW * ?"}`,
		`{"type":"CRON","cron":"0/5 0-10/3 22-2 L-3W 11-2 ? */2"}`,
		`{"type":"CRON","cron":"0 0 12 ? JAN,JUL MON#1"}`,
		`{"type":"WEEKLY","utcTime":"15:44","weekday":"SUNDAY","intervalCount":2}`,
		`{"type":"MONTHLY_BY_WEEKDAY","time":"03:00","weekday":"FRIDAY","occurrence":"LAST","tz":"America/New_York"}`,
		`{"type":"YEARLY","time":"02:30","month":"FEBRUARY","monthDay":29,"intervalCount":5}`,
		`{"type":"RUN_ONCE","time":"2027-03-14T02:30","tz":"America/New_York"}`,
		`[{"type":"DAILY","time":"03:00:00","intervalCount":"3"}]`,
		`["0 56 17 * * ?"]`, `{"type":"DEFAULT"}`, `null`, `{"type":"MONTHLY_BY_DAY","time":"1:02","monthDay":"31"}`,
	} {
		f.Add(seed)
	}
	now := at("2027-01-01T00:00:00Z")
	f.Fuzz(func(t *testing.T, raw string) {
		_, _ = Parse(json.RawMessage(raw), now)
		s, err := Load(json.RawMessage(raw))
		if err != nil {
			if fe, ok := fault.As(err); !ok || fe.Kind != fault.Invalid || fe.Code != "invalid_schedule" {
				t.Fatalf("error %#v is not fault.Invalid/invalid_schedule", err)
			}
			return
		}
		_ = s.String()
		prev := now
		for range 3 {
			next, ok := s.Next(prev, now)
			if !ok {
				break
			}
			if !next.After(prev) {
				t.Fatalf("%s: Next(%v) = %v", raw, prev, next)
			}
			prev = next
		}
	})
}
