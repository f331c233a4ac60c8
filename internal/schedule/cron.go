package schedule

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// Quartz cron fields, in order.
const (
	fSec = iota
	fMin
	fHour
	fDOM
	fMonth
	fDOW
	fYear
)

// Quartz's year range; a cron schedule never fires outside it.
const (
	minYear = 1970
	maxYear = 2099
)

type fieldInfo struct {
	name     string
	min, max int
	names    []string // names[i] names the value min+i
}

var fields = [7]fieldInfo{
	{"seconds", 0, 59, nil},
	{"minutes", 0, 59, nil},
	{"hours", 0, 23, nil},
	{"day of month", 1, 31, nil},
	{"month", 1, 12, []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	{"day of week", 1, 7, []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}}, // Quartz: 1 = SUN
	{"year", minYear, maxYear, nil},
}

// bitset holds values 0..191 (a field's value minus its minimum).
type bitset [3]uint64

func (b *bitset) add(i int)      { b[i>>6] |= 1 << (uint(i) & 63) }
func (b *bitset) has(i int) bool { return i >= 0 && i < 192 && b[i>>6]&(1<<(uint(i)&63)) != 0 }

// next returns the smallest member >= i, or -1.
func (b *bitset) next(i int) int {
	for ; i < 192; i = (i | 63) + 1 {
		if w := b[i>>6] >> (uint(i) & 63); w != 0 {
			return i + bits.TrailingZeros64(w)
		}
	}
	return -1
}

// How the day of month is restricted.
type domKind uint8

const (
	domAny     domKind = iota // * or ?
	domSet                    // values, ranges, steps
	domLast                   // L or L-n: n days before the last day
	domLastW                  // LW or L-nW: the weekday nearest to L-n
	domNearW                  // nW: the weekday nearest to day n (never crossing the month)
	domClamped                // Keeper objects: day n, or the month's last day if it is shorter
)

// How the day of week is restricted.
type dowKind uint8

const (
	dowAny  dowKind = iota // * or ?
	dowSet                 // values, ranges, steps
	dowLast                // nL: the last n-day of the month
	dowNth                 // n#k: the k-th n-day of the month
)

// spec matches wall-clock times (civil date and time of day, no zone). Cron expressions and
// Keeper's calendar objects both compile to it.
type spec struct {
	sec, min, hour, dom, month, dow, year bitset // value minus the field's minimum

	domKind domKind
	domN    int // L-n offset, nW day, or clamped day
	dowKind dowKind
	dowDay  int // 1..7, Quartz numbering, for nL and n#k
	dowNth  int // 1..5 for n#k

	anyYear bool // no year bound (Keeper objects); otherwise only 1970-2099 fire
}

func (c *spec) hasDOW(q int) bool { return c.dow.has(q - 1) }

// next returns the first matching wall time at or after w (a wall time coded in UTC,
// whole seconds), or false if there is none (for cron: none up to 2099).
func (c *spec) next(w time.Time) (time.Time, bool) {
	y, mo, d := w.Date()
	h, mi, s := w.Clock()
	last := maxYear
	if c.anyYear {
		last = y + 10 // every calendar object fires at least once a year
	} else if y < minYear {
		y, mo, d, h, mi, s = minYear, 1, 1, 0, 0, 0
	}
	for ; y <= last; y, mo, d, h, mi, s = y+1, 1, 1, 0, 0, 0 {
		if !c.anyYear && !c.year.has(y-minYear) {
			continue
		}
		for ; mo <= 12; mo, d, h, mi, s = mo+1, 1, 0, 0, 0 {
			if !c.month.has(int(mo) - 1) {
				continue
			}
			ml := daysIn(y, mo)
			for ; d <= ml; d, h, mi, s = d+1, 0, 0, 0 {
				if !c.dayOK(y, mo, d, ml) {
					continue
				}
				if hh, mm, ss, ok := c.timeAtOrAfter(h, mi, s); ok {
					return time.Date(y, mo, d, hh, mm, ss, 0, time.UTC), true
				}
			}
		}
	}
	return time.Time{}, false
}

// timeAtOrAfter returns the first matching time of day at or after h:m:s.
func (c *spec) timeAtOrAfter(h, m, s int) (int, int, int, bool) {
	for hh := c.hour.next(h); hh >= 0 && hh < 24; hh = c.hour.next(hh + 1) {
		m0 := 0
		if hh == h {
			m0 = m
		}
		for mm := c.min.next(m0); mm >= 0 && mm < 60; mm = c.min.next(mm + 1) {
			s0 := 0
			if hh == h && mm == m {
				s0 = s
			}
			if ss := c.sec.next(s0); ss >= 0 && ss < 60 {
				return hh, mm, ss, true
			}
		}
	}
	return 0, 0, 0, false
}

