// Package schedule turns a rotation schedule, the JSON object keyturn stores in rotation
// settings as Keeper writes it, into fire times. It is pure computation: no clock (the caller
// passes the instants), no I/O beyond loading time zones, no goroutines.
//
// Schedule objects:
//
//	{"type":"ON_DEMAND"}                              never fires (also: empty, null, [] or "")
//	{"type":"DEFAULT"}                                the configuration's default schedule; the caller resolves it
//	{"type":"CRON","cron":"0 0 3 * * ?","tz":"Europe/Berlin"}
//	{"type":"DAILY","time":"03:00","intervalCount":2,"tz":"Europe/Berlin"}
//	{"type":"WEEKLY","utcTime":"15:44","weekday":"SUNDAY","intervalCount":1}
//	{"type":"MONTHLY_BY_DAY","time":"03:00","monthDay":31}
//	{"type":"MONTHLY_BY_WEEKDAY","time":"03:00","weekday":"FRIDAY","occurrence":"LAST"}
//	{"type":"YEARLY","time":"03:00","month":"MARCH","monthDay":15}
//	{"type":"RUN_ONCE","time":"2027-01-31T15:00:00","tz":"Europe/Berlin"}
//
// Keeper's form, a list holding one object, is accepted too, and so is a bare cron string
// (Commander's --schedulecron stores ["0 56 17 * * ?"]), read in Etc/UTC.
//
// Decisions:
//
//   - tz is an IANA zone, default Etc/UTC. "time" is a wall-clock time in tz; "utcTime" is in
//     UTC, and then the whole schedule (which day, which weekday) is read in UTC, as Keeper's
//     own export to cron does; tz is then only shown. Given both, "time" wins.
//   - Cron is Quartz's: sec min hour day-of-month month day-of-week [year 1970-2099], days
//     of week 1 = SUN to 7 = SAT, with L, L-n, W, LW, L-nW, nL, n#k, names and wrapping
//     ranges (FRI-MON). Quartz insists on ? in exactly one day field, and Commander warns
//     otherwise; keyturn is more lenient: * and ? both mean "any day" in either day field
//     ("0 0 4 * * *" fires daily, "0 0 4 15 * *" on the 15th), and only both day fields
//     restricted ("0 0 4 15 * MON") is refused, as Quartz cannot express it either.
//   - nW and L-n never cross into another month: 31W does not fire in 30-day months.
//     Keeper's MONTHLY_BY_DAY and YEARLY instead fire on a short month's last day
//     (monthDay 31 fires on 30 April, 29 February fires on 28 February), so that a rotation
//     is never skipped.
//   - intervalCount N (default 1; 0 counts as 1) means every N days, weeks, months or years.
//     The phase comes from the anchor the caller passes (when the schedule was set): the
//     first fire at or after the anchor is occurrence 0, and then every N-th period fires.
//     So the first fire at or after the anchor does not depend on N, and restarts never
//     shift the phase. N is bounded so that fires are never more than 5 years apart.
//   - RUN_ONCE takes "time" (local, "2006-01-02T15:04[:05]") or "utcTime" (UTC). Keeper's
//     own key for the date was not found in Commander's sources; this is keyturn's form.
//   - DST: a wall-clock time that does not exist (02:30 on the spring-forward day in
//     Europe/Berlin) fires at the first instant after the gap (03:00); one that occurs twice
//     (01:30 on the fall-back day in America/New_York) fires once, at its first occurrence.
//     Several wall times in one gap fire once. Nothing fires twice, nothing is skipped: an
//     hourly cron fires 23 times on the 23-hour day (02:00 and 03:00 both at 03:00) and 24
//     times on the 25-hour day (the repeated hour once).
//   - Unknown keys, and keys that do not apply to the type, are refused (keys match
//     case-insensitively, as Keeper's "monthday" typo needs).
//
// Parse checks new input against the clock (the next fire must be within 5 years); Load
// reads a stored schedule without that check, so one that has fired for the last time still
// loads and merely reports no next fire.
//
// The cron engine is keyturn's own. github.com/adhocore/gronx, the stack's pick, reads days
// of week as Unix cron does (0 or 7 = SUN, so Quartz's 6L and 6#3 would mean Saturday),
// reads a 6-field expression whose last field has 4 digits as min..year, fires when either
// day field matches (Vixie cron) rather than refusing, has no LW, L-n or L alone in day of
// week, and skips wall times that fall in a spring-forward gap. The tests run gronx as an
// oracle on the constructs where both agree.
package schedule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/fault"
)

