package rotation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/connector"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/schedule"
	"github.com/keyturn/keyturn/internal/script"
)

// fakeClock is a settable clock for the scheduler.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func berlin(t *testing.T, s string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// scheduledFixture is a fixture whose engine only schedules when the test calls Tick, on a
// fake clock; its pamUser rotates with no script (a no-op target).
func scheduledFixture(t *testing.T, start time.Time) (*fixture, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: start}
	f := newFixture(t, fixtureOptions{engine: rotation.Options{Now: clock.Now, Tick: -1, HeartbeatInterval: -1}})
	return f, clock
}

func cron(expr string) json.RawMessage {
	js, _ := json.Marshal(map[string]string{"type": "CRON", "cron": expr, "tz": "Europe/Berlin"})
	return js
}

func (f *fixture) tick(ctx context.Context) {
	f.t.Helper()
	if err := f.engine.Tick(ctx); err != nil {
		f.t.Fatal(err)
	}
	f.settle()
}

// settle waits until no run is unfinished.
func (f *fixture) settle() {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		runs, err := f.dv.DB.UnfinishedRuns(context.Background())
		if err != nil {
			f.t.Fatal(err)
		}
		if len(runs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("runs did not finish: %+v", runs)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fired returns the due times of the scheduled runs of a record, oldest first.
func (f *fixture) fired(uid string) []time.Time {
	f.t.Helper()
	runs, _, err := f.engine.List(context.Background(), f.scope, rotation.RunFilter{RecordUID: uid, Count: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []time.Time
	for _, r := range runs {
		if r.Trigger == rotation.TriggerScheduled {
			row, err := f.dv.DB.RunByID(context.Background(), r.ID)
			if err != nil || row.DueAt == nil {
				f.t.Fatalf("run %s: due %v, %v", r.ID, row.DueAt, err)
			}
			out = append(out, row.DueAt.UTC())
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

func (f *fixture) info(uid string) rotation.Info {
	f.t.Helper()
	info, err := f.engine.Info(context.Background(), f.scope, uid)
	if err != nil {
		f.t.Fatal(err)
	}
	return info
}

func TestScheduledRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, clock := scheduledFixture(t, berlin(t, "2027-05-10 02:00:00"))
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, Schedule: cron("0 0 3 * * ?")})
	if next := f.info(f.user).NextRunAt; next == nil || !next.Equal(berlin(t, "2027-05-10 03:00:00")) {
		t.Fatalf("next_run_at %v", next)
	}
	clock.Set(berlin(t, "2027-05-10 02:59:59"))
	f.tick(ctx)
	if got := f.fired(f.user); len(got) != 0 {
		t.Fatalf("fired early: %v", got)
	}
	clock.Set(berlin(t, "2027-05-10 03:00:00"))
	f.tick(ctx)
	got := f.fired(f.user)
	if len(got) != 1 || !got[0].Equal(berlin(t, "2027-05-10 03:00:00")) {
		t.Fatalf("fired %v", got)
	}
	run := f.latestRunOf(f.user)
	if run.Trigger != rotation.TriggerScheduled || run.Status != rotation.StatusSucceeded {
		t.Fatalf("run %+v", run)
	}
	if next := f.info(f.user).NextRunAt; next == nil || !next.Equal(berlin(t, "2027-05-11 03:00:00")) {
		t.Fatalf("next_run_at after firing %v", next)
	}
	events, err := audit.New(f.dv.DB, f.dv.Keys).List(ctx, f.scope.TeamID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events, func(e audit.Event) bool { return e.Type == audit.RotationScheduledOK }) {
		t.Fatalf("no %s event: %+v", audit.RotationScheduledOK, events)
	}
	// Saving the same settings again does not move the schedule.
	clock.Set(berlin(t, "2027-05-10 12:00:00"))
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, Schedule: cron("0 0 3 * * ?")})
	if next := f.info(f.user).NextRunAt; !next.Equal(berlin(t, "2027-05-11 03:00:00")) {
		t.Fatalf("next_run_at moved by an unchanged save: %v", next)
	}
}

func TestMissedOccurrencesAndWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		settings rotation.Settings
		want     int
	}{
		{"run once", rotation.Settings{}, 1},
		{"skip", rotation.Settings{CatchUp: rotation.CatchUpSkip}, 0},
		{"window passed", rotation.Settings{Window: "1h"}, 0},
		{"within window", rotation.Settings{Window: "200h"}, 1},
		{"paused", rotation.Settings{Paused: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, clock := scheduledFixture(t, berlin(t, "2027-05-10 02:00:00"))
			s := tc.settings
			s.Method, s.Schedule = rotation.MethodScriptsOnly, cron("0 0 3 * * ?")
			f.settings(s)
			clock.Set(berlin(t, "2027-05-15 10:00:00")) // five occurrences missed while down
			f.tick(ctx)
			if got := f.fired(f.user); len(got) != tc.want {
				t.Fatalf("fired %v, want %d run(s)", got, tc.want)
			}
			next := f.info(f.user).NextRunAt
			if tc.settings.Paused {
				if next != nil {
					t.Fatalf("a paused schedule has next_run_at %v", next)
				}
				return
			}
			if next == nil || !next.Equal(berlin(t, "2027-05-16 03:00:00")) {
				t.Fatalf("next_run_at %v", next)
			}
		})
	}
}

