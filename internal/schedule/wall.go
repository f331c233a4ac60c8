package schedule

import "time"

// Schedules are matched in wall-clock time: a civil date and time of day with no zone, coded
// here as a time.Time in UTC. These two functions are the only bridge between wall time and
// instants; they define the DST rules.

// wallOf returns t's wall-clock reading in its own location, coded in UTC.
func wallOf(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, t.Nanosecond(), time.UTC)
}

// resolve maps wall time w in loc to the first instant whose wall-clock reading is at or
// after w. So a wall time that occurs twice (fall-back) maps to its first occurrence, and
// a wall time that does not exist (spring-forward) maps to the end of the gap, the first
// instant after it (03:00 local for 02:30 in Europe/Berlin). The mapping never decreases
// as w grows, which is what makes Next consistent whatever instant it starts from.
func resolve(w time.Time, loc *time.Location) time.Time {
	y, mo, d := w.Date()
	h, mi, s := w.Clock()
	t := time.Date(y, mo, d, h, mi, s, 0, loc)
	tw := wallOf(t)
	switch {
	case tw.Equal(w):
		// w exists; if the zone began by setting clocks back, w may have occurred earlier
		// in the previous zone too.
		start, _ := t.ZoneBounds()
		if start.IsZero() {
			return t
		}
		_, cur := t.Zone()
		_, prev := start.Add(-time.Nanosecond).Zone()
		if prev > cur {
			if c := t.Add(-time.Duration(prev-cur) * time.Second); c.Before(start) && wallOf(c.In(loc)).Equal(w) {
				return c
			}
		}
		return t
	case tw.After(w):
		// w is in a gap and t lies after it: the gap ends where t's zone starts.
		if start, _ := t.ZoneBounds(); !start.IsZero() {
			return start
		}
	default:
		// w is in a gap and t lies before it: the gap starts where t's zone ends.
		if _, end := t.ZoneBounds(); !end.IsZero() {
			return end
		}
	}
	return t
}

// firstWallAfter returns the earliest whole-second wall time w such that every instant
// reading w or later in loc is strictly after `after`: one second past the largest wall
// reading any instant up to `after` has shown. That is usually after's own reading; just
// after clocks were set back it is the reading just before they were.
func firstWallAfter(after time.Time, loc *time.Location) time.Time {
	a := after.In(loc)
	m := wallOf(a)
	if start, _ := a.ZoneBounds(); !start.IsZero() {
		if p := wallOf(start.Add(-time.Nanosecond).In(loc)); p.After(m) {
			m = p
		}
	}
	y, mo, d := m.Date()
	h, mi, s := m.Clock()
	return time.Date(y, mo, d, h, mi, s+1, 0, time.UTC)
}
