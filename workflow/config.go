package workflow

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Clock tells the time and waits. The deadline worker asks it when
// deadlines are due and sleeps on it until the next one; tests give a
// clock they move by hand (workflowtest.Clock) so that a 15-minute
// deadline fires in a millisecond.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// systemClock is the wall clock.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config configures a Runner. The zero value (or nil) means every
// default.
type Config struct {
	// Clock is the time of reactions (Input.Time) and of the deadline
	// worker. Default: the wall clock.
	Clock Clock
	// Workers is how many reaction workers this process runs: each takes
	// one instance at a time (under the instance's lock, so no instance
	// has two reactions at once, across all processes) and reacts to its
	// queued inputs in log order. Default 4.
	Workers int
	// BatchSize is the most events the router reads at once, and the most
	// inputs of one instance reacted to in one transaction. Default 100.
	BatchSize int
	// MaxAttempts is how many times an input is tried before it is
	// parked. Default 5.
	MaxAttempts int
	// RetryBackoff is the wait after the first failure of an input,
	// doubling up to MaxRetryBackoff. Default 100ms.
	RetryBackoff time.Duration
	// MaxRetryBackoff caps the wait between attempts. Default 30s.
	MaxRetryBackoff time.Duration
	// LeaseTTL is how long a process owns the router's lease without
	// renewing it: when the process dies, another takes over routing after
	// at most this long. Default 5s.
	LeaseTTL time.Duration
	// PollInterval is the longest the router, the reaction workers and
	// the deadline worker wait without a notification before they look
	// again. Default 1s for the router, 10s for the workers.
	PollInterval time.Duration
	// Owner names this process in the subscription's leases. Default
	// "HOSTNAME:PID:RANDOM".
	Owner string
	// NoDeadlines turns the deadline worker off in this process (Run then
	// only reacts to events). Default false.
	NoDeadlines bool
	// NoEvents turns the router and the reactions to events off in this
	// process (Run then only fires deadlines). Default false.
	NoEvents bool
	// OnReaction, if set, is called after each committed reaction (for
	// metrics and tests). It must be quick.
	OnReaction func(Reaction)
	// Logger receives warnings. Default: the store's logger.
	Logger *slog.Logger
	// MeterProvider makes the workflow's metrics. Default: the store's.
	MeterProvider metric.MeterProvider
	// TracerProvider makes the spans of reactions. Default: the store's.
	TracerProvider trace.TracerProvider
}

// Reaction describes one committed reaction, for Config.OnReaction.
type Reaction struct {
	// Workflow and Key name the instance.
	Workflow string
	// Key is the instance's key.
	Key string
	// Input identifies the input: the event's ID, or "deadline:NAME:…"
	// for a fired deadline.
	Input string
	// InputType is the event's type, or "deadline".
	InputType string
	// Deadline is the fired deadline, nil for an event.
	Deadline *Fired
	// Events, Sent, Scheduled and Cancelled count what the decision did.
	Events, Sent, Scheduled, Cancelled int
	// Finished says whether the decision finished the instance.
	Finished bool
	// Skipped says the input changed nothing: the instance had finished,
	// or the input had been reacted to already.
	Skipped bool
	// FiredAt is the clock's time when a deadline's reaction committed.
	FiredAt time.Time
}

const (
	defaultBatchSize        = 100
	defaultDeadlinePoll     = 10 * time.Second
	defaultDeadlineAttempts = 5
)

func (c *Config) withDefaults() Config {
	var out Config
	if c != nil {
		out = *c
	}
	if out.Clock == nil {
		out.Clock = systemClock{}
	}
	if out.Workers <= 0 {
		out.Workers = 4
	}
	if out.BatchSize <= 0 {
		out.BatchSize = defaultBatchSize
	}
	if out.MaxAttempts <= 0 {
		out.MaxAttempts = defaultDeadlineAttempts
	}
	if out.RetryBackoff <= 0 {
		out.RetryBackoff = 100 * time.Millisecond
	}
	if out.MaxRetryBackoff <= 0 {
		out.MaxRetryBackoff = 30 * time.Second
	}
	return out
}