// MaxAheadYears is how far ahead, in years, Parse accepts a schedule's next fire time.
const MaxAheadYears = 5

type kind uint8

const (
	kindOnDemand kind = iota
	kindDefault
	kindCron
	kindDaily
	kindWeekly
	kindMonthlyByDay
	kindMonthlyByWeekday
	kindYearly
	kindRunOnce
)

var kindNames = [...]string{"ON_DEMAND", "DEFAULT", "CRON", "DAILY", "WEEKLY", "MONTHLY_BY_DAY", "MONTHLY_BY_WEEKDAY", "YEARLY", "RUN_ONCE"}

// keys each type accepts; "type" and "tz" are accepted by all.
var typeKeys = [...][]string{
	kindOnDemand:         nil,
	kindDefault:          nil,
	kindCron:             {"cron", "intervalCount"},
	kindDaily:            {"time", "utcTime", "intervalCount"},
	kindWeekly:           {"time", "utcTime", "intervalCount", "weekday"},
	kindMonthlyByDay:     {"time", "utcTime", "intervalCount", "monthDay"},
	kindMonthlyByWeekday: {"time", "utcTime", "intervalCount", "weekday", "occurrence"},
	kindYearly:           {"time", "utcTime", "intervalCount", "month", "monthDay"},
	kindRunOnce:          {"time", "utcTime", "intervalCount"},
}

var allKeys = []string{"type", "tz", "cron", "time", "utcTime", "intervalCount", "weekday", "monthDay", "month", "occurrence"}

var weekdayNames = []string{"SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY"}
var monthNames = []string{"JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST", "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER"}
var occurrenceNames = []string{"FIRST", "SECOND", "THIRD", "FOURTH", "LAST"}

// Schedule is a parsed, validated rotation schedule. The zero value is ON_DEMAND. It is
// immutable and safe for concurrent use.
type Schedule struct {
	kind kind
	tz   string         // the zone as stored; "" means Etc/UTC
	loc  *time.Location // where wall times are read: tz, or UTC for utcTime
	utc  bool           // the time of day was given as utcTime
	spec *spec          // CRON and the calendar types
	cron string         // CRON: the expression, upper-cased, single-spaced
	once time.Time      // RUN_ONCE: the wall time, coded in UTC

	every      int    // calendar types: intervalCount, at least 1
	tod        [3]int // calendar types: hour, minute, second
	weekday    int    // 0 = SUNDAY
	monthDay   int
	month      int // 1 = JANUARY
	occurrence int // 1..4, or 5 for LAST
}

func invalid(format string, args ...any) *fault.Error {
	return fault.New(fault.Invalid, "invalid_schedule", format, args...)
}

// Load reads a stored schedule: everything Parse checks except what depends on the clock.
// A schedule that can never fire at all (cron "0 0 0 30 2 ?") is still refused.
// Errors are *fault.Error of kind fault.Invalid with code "invalid_schedule".
func Load(raw json.RawMessage) (Schedule, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return Schedule{}, nil
	}
	if !json.Valid(raw) {
		return Schedule{}, invalid("schedule is not valid JSON")
	}
	switch raw[0] {
	case '[':
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return Schedule{}, invalid("schedule is not valid JSON")
		}
		switch {
		case len(list) == 0:
			return Schedule{}, nil
		case len(list) > 1:
			return Schedule{}, invalid("schedule list holds %d schedules: give one", len(list))
		case bytes.HasPrefix(bytes.TrimSpace(list[0]), []byte("[")):
			return Schedule{}, invalid("schedule list holds a list: give one schedule object")
		}
		return Load(list[0])
	case '"':
		var expr string
		if err := json.Unmarshal(raw, &expr); err != nil {
			return Schedule{}, invalid("schedule is not valid JSON")
		}
		if strings.TrimSpace(expr) == "" {
			return Schedule{}, nil
		}
		return build(map[string]json.RawMessage{"type": json.RawMessage(`"CRON"`), "cron": raw})
	case '{':
		obj, err := readObject(raw)
		if err != nil {
			return Schedule{}, err
		}
		return build(obj)
	}
	return Schedule{}, invalid(`schedule must be an object such as {"type":"ON_DEMAND"}`)
}