// dayOK reports whether day d of month mo in year y (a month of ml days) matches.
func (c *spec) dayOK(y int, mo time.Month, d, ml int) bool {
	switch c.domKind {
	case domSet:
		if !c.dom.has(d - 1) {
			return false
		}
	case domLast:
		if d != ml-c.domN {
			return false
		}
	case domLastW:
		t := ml - c.domN
		if t < 1 || d != nearestWeekday(y, mo, t, ml) {
			return false
		}
	case domNearW:
		if c.domN > ml || d != nearestWeekday(y, mo, c.domN, ml) {
			return false
		}
	case domClamped:
		if d != min(c.domN, ml) {
			return false
		}
	}
	if c.dowKind == dowAny {
		return true
	}
	q := int(weekday(y, mo, d)) + 1 // Quartz numbering
	switch c.dowKind {
	case dowSet:
		return c.hasDOW(q)
	case dowLast:
		return q == c.dowDay && d+7 > ml
	default: // dowNth
		return q == c.dowDay && (d-1)/7 == c.dowNth-1
	}
}

// nearestWeekday is Quartz's W: the weekday (Monday to Friday) nearest to day t of the month,
// never crossing into another month.
func nearestWeekday(y int, mo time.Month, t, ml int) int {
	switch weekday(y, mo, t) {
	case time.Saturday:
		if t == 1 {
			return 3
		}
		return t - 1
	case time.Sunday:
		if t == ml {
			return t - 2
		}
		return t + 1
	}
	return t
}

func weekday(y int, mo time.Month, d int) time.Weekday {
	return time.Date(y, mo, d, 12, 0, 0, 0, time.UTC).Weekday()
}

func daysIn(y int, mo time.Month) int {
	return time.Date(y, mo+1, 0, 12, 0, 0, 0, time.UTC).Day()
}

// cronError is the message for a bad cron field item.
func cronError(f int, item, format string, args ...any) error {
	return invalid("cron field %d (%s) %q: %s", f+1, fields[f].name, item, fmt.Sprintf(format, args...))
}

// parseCron parses a Quartz cron expression: sec min hour dom month dow [year].
func parseCron(expr string) (*spec, string, error) {
	parts := strings.Fields(strings.ToUpper(expr))
	norm := strings.Join(parts, " ")
	switch {
	case len(parts) == 0:
		return nil, "", invalid("cron is empty: give a Quartz cron expression such as \"0 0 3 * * ?\"")
	case strings.HasPrefix(parts[0], "@"):
		return nil, "", invalid("cron %q: macros such as @daily are not Quartz cron; use e.g. \"0 0 0 * * ?\"", expr)
	case len(parts) == 5:
		return nil, "", invalid("cron %q has 5 fields: Quartz cron has 6 or 7 (seconds minutes hours day-of-month month day-of-week [year]); put the seconds first and ? in one day field, e.g. \"0 0 2 * * ?\" for \"0 2 * * *\"", expr)
	case len(parts) < 6 || len(parts) > 7:
		return nil, "", invalid("cron %q has %d fields: Quartz cron has 6 or 7 (seconds minutes hours day-of-month month day-of-week [year])", expr, len(parts))
	}
	if len(parts) == 6 {
		parts = append(parts, "*")
	}
	c := &spec{}
	sets := [7]*bitset{&c.sec, &c.min, &c.hour, &c.dom, &c.month, &c.dow, &c.year}
	for f, tok := range parts {
		switch {
		case tok == "?":
			if f != fDOM && f != fDOW {
				return nil, "", cronError(f, tok, "? is only allowed in day of month or day of week")
			}
			fillAll(sets[f], f)
			continue
		case tok == "*":
			fillAll(sets[f], f)
			continue
		case f == fDOM && strings.ContainsAny(tok, "LW"):
			if err := c.parseDOMSpecial(tok); err != nil {
				return nil, "", err
			}
			continue
		case f == fDOW && strings.ContainsAny(tok, "L#"):
			if err := c.parseDOWSpecial(tok); err != nil {
				return nil, "", err
			}
			continue
		}
		for _, item := range strings.Split(tok, ",") {
			if err := parseItem(f, item, sets[f]); err != nil {
				return nil, "", err
			}
		}
		switch f {
		case fDOM:
			c.domKind = domSet
		case fDOW:
			c.dowKind = dowSet
		}
	}
	if c.domKind != domAny && c.dowKind != dowAny {
		return nil, "", invalid("cron %q: day of month (field 4) and day of week (field 6) are both set; Quartz needs ? in one of them", norm)
	}
	return c, norm, nil
}

func fillAll(b *bitset, f int) {
	for i := 0; i <= fields[f].max-fields[f].min; i++ {
		b.add(i)
	}
}

