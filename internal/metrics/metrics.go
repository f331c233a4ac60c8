// Package metrics exposes keyturn's Prometheus metrics: rotations by outcome, scheduling lag,
// drift found by heartbeats, waits for targets' rate limits, panics the rotation engine recovered
// from, audit export by sink, HTTP requests by route, and the Go runtime. Labels stay bounded:
// trigger, status, connector and sink names and route patterns, never record ids.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds keyturn's collectors in a registry of its own.
type Metrics struct {
	reg       *prometheus.Registry
	rotations *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	lag       prometheus.Histogram
	drift     prometheus.Counter
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	throttled *prometheus.CounterVec
	throttle  *prometheus.CounterVec
	exported  *prometheus.CounterVec
	sinkFails *prometheus.CounterVec
	panics    *prometheus.CounterVec
}

// New returns the metrics with the Go and process collectors registered.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyturn_rotations_total", Help: "Rotation runs that ended, by trigger and status.",
		}, []string{"trigger", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keyturn_rotation_duration_seconds", Help: "Time from a run's start to its end, by status.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 10),
		}, []string{"status"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "keyturn_scheduler_lag_seconds", Help: "Time from a scheduled occurrence to its run being queued.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}),
		drift: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyturn_heartbeat_drift_total", Help: "Credentials a heartbeat found changed behind keyturn's back.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyturn_http_requests_total", Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keyturn_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyturn_target_throttled_total", Help: "Connector operations that waited for their target's rate limit, by connector.",
		}, []string{"connector"}),
		throttle: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyturn_target_throttle_seconds_total", Help: "Time connector operations waited for their target's rate limit, by connector.",
		}, []string{"connector"}),
		exported: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyturn_audit_sink_events_total", Help: "Audit events an audit sink acknowledged, by sink.",
		}, []string{"sink"}),
		sinkFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyturn_audit_sink_failures_total", Help: "Failed sends to an audit sink (sent again later), by sink.",
		}, []string{"sink"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyturn_rotation_panics_total", Help: "Panics the rotation engine recovered from, by where (run, heartbeat, scheduler, sweep).",
		}, []string{"where"}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.rotations, m.duration, m.lag, m.drift, m.requests, m.latency, m.throttled, m.throttle, m.exported, m.sinkFails, m.panics)
	return m
}

// ObserveWriter exports the database writer's counters, read from stats at each scrape.
func (m *Metrics) ObserveWriter(stats func() (batches, transactions int64, busy time.Duration)) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keyturn_store_commits_total", Help: "Group commits of the database writer (one fsync each).",
		}, func() float64 { b, _, _ := stats(); return float64(b) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keyturn_store_transactions_total", Help: "Write transactions the database writer ran.",
		}, func() float64 { _, t, _ := stats(); return float64(t) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keyturn_store_writer_busy_seconds_total", Help: "Time the single database writer spent writing; its rate near 1 means it is saturated.",
		}, func() float64 { _, _, d := stats(); return d.Seconds() }),
	)
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// RunEnded counts a finished rotation run.
func (m *Metrics) RunEnded(trigger, status string, took time.Duration) {
	m.rotations.WithLabelValues(trigger, status).Inc()
	if took > 0 {
		m.duration.WithLabelValues(status).Observe(took.Seconds())
	}
}

// Scheduled records how late the scheduler queued an occurrence.
func (m *Metrics) Scheduled(lag time.Duration) { m.lag.Observe(max(lag, 0).Seconds()) }

// Drifted counts a drift found by a heartbeat.
func (m *Metrics) Drifted() { m.drift.Inc() }

// Throttled records a connector operation held back by its target's rate limit.
func (m *Metrics) Throttled(connector string, wait time.Duration) {
	m.throttled.WithLabelValues(connector).Inc()
	m.throttle.WithLabelValues(connector).Add(wait.Seconds())
}

// Panicked counts a panic the rotation engine recovered from.
func (m *Metrics) Panicked(where string) { m.panics.WithLabelValues(where).Inc() }

// Delivered counts events an audit sink acknowledged.
func (m *Metrics) Delivered(sink string, events int) {
	m.exported.WithLabelValues(sink).Add(float64(events))
}

// SinkFailed counts a failed send to an audit sink.
func (m *Metrics) SinkFailed(sink string) { m.sinkFails.WithLabelValues(sink).Inc() }

// Request records one HTTP request to a route pattern.
func (m *Metrics) Request(route string, code int, took time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(took.Seconds())
}
