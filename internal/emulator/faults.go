package emulator

import (
	"bytes"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// Faults injects failures for reliability tests. Rates are probabilities in [0, 1] drawn
// independently for each matching request, in the order 500, timeout, 429, reset.
type Faults struct {
	Error500Rate  float64 // answer 500 E0000009 without doing anything
	TimeoutRate   float64 // hang (see TimeoutDelay)
	RateLimitRate float64 // answer 429 E0000047 (OPA: 429 with X-RateLimit-Retry-At)
	ResetRate     float64 // hijack the connection and close it with a TCP reset, no response

	// TimeoutDelay is how long a timed-out request hangs: 0 hangs until the client gives up
	// (or Close is called). If the client is still waiting afterwards, it is served normally.
	TimeoutDelay time.Duration
	// AfterApply makes timeouts and resets happen after the request has been applied: the
	// state changes but the response is lost (a password changed that the caller never hears of).
	AfterApply bool

	Latency       time.Duration // added to every matching request
	LatencyJitter time.Duration // plus a uniformly random part up to this

	// Match selects the requests faults apply to; nil means every request.
	Match func(r *http.Request) bool
	// Seed makes the draws reproducible when non-zero.
	Seed uint64
}

// Fault kinds, as counted in Stats.Faults.
const (
	Fault500     = "500"
	FaultTimeout = "timeout"
	Fault429     = "429"
	FaultReset   = "reset"
)

type faultState struct {
	mu  sync.Mutex
	f   Faults
	rng *rand.Rand
}

func (s *faultState) set(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f = f
	seed := f.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// draw decides the fault for r ("" for none) and the added latency.
func (s *faultState) draw(r *http.Request) (kind string, latency time.Duration, f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f = s.f
	if f.Match != nil && !f.Match(r) {
		return "", 0, f
	}
	latency = f.Latency
	if f.LatencyJitter > 0 {
		latency += time.Duration(s.rng.Int64N(int64(f.LatencyJitter)))
	}
	if f.Error500Rate == 0 && f.TimeoutRate == 0 && f.RateLimitRate == 0 && f.ResetRate == 0 {
		return "", latency, f
	}
	x := s.rng.Float64()
	for _, c := range []struct {
		rate float64
		kind string
	}{{f.Error500Rate, Fault500}, {f.TimeoutRate, FaultTimeout}, {f.RateLimitRate, Fault429}, {f.ResetRate, FaultReset}} {
		if x < c.rate {
			return c.kind, latency, f
		}
		x -= c.rate
	}
	return "", latency, f
}

// resetConnection hijacks the connection and closes it with SO_LINGER 0, so the client sees
// a TCP reset; where hijacking is impossible (HTTP/2) the handler aborts the stream.
func resetConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// bufferedResponse records a response to send later (or never).
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newBufferedResponse(h http.Header) *bufferedResponse {
	return &bufferedResponse{header: h.Clone()}
}

// Header implements http.ResponseWriter.
func (b *bufferedResponse) Header() http.Header { return b.header }

// Write implements http.ResponseWriter.
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// WriteHeader implements http.ResponseWriter.
func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) flush(w http.ResponseWriter) {
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	for k, v := range b.header {
		h[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}

// Stats are the emulator's counters since New or the last ResetStats.
type Stats struct {
	// Requests counts requests by endpoint, named "METHOD /path/{param}" as in the Endpoint
	// constants ("unknown" for paths the emulator does not serve).
	Requests map[string]int64
	// RateLimited counts 429 responses by endpoint (limits and injected faults).
	RateLimited map[string]int64
	// Sent429 is the total of RateLimited.
	Sent429 int64
	// WindowPeak is, by bucket, the most requests one rate-limit window counted, up to the
	// limit: a peak at or near the limit means a caller ran into it.
	WindowPeak map[string]int
	// Faults counts injected faults by kind (Fault500, FaultTimeout, Fault429, FaultReset).
	Faults map[string]int64
	// PasswordChanges counts passwords changed through the API (change_password and admin set).
	PasswordChanges int64
	// AuthnFailures counts /api/v1/authn requests answered 401.
	AuthnFailures int64
}

type statsState struct {
	mu sync.Mutex
	s  Stats
}

func newStats() Stats {
	return Stats{Requests: map[string]int64{}, RateLimited: map[string]int64{}, Faults: map[string]int64{}, WindowPeak: map[string]int{}}
}

func (st *statsState) update(f func(s *Stats)) {
	st.mu.Lock()
	f(&st.s)
	st.mu.Unlock()
}

func (st *statsState) snapshot() Stats {
	st.mu.Lock()
	defer st.mu.Unlock()
	c := newStats()
	for k, v := range st.s.Requests {
		c.Requests[k] = v
	}
	for k, v := range st.s.RateLimited {
		c.RateLimited[k] = v
	}
	for k, v := range st.s.Faults {
		c.Faults[k] = v
	}
	maps.Copy(c.WindowPeak, st.s.WindowPeak)
	c.Sent429, c.PasswordChanges, c.AuthnFailures = st.s.Sent429, st.s.PasswordChanges, st.s.AuthnFailures
	return c
}