// parseItem parses one list item: *, a, a-b, with an optional /step (*/n, /n, a/n, a-b/n).
// A range whose end is before its start wraps around (FRI-MON, 22-2), as in Quartz.
func parseItem(f int, item string, set *bitset) error {
	fi := fields[f]
	size := fi.max - fi.min + 1
	if item == "" {
		return cronError(f, item, "empty list item")
	}
	base, stepStr, hasStep := strings.Cut(item, "/")
	step := 1
	if hasStep {
		n, ok := atoi(stepStr)
		if !ok || n < 1 || n > size {
			return cronError(f, item, "step %q: use a number 1-%d", stepStr, size)
		}
		step = n
	}
	var lo, hi int
	switch {
	case base == "*" || (base == "" && hasStep):
		lo, hi = fi.min, fi.max
	case base == "?":
		return cronError(f, item, "? must stand alone")
	default:
		a, b, isRange := strings.Cut(base, "-")
		v, err := parseValue(f, item, a)
		if err != nil {
			return err
		}
		lo, hi = v, v
		if hasStep {
			hi = fi.max
		}
		if isRange {
			if hi, err = parseValue(f, item, b); err != nil {
				return err
			}
			if hi < lo && f == fYear {
				return cronError(f, item, "range ends before it starts")
			}
		}
	}
	if hi < lo { // wrap around: 22-2 is 22,23,0,1,2
		hi += size
	}
	for v := lo; v <= hi; v += step {
		set.add((v - fi.min) % size)
	}
	return nil
}

// parseValue parses a number or (for months and days of week) a three-letter name.
func parseValue(f int, item, s string) (int, error) {
	fi := fields[f]
	if s == "" {
		return 0, cronError(f, item, "missing value")
	}
	if n, ok := atoi(s); ok {
		if n < fi.min || n > fi.max {
			hint := ""
			if f == fDOW {
				hint = " (Quartz numbers days 1 = SUN to 7 = SAT)"
			}
			return 0, cronError(f, item, "out of range %d-%d%s", fi.min, fi.max, hint)
		}
		return n, nil
	}
	for i, name := range fi.names {
		if s == name {
			return fi.min + i, nil
		}
	}
	if fi.names != nil {
		return 0, cronError(f, item, "%q is not a number %d-%d or a name %s-%s", s, fi.min, fi.max, fi.names[0], fi.names[len(fi.names)-1])
	}
	return 0, cronError(f, item, "%q is not a number %d-%d", s, fi.min, fi.max)
}

// atoi parses a short unsigned decimal number.
func atoi(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// parseDOMSpecial parses L, L-n, LW, L-nW and nW, which stand alone in the day-of-month field.
func (c *spec) parseDOMSpecial(tok string) error {
	fillAll(&c.dom, fDOM)
	if strings.Contains(tok, ",") {
		return cronError(fDOM, tok, "L and W cannot be combined with other days in a list")
	}
	if strings.HasPrefix(tok, "L") {
		rest := tok[1:]
		c.domKind = domLast
		if strings.HasSuffix(rest, "W") {
			c.domKind = domLastW
			rest = rest[:len(rest)-1]
		}
		if rest == "" {
			return nil
		}
		off, ok := strings.CutPrefix(rest, "-")
		n, isNum := atoi(off)
		if !ok || !isNum {
			return cronError(fDOM, tok, "use L, L-n, LW or L-nW (n = days before the last day)")
		}
		if n > 30 {
			return cronError(fDOM, tok, "offset from the last day must be 0-30")
		}
		c.domN = n
		return nil
	}
	day, ok := strings.CutSuffix(tok, "W")
	n, isNum := atoi(day)
	if !ok || !isNum {
		return cronError(fDOM, tok, "use nW for the weekday nearest to day n, or L, L-n, LW")
	}
	if n < 1 || n > 31 {
		return cronError(fDOM, tok, "W needs a day 1-31")
	}
	c.domKind, c.domN = domNearW, n
	return nil
}

// parseDOWSpecial parses L (Saturday), nL (last n-day) and n#k (k-th n-day), which stand
// alone in the day-of-week field.
func (c *spec) parseDOWSpecial(tok string) error {
	fillAll(&c.dow, fDOW)
	if strings.Contains(tok, ",") {
		return cronError(fDOW, tok, "L and # cannot be combined with other days in a list")
	}
	if tok == "L" { // Quartz: L alone in day of week is 7, Saturday
		c.dow = bitset{}
		c.dow.add(6)
		c.dowKind = dowSet
		return nil
	}
	if day, ok := strings.CutSuffix(tok, "L"); ok {
		if strings.ContainsAny(day, "-/*#") {
			return cronError(fDOW, tok, "use nL (last n-day of the month), e.g. 6L for the last Friday")
		}
		v, err := parseValue(fDOW, tok, day)
		if err != nil {
			return err
		}
		c.dowKind, c.dowDay = dowLast, v
		return nil
	}
	day, nth, _ := strings.Cut(tok, "#")
	if strings.ContainsAny(day, "-/*L") {
		return cronError(fDOW, tok, "use n#k (k-th n-day of the month), e.g. 6#3 for the third Friday")
	}
	v, err := parseValue(fDOW, tok, day)
	if err != nil {
		return err
	}
	k, ok := atoi(nth)
	if !ok || k < 1 || k > 5 {
		return cronError(fDOW, tok, "# needs an occurrence 1-5")
	}
	c.dowKind, c.dowDay, c.dowNth = dowNth, v, k
	return nil
}