// Parse reads a schedule given as new input at instant now: Load, and then the next fire
// after now (with now as the anchor) must exist and be at most 5 years away.
// Errors are *fault.Error of kind fault.Invalid with code "invalid_schedule", naming the
// field that is wrong.
func Parse(raw json.RawMessage, now time.Time) (Schedule, error) {
	s, err := Load(raw)
	if err != nil || s.kind == kindOnDemand || s.kind == kindDefault {
		return s, err
	}
	next, ok := s.Next(now, now)
	switch {
	case !ok && s.kind == kindRunOnce:
		return Schedule{}, invalid("%s %q is in the past", s.timeKey(), s.once.Format("2006-01-02T15:04:05"))
	case !ok && s.kind == kindCron:
		return Schedule{}, invalid("cron %q never fires after %s", s.cron, now.In(s.loc).Format(time.RFC3339))
	case !ok:
		return Schedule{}, invalid("schedule never fires after %s", now.In(s.loc).Format(time.RFC3339))
	case next.After(now.AddDate(MaxAheadYears, 0, 0)):
		what := "schedule"
		if s.kind == kindCron {
			what = fmt.Sprintf("cron %q", s.cron)
		} else if s.kind == kindRunOnce {
			what = fmt.Sprintf("%s %q", s.timeKey(), s.once.Format("2006-01-02T15:04:05"))
		}
		return Schedule{}, invalid("%s: next fire %s is more than %d years away", what, next.In(s.loc).Format(time.RFC3339), MaxAheadYears)
	}
	return s, nil
}

// readObject reads a JSON object's members by canonical key, refusing unknown and repeated
// keys. Null members count as absent.
func readObject(raw []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return nil, invalid("schedule is not valid JSON")
	}
	obj := map[string]json.RawMessage{}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, invalid("schedule is not valid JSON")
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, invalid("schedule is not valid JSON")
		}
		canon := ""
		for _, k := range allKeys {
			if strings.EqualFold(k, key) {
				canon = k
			}
		}
		if canon == "" {
			return nil, invalid("unknown key %q in schedule (keys: %s)", key, strings.Join(allKeys, ", "))
		}
		if seen[canon] {
			return nil, invalid("key %q appears twice in schedule", canon)
		}
		seen[canon] = true
		if string(v) != "null" {
			obj[canon] = v
		}
	}
	if _, err := dec.Token(); err != nil { // }
		return nil, invalid("schedule is not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("schedule is not valid JSON")
	}
	return obj, nil
}

// str returns a string member.
func str(obj map[string]json.RawMessage, key, example string) (string, bool, error) {
	v, ok := obj[key]
	if !ok {
		return "", false, nil
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false, invalid("%s must be a string such as %q, not %s", key, example, v)
	}
	return strings.TrimSpace(s), true, nil
}