func TestPauseResumeAndOverride(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, clock := scheduledFixture(t, berlin(t, "2027-05-10 02:00:00"))
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, Schedule: cron("0 0 3 * * ?"), Paused: true})
	if f.info(f.user).NextRunAt != nil {
		t.Fatal("paused, yet scheduled")
	}
	clock.Set(berlin(t, "2027-05-12 12:00:00"))
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, Schedule: cron("0 0 3 * * ?")})
	if next := f.info(f.user).NextRunAt; next == nil || !next.Equal(berlin(t, "2027-05-13 03:00:00")) {
		t.Fatalf("after resume: %v", next)
	}
	at := berlin(t, "2027-05-12 18:30:00")
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, Schedule: cron("0 0 3 * * ?"), NextRunAt: &at})
	if next := f.info(f.user).NextRunAt; next == nil || !next.Equal(at) {
		t.Fatalf("override: %v", next)
	}
	clock.Set(at)
	f.tick(ctx)
	if got := f.fired(f.user); len(got) != 1 || !got[0].Equal(at) {
		t.Fatalf("fired %v", got)
	}
	if next := f.info(f.user).NextRunAt; !next.Equal(berlin(t, "2027-05-13 03:00:00")) {
		t.Fatalf("after the override fired: %v", next)
	}
}

// TestRestartsDoNotChangeFireTimes: for random schedules, a run of the scheduler interrupted by
// restarts at random instants fires at exactly the times an uninterrupted one does.
func TestRestartsDoNotChangeFireTimes(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("KEYTURN_TEST_SEED"), 10, 64); err == nil {
		seed = v // reproduce a failure
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d", seed)
	templates := []func() json.RawMessage{
		func() json.RawMessage { return cron(fmt.Sprintf("0 %d %d * * ?", rng.IntN(60), rng.IntN(24))) },
		func() json.RawMessage { return cron(fmt.Sprintf("0 %d 0/%d * * ?", rng.IntN(60), 1+rng.IntN(6))) },
		func() json.RawMessage { return cron(fmt.Sprintf("0 30 %d ? * MON-FRI", rng.IntN(24))) },
		func() json.RawMessage { return cron("0 30 2 * * ?") }, // in the spring-forward gap
		func() json.RawMessage {
			js, _ := json.Marshal(map[string]any{"type": "DAILY", "time": fmt.Sprintf("%02d:%02d", rng.IntN(24), rng.IntN(60)),
				"intervalCount": 1 + rng.IntN(3), "tz": "Europe/Berlin"})
			return js
		},
		func() json.RawMessage {
			js, _ := json.Marshal(map[string]any{"type": "WEEKLY", "time": "01:30", "weekday": "SUNDAY", "tz": "Europe/Berlin"})
			return js
		},
	}
	// Ten days around the spring-forward transition in Europe/Berlin (2027-03-28).
	start := berlin(t, "2027-03-24 00:00:00")
	end := start.Add(10 * 24 * time.Hour)
	for i := range 6 {
		sched := templates[rng.IntN(len(templates))]()
		restarts := map[int]bool{}
		for range 1 + rng.IntN(8) {
			restarts[rng.IntN(int(end.Sub(start)/(10*time.Minute)))] = true
		}
		t.Run(fmt.Sprintf("%d %s", i, sched), func(t *testing.T) {
			t.Parallel()
			plain := simulate(t, sched, start, end, nil)
			interrupted := simulate(t, sched, start, end, restarts)
			if !slices.EqualFunc(plain, interrupted, time.Time.Equal) {
				t.Fatalf("restarts at steps %v changed the fire times:\nplain       %v\ninterrupted %v", slices.Sorted(mapsKeys(restarts)), plain, interrupted)
			}
			if len(plain) == 0 {
				t.Fatal("the schedule never fired")
			}
			// And they are the schedule's own fire times: none skipped, none twice. The simulated
			// scheduler passes every 10 minutes, and occurrences that fall due before one pass
			// run once, as missed occurrences do (catch_up run_once): an hourly cron at :59 on
			// the spring-forward day is due at 00:59 and, for 02:59 in the gap, at 01:00 UTC,
			// both seen by the pass at 01:00, which runs the first.
			parsed, err := schedule.Load(sched)
			if err != nil {
				t.Fatal(err)
			}
			var want []time.Time
			const pass = 10 * time.Minute
			lastTick := start.Add((end.Sub(start) - 1) / pass * pass)
			seenBy := time.Time{}
			for at, ok := parsed.Next(start, start); ok && !at.After(lastTick); at, ok = parsed.Next(at, start) {
				tick := start.Add((at.Sub(start) + pass - 1) / pass * pass) // the first pass at or after at
				if tick.Equal(seenBy) {
					continue
				}
				seenBy = tick
				want = append(want, at.UTC())
			}
			if !slices.EqualFunc(plain, want, time.Time.Equal) {
				t.Fatalf("fire times differ from the schedule's:\nfired %v\nwant  %v", plain, want)
			}
		})
	}
}

