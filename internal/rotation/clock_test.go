package rotation

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// ManualClock is a Clock whose time moves only when the test advances it, so a test steps
// through a rate-limit window instead of sleeping through it. It is declared in a test file
// of the package, so that the package's own tests and its external tests can both use it.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

type manualTimer struct {
	at   time.Time
	f    func()
	done bool // fired or stopped
}

// NewManualClock returns a ManualClock standing at a fixed instant.
func NewManualClock() *ManualClock {
	return &ManualClock{now: time.Date(2027, 5, 10, 12, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc calls f once the clock has been advanced by d (at once, in another goroutine,
// when d <= 0).
func (c *ManualClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := &manualTimer{at: c.now.Add(d), f: f}
	if d <= 0 { // due now; AfterFunc's caller may hold locks f takes
		tm.done = true
		go f()
	} else {
		c.timers = append(c.timers, tm)
	}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		stopped := !tm.done
		tm.done = true
		return stopped
	}
}

// Advance moves the time forward by d, calling the timers that fall due in their order, each
// at its own instant.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		c.timers = slices.DeleteFunc(c.timers, func(tm *manualTimer) bool { return tm.done })
		var next *manualTimer
		for _, tm := range c.timers {
			if !tm.at.After(end) && (next == nil || tm.at.Before(next.at)) {
				next = tm
			}
		}
		if next == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		next.done = true
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
}

// Drive advances the clock by step every pause of real time until the test ends or the
// returned function is called.
func (c *ManualClock) Drive(t testing.TB, step, pause time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(pause)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				c.Advance(step)
			}
		}
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}
