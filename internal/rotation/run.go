package rotation

import (
	"time"

	"github.com/keyturn/keyturn/internal/script"
)

// Run statuses.
const (
	StatusQueued         = "queued"
	StatusRunning        = "running"
	StatusSucceeded      = "succeeded"
	StatusFailed         = "failed"
	StatusNeedsAttention = "needs_attention"
)

// Statuses lists every run status, for filters.
var Statuses = []string{StatusQueued, StatusRunning, StatusSucceeded, StatusFailed, StatusNeedsAttention}

// Triggers.
const (
	TriggerOnDemand  = "on_demand"
	TriggerScheduled = "scheduled"
	TriggerRecovery  = "recovery"
)

// RunError is why a run failed.
type RunError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Run is a rotation run as the API shows it.
type Run struct {
	ID         string          `json:"id"`
	RecordUID  string          `json:"record_uid"`
	Trigger    string          `json:"trigger"`
	Status     string          `json:"status"`
	State      string          `json:"state"` // a State
	Attempt    int64           `json:"attempt"`
	Error      *RunError       `json:"error"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
	ExecLog    []script.Result `json:"exec_log"`
	// States is the run's timeline: each state it committed, and when (read one run at a
	// time; lists leave it out).
	States []StateAt `json:"states,omitempty"`
}

// StateAt is a state a run committed, and when.
type StateAt struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

// Terminal reports whether the run has ended.
func (r Run) Terminal() bool {
	return r.Status == StatusSucceeded || r.Status == StatusFailed || r.Status == StatusNeedsAttention
}