func mapsKeys(m map[int]bool) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// simulate steps a fake clock through [start, end) ten minutes at a time, ticking the scheduler
// at each step, and restarts the engine (a new Engine over the same database) at the given
// steps. It returns the due times of the scheduled runs.
func simulate(t *testing.T, sched json.RawMessage, start, end time.Time, restarts map[int]bool) []time.Time {
	t.Helper()
	ctx := context.Background()
	f, clock := scheduledFixture(t, start)
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, Schedule: sched})
	engine := f.engine
	for step, now := 0, start; now.Before(end); step, now = step+1, now.Add(10*time.Minute) {
		clock.Set(now)
		if restarts[step] {
			stop, cancel := context.WithTimeout(ctx, 5*time.Second)
			engine.Stop(stop)
			cancel()
			engine = rotation.New(f.dv.DB, f.vault, audit.New(f.dv.DB, f.dv.Keys),
				script.NewRunner(script.Options{TempDir: t.TempDir()}), map[string]connector.Connector{},
				rotation.Options{Now: clock.Now, Tick: -1, HeartbeatInterval: -1})
			if err := engine.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				stop, cancel := context.WithTimeout(ctx, 5*time.Second)
				engine.Stop(stop)
				cancel()
			})
		}
		if err := engine.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		f.settle()
	}
	return f.fired(f.user)
}

func TestRunOnceThatFiredDoesNotBlockLaterSaves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, clock := scheduledFixture(t, berlin(t, "2027-05-10 02:00:00"))
	once := json.RawMessage(`{"type":"RUN_ONCE","time":"2027-05-10T03:00:00","tz":"Europe/Berlin"}`)
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, Schedule: once})
	clock.Set(berlin(t, "2027-05-10 03:00:00"))
	f.tick(ctx)
	if got := f.fired(f.user); len(got) != 1 {
		t.Fatalf("fired %v", got)
	}
	if next := f.info(f.user).NextRunAt; next != nil {
		t.Fatalf("a RUN_ONCE that fired is scheduled again at %v", next)
	}
	clock.Set(berlin(t, "2027-05-11 12:00:00"))
	f.settings(rotation.Settings{Method: rotation.MethodScriptsOnly, Schedule: once, Paused: true})
	if _, err := f.engine.SetSettings(ctx, f.scope, f.user, rotation.Settings{Method: rotation.MethodScriptsOnly,
		Schedule: json.RawMessage(`{"type":"RUN_ONCE","time":"2027-05-10T04:00:00","tz":"Europe/Berlin"}`)}); err == nil {
		t.Fatal("a new RUN_ONCE in the past was accepted")
	}
}