// num returns a whole-number member, given as a JSON number or a string of digits.
func num(obj map[string]json.RawMessage, key string) (int, bool, error) {
	v, ok := obj[key]
	if !ok {
		return 0, false, nil
	}
	s := string(v)
	var q string
	if json.Unmarshal(v, &q) == nil {
		s = strings.TrimSpace(q)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < -1_000_000 || n > 1_000_000 {
		return 0, false, invalid("%s must be a whole number, not %s", key, v)
	}
	return n, true, nil
}

// name matches a member against names (case-insensitively) and returns its index.
func name(obj map[string]json.RawMessage, key string, names []string) (int, error) {
	s, ok, err := str(obj, key, names[0])
	if err != nil {
		return 0, err
	}
	if !ok || s == "" {
		return 0, invalid("%s is required: use %s…%s", key, names[0], names[len(names)-1])
	}
	for i, n := range names {
		if strings.EqualFold(s, n) {
			return i, nil
		}
	}
	return 0, invalid("%s %q: use %s…%s", key, s, names[0], names[len(names)-1])
}

func build(obj map[string]json.RawMessage) (Schedule, error) {
	typ, ok, err := str(obj, "type", "CRON")
	if err != nil {
		return Schedule{}, err
	}
	if !ok || typ == "" {
		return Schedule{}, invalid("type is required: %s", strings.Join(kindNames[:], ", "))
	}
	s := Schedule{kind: 255}
	for k, n := range kindNames {
		if strings.EqualFold(typ, n) {
			s.kind = kind(k)
		}
	}
	if s.kind == 255 {
		return Schedule{}, invalid("type %q: use %s", typ, strings.Join(kindNames[:], ", "))
	}
	for key := range obj {
		if key != "type" && key != "tz" && !contains(typeKeys[s.kind], key) {
			return Schedule{}, invalid("key %q does not apply to type %s", key, kindNames[s.kind])
		}
	}
	if s.tz, s.loc, err = zone(obj); err != nil {
		return Schedule{}, err
	}
	every, hasEvery, err := num(obj, "intervalCount")
	if err != nil {
		return Schedule{}, err
	}
	if every == 0 {
		every = 1
	}
	if every < 0 {
		return Schedule{}, invalid("intervalCount %d: must be at least 1", every)
	}
	s.every = every

	switch s.kind {
	case kindOnDemand, kindDefault:
		return s, nil
	case kindCron, kindRunOnce:
		if hasEvery && every != 1 {
			return Schedule{}, invalid("intervalCount %d does not apply to type %s", every, kindNames[s.kind])
		}
	}
	if s.kind == kindCron {
		expr, ok, err := str(obj, "cron", "0 0 3 * * ?")
		if err != nil {
			return Schedule{}, err
		}
		if !ok || expr == "" {
			return Schedule{}, invalid("cron is required for type CRON, e.g. \"0 0 3 * * ?\"")
		}
		if s.spec, s.cron, err = parseCron(expr); err != nil {
			return Schedule{}, err
		}
		if _, ok := s.spec.next(time.Date(minYear, 1, 1, 0, 0, 0, 0, time.UTC)); !ok {
			return Schedule{}, invalid("cron %q never fires: no date from %d to %d matches it", s.cron, minYear, maxYear)
		}
		return s, nil
	}

	// time or utcTime
	key, val := "time", ""
	if v, ok, err := str(obj, "time", "03:00"); err != nil {
		return Schedule{}, err
	} else if ok && v != "" {
		val = v
	} else if v, ok, err := str(obj, "utcTime", "03:00"); err != nil {
		return Schedule{}, err
	} else if ok && v != "" {
		key, val = "utcTime", v
	}
	if val == "" {
		return Schedule{}, invalid("time or utcTime is required for type %s", kindNames[s.kind])
	}
	if key == "utcTime" {
		s.utc, s.loc = true, time.UTC
	}
	if s.kind == kindRunOnce {
		for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04"} {
			if t, err := time.Parse(layout, val); err == nil {
				s.once = t
				return s, nil
			}
		}
		return Schedule{}, invalid("%s %q: RUN_ONCE needs a date and time such as \"2027-01-31T15:00:00\"", key, val)
	}
	if s.tod, err = timeOfDay(key, val); err != nil {
		return Schedule{}, err
	}

	c := &spec{anyYear: true, domKind: domAny, dowKind: dowAny}
	c.hour.add(s.tod[0])
	c.min.add(s.tod[1])
	c.sec.add(s.tod[2])
	fillAll(&c.dom, fDOM)
	fillAll(&c.dow, fDOW)
	fillAll(&c.month, fMonth)
	var maxEvery int
	switch s.kind {
	case kindDaily:
		maxEvery = 5*365 + 1
	case kindWeekly:
		maxEvery = 5 * 52
		if s.weekday, err = name(obj, "weekday", weekdayNames); err != nil {
			return Schedule{}, err
		}
		c.dow = bitset{}
		c.dow.add(s.weekday)
		c.dowKind = dowSet
	case kindMonthlyByDay, kindYearly:
		maxEvery = 5 * 12
		if s.kind == kindYearly {
			maxEvery = 5
			if s.month, err = name(obj, "month", monthNames); err != nil {
				return Schedule{}, err
			}
			s.month++
			c.month = bitset{}
			c.month.add(s.month - 1)
		}
		d, ok, err := num(obj, "monthDay")
		if err != nil {
			return Schedule{}, err
		}
		if !ok {
			return Schedule{}, invalid("monthDay is required for type %s: a day 1-31", kindNames[s.kind])
		}
		maxDay := 31
		if s.kind == kindYearly {
			maxDay = daysIn(2000, time.Month(s.month)) // a leap year: 29 February is allowed
		}
		if d < 1 || d > maxDay {
			return Schedule{}, invalid("monthDay %d: out of range 1-%d", d, maxDay)
		}
		s.monthDay = d
		c.domKind, c.domN = domClamped, d
	case kindMonthlyByWeekday:
		maxEvery = 5 * 12
		if s.weekday, err = name(obj, "weekday", weekdayNames); err != nil {
			return Schedule{}, err
		}
		occ, err := name(obj, "occurrence", occurrenceNames)
		if err != nil {
			return Schedule{}, err
		}
		s.occurrence = occ + 1
		c.dowDay = s.weekday + 1
		if s.occurrence == 5 {
			c.dowKind = dowLast
		} else {
			c.dowKind, c.dowNth = dowNth, s.occurrence
		}
	}
	if s.every > maxEvery {
		return Schedule{}, invalid("intervalCount %d: fires would be more than %d years apart; use at most %d", s.every, MaxAheadYears, maxEvery)
	}
	s.spec = c
	return s, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// zone reads tz; absent or empty means Etc/UTC.
func zone(obj map[string]json.RawMessage) (string, *time.Location, error) {
	tz, _, err := str(obj, "tz", "Europe/Berlin")
	if err != nil {
		return "", nil, err
	}
	switch tz {
	case "", "Etc/UTC", "UTC":
		return tz, time.UTC, nil
	case "Local":
		return "", nil, invalid("tz %q: give an IANA time zone such as Europe/Berlin", tz)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return "", nil, invalid("tz %q: unknown time zone", tz)
	}
	return tz, loc, nil
}

// timeOfDay parses "HH:MM" or "HH:MM:SS".
func timeOfDay(key, v string) ([3]int, error) {
	var tod [3]int
	parts := strings.Split(v, ":")
	ok := len(parts) == 2 || len(parts) == 3
	for i := 0; ok && i < len(parts); i++ {
		n, isNum := atoi(parts[i])
		limit := 59
		if i == 0 {
			limit = 23
		}
		ok = isNum && len(parts[i]) <= 2 && (i == 0 || len(parts[i]) == 2) && n <= limit
		tod[i] = n
	}
	if !ok {
		return tod, invalid("%s %q: use HH:MM or HH:MM:SS (24-hour clock)", key, v)
	}
	return tod, nil
}

// Next returns the first fire time strictly after `after`, or false if the schedule never
// fires again (ON_DEMAND, DEFAULT, a past RUN_ONCE, a cron whose years are over). anchor
// sets the phase of intervalCount > 1 (when the schedule was set); other schedules ignore
// it. For fixed anchor the fire times form one sequence: Next from any instant returns the
// first of them after it, so restarting the computation anywhere gives the same fires.
func (s Schedule) Next(after, anchor time.Time) (time.Time, bool) {
	switch s.kind {
	case kindCron, kindDaily, kindWeekly, kindMonthlyByDay, kindMonthlyByWeekday, kindYearly:
	case kindRunOnce:
		if t := resolve(s.once, s.loc); t.After(after) {
			return t, true
		}
		return time.Time{}, false
	default:
		return time.Time{}, false
	}
	var p0 int64
	mod := int64(1)
	if s.every > 1 {
		mod = s.modulus()
		before := anchor.Add(-time.Nanosecond) // the first fire at or after anchor is occurrence 0
		w, _, ok := s.next(firstWallAfter(before, s.loc), before, 0, 1)
		if !ok {
			return time.Time{}, false
		}
		p0 = s.period(w)
	}
	_, t, ok := s.next(firstWallAfter(after, s.loc), after, p0, mod)
	return t, ok
}

// next searches wall times from w for the first whose period is p0 modulo mod and whose
// instant is after `after`.
func (s Schedule) next(w, after time.Time, p0, mod int64) (wall, inst time.Time, ok bool) {
	for range 1000 {
		if wall, ok = s.spec.next(w); !ok {
			return
		}
		if mod > 1 {
			p := s.period(wall)
			if r := floorMod(p-p0, mod); r != 0 {
				w = s.periodStart(p + mod - r)
				continue
			}
		}
		if inst = resolve(wall, s.loc); inst.After(after) {
			return wall, inst, true
		}
		w = wall.Add(time.Second) // not reached in practice: firstWallAfter already skips these
	}
	return time.Time{}, time.Time{}, false
}

// period numbers the day, month or year of wall time w, for intervalCount.
func (s Schedule) period(w time.Time) int64 {
	switch s.kind {
	case kindDaily, kindWeekly:
		return floorDiv(w.Unix(), 86400)
	case kindMonthlyByDay, kindMonthlyByWeekday:
		return int64(w.Year())*12 + int64(w.Month()) - 1
	}
	return int64(w.Year())
}

// modulus is the distance in periods between fires.
func (s Schedule) modulus() int64 {
	if s.kind == kindWeekly {
		return 7 * int64(s.every)
	}
	return int64(s.every)
}

// periodStart is the first wall time of period p.
func (s Schedule) periodStart(p int64) time.Time {
	switch s.kind {
	case kindDaily, kindWeekly:
		return time.Unix(p*86400, 0).UTC()
	case kindMonthlyByDay, kindMonthlyByWeekday:
		return time.Date(int(floorDiv(p, 12)), time.Month(floorMod(p, 12)+1), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(int(p), 1, 1, 0, 0, 0, 0, time.UTC)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

// MinInterval returns the smallest gap between consecutive fire times among the next n after
// `from` (n >= 2), for rules such as "at least one hour apart"; false if fewer than two
// fire times follow `from`. anchor is as for Next.
func (s Schedule) MinInterval(from, anchor time.Time, n int) (time.Duration, bool) {
	prev, ok := s.Next(from, anchor)
	if !ok || n < 2 {
		return 0, false
	}
	best, found := time.Duration(math.MaxInt64), false
	for i := 1; i < n; i++ {
		t, ok := s.Next(prev, anchor)
		if !ok {
			break
		}
		best, found = min(best, t.Sub(prev)), true
		prev = t
	}
	if !found {
		return 0, false
	}
	return best, true
}

// OnDemand reports whether the schedule never fires on its own (type ON_DEMAND, or empty).
func (s Schedule) OnDemand() bool { return s.kind == kindOnDemand }

// UsesDefault reports whether the schedule is {"type":"DEFAULT"}: the caller must use the
// PAM configuration's default schedule instead.
func (s Schedule) UsesDefault() bool { return s.kind == kindDefault }

// Type returns the schedule's type as Keeper names it, such as "CRON" or "ON_DEMAND".
func (s Schedule) Type() string { return kindNames[s.kind] }

// String describes the schedule for people, e.g. `cron "0 0 3 * * ?" (Europe/Berlin)` or
// "every 2 weeks on SUNDAY at 15:44 (UTC)".
func (s Schedule) String() string {
	zoneName := s.tz
	if zoneName == "" || s.utc {
		zoneName = "UTC"
	}
	switch s.kind {
	case kindOnDemand:
		return "on demand"
	case kindDefault:
		return "the configuration's default schedule"
	case kindCron:
		return fmt.Sprintf("cron %q (%s)", s.cron, zoneName)
	case kindRunOnce:
		return fmt.Sprintf("once at %s (%s)", s.once.Format("2006-01-02 15:04:05"), zoneName)
	}
	unit := map[kind]string{kindDaily: "day", kindWeekly: "week", kindMonthlyByDay: "month", kindMonthlyByWeekday: "month", kindYearly: "year"}[s.kind]
	every := "every " + unit
	if s.every > 1 {
		every = fmt.Sprintf("every %d %ss", s.every, unit)
	}
	on := ""
	switch s.kind {
	case kindWeekly:
		on = " on " + weekdayNames[s.weekday]
	case kindMonthlyByDay:
		on = fmt.Sprintf(" on day %d", s.monthDay)
		if s.monthDay > 28 {
			on += " (or the last day of a shorter month)"
		}
	case kindMonthlyByWeekday:
		on = fmt.Sprintf(" on the %s %s", occurrenceNames[s.occurrence-1], weekdayNames[s.weekday])
	case kindYearly:
		on = fmt.Sprintf(" on %s %d", monthNames[s.month-1], s.monthDay)
	}
	at := fmt.Sprintf("%02d:%02d", s.tod[0], s.tod[1])
	if s.tod[2] != 0 {
		at += fmt.Sprintf(":%02d", s.tod[2])
	}
	return fmt.Sprintf("%s%s at %s (%s)", every, on, at, zoneName)
}

func (s Schedule) timeKey() string {
	if s.utc {
		return "utcTime"
	}
	return "time"
}
