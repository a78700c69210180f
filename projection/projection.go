package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/metric"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/subdefault"
)

// Handler applies one event to a read model. tx is the transaction in which
// the projection's checkpoint advances: what Handle writes through tx
// commits exactly when the checkpoint passes the event, and is rolled back
// with it otherwise. Handle must not commit or roll back tx.
//
// The runner hands a batch of events to one transaction and calls Handle
// once per event, in log order. A returned error rolls the whole batch
// back; the runner then retries the events one per transaction so that
// the error is pinned on one event (see Config.MaxAttempts).
type Handler interface {
	Handle(ctx context.Context, tx pgx.Tx, e eventstore.Event) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	return f(ctx, tx, e)
}

// BatchHandler is a Handler that can also apply a whole batch at once, for
// set-based writes (one multi-row upsert per batch instead of one statement
// per event). When a projection's Handler implements it, the runner calls
// HandleBatch instead of Handle, with the events in log order; after a
// failure it retries the events one at a time through HandleBatch with a
// one-event slice.
type BatchHandler interface {
	Handler
	HandleBatch(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error
}

// ResetFunc clears a projection's read model, in the transaction that moves
// its checkpoint back to the start of the log (TRUNCATE or DELETE its
// tables).
type ResetFunc func(ctx context.Context, tx pgx.Tx) error

// ForgetFunc scrubs one data subject's personal data from a projection's
// read model, in tx (see Projection.Forget).
type ForgetFunc func(ctx context.Context, tx pgx.Tx, subject string) error

// Projection is a named read model built from the global log.
type Projection struct {
	// Name identifies the projection. Required; unique within a Runner.
	Name string
	// Version is the version of the read model's shape. Each version has its
	// own checkpoints (see SubscriptionName), so a new version is built from
	// the start of the log while processes running the old one keep
	// serving it: the zero-downtime rebuild. The handler learns the version
	// it builds from VersionOf(ctx). 0 means 1.
	Version int
	// Handler applies events. Required. It may implement BatchHandler.
	Handler Handler
	// Reset clears the read model for Rebuild and for Reset to the start.
	// Default nil: nothing is cleared, so the handler must then tolerate
	// events it has already applied.
	Reset ResetFunc
	// Forget scrubs a data subject's personal data from the read model
	// (see package shred): Runner.Forget calls it in the transaction that
	// deletes the subject's key. Default nil: the read model keeps what it
	// wrote until a Rebuild, which reads the subject's fields erased.
	Forget ForgetFunc
	// Types keeps only events of these types. Default: all.
	Types []string
	// Categories keeps only events of streams in these categories (the part
	// of the stream ID before the first '-'). Default: all.
	Categories []string
	// Partitions splits the projection by a hash of the stream ID so that
	// several processes work on it at once, each partition with its own
	// checkpoint and lease; each stream stays in order. Changing it needs a
	// Rebuild. Default 1.
	Partitions int
	// OnFailure is what happens to an event the handler still fails on
	// after MaxAttempts: eventstore.Park records it as a dead letter and
	// goes on (later events of its stream are parked behind it);
	// eventstore.Stop stops the projection, leaving its checkpoint before
	// the event. Default eventstore.Park.
	OnFailure eventstore.FailurePolicy
	// BatchSize overrides Config.BatchSize for this projection.
	BatchSize int
	// MaxAttempts overrides Config.MaxAttempts for this projection.
	MaxAttempts int
	// Transient reports errors that say nothing about the event (a service
	// the handler calls is down): they are retried with backoff for as long
	// as it takes and never park the event. Connection errors from Postgres
	// are always treated so. Default nil.
	Transient func(error) bool
}

// SubscriptionName is the name of the eventstore subscription that holds a
// projection's checkpoints, leases and dead letters: "projection:NAME" for
// version 1 (or 0), "projection:NAME@vN" for later versions. Operators see
// these names in the subscription tables.
func SubscriptionName(name string, version int) string {
	if version <= 1 {
		return "projection:" + name
	}
	return "projection:" + name + "@v" + strconv.Itoa(version)
}

type versionKey struct{}

// VersionOf returns the version of the projection whose events ctx is
// handling (in Handle, HandleBatch and Reset), so that one handler can
// write to a table per version. It returns 1 outside a projection.
func VersionOf(ctx context.Context) int {
	if v, ok := ctx.Value(versionKey{}).(int); ok {
		return v
	}
	return 1
}

// Config configures a Runner. The zero value (or nil) means every default.
type Config struct {
	// BatchSize is the most events handled in one transaction. Default:
	// the subscription's (eventstore.SubscriptionConfig.BatchSize, 500).
	BatchSize int
	// MaxAttempts is how many times an event is tried before the
	// projection's OnFailure applies. Default: the subscription's
	// (eventstore.SubscriptionConfig.MaxAttempts, 5).
	MaxAttempts int
	// RetryBackoff is the wait after a handler's first failure; it doubles
	// with each attempt, with jitter, up to MaxRetryBackoff. Default: the
	// subscription's (eventstore.SubscriptionConfig.RetryBackoff, 100ms).
	RetryBackoff time.Duration
	// MaxRetryBackoff caps the wait between attempts, and between restarts
	// of a projection whose database connection keeps failing. Default: the
	// subscription's (eventstore.SubscriptionConfig.MaxRetryBackoff, 30s).
	MaxRetryBackoff time.Duration
	// LeaseTTL is how long a process owns a projection partition without
	// renewing its lease: another process takes over a dead owner's
	// partitions after at most this long. Default: the subscription's
	// (eventstore.SubscriptionConfig.LeaseTTL, 5s).
	LeaseTTL time.Duration
	// PollInterval is the longest a projection waits between reads of an
	// idle log when no notification arrives (notifications wake it at once).
	// Default: the subscription's (eventstore.SubscriptionConfig.PollInterval,
	// 1s).
	PollInterval time.Duration
	// Owner names this process in leases and Status. Default
	// "HOSTNAME:PID:RANDOM", different for each projection.
	Owner string
	// HorizonAge is how old the oldest open transaction on the server must
	// be for Status to report it as holding the projections back. Default 1s.
	HorizonAge time.Duration
	// Metrics receives measurements. Default: none. OpenTelemetry metrics
	// (events, batch duration, lag, errors and dead letters of each
	// projection's subscription) are recorded whether or not it is set.
	Metrics Metrics
	// Logger receives warnings. Default: the store's logger.
	Logger *slog.Logger
	// MeterProvider makes the OpenTelemetry metrics of the projections'
	// subscriptions (see package telemetry). Default: the store's
	// (eventstore.Config.MeterProvider).
	MeterProvider metric.MeterProvider
	// HealthMaxLag is how many events behind the log a projection may be
	// before Check reports it Lagging. Default 10,000.
	HealthMaxLag int64
	// HealthMaxLagTime is how old its oldest unhandled event may be before
	// Check reports it Lagging. Default 30s.
	HealthMaxLagTime time.Duration
	// HealthMaxHorizonAge is how long an open transaction may hold the
	// projection's reader back (eventstore.Store.Horizon, as this role
	// sees it) before Check reports it Failing rather than Lagging: past
	// it, someone must end that transaction. Default 5m.
	HealthMaxHorizonAge time.Duration
}

// Metrics are hooks for measurements; each nil hook is skipped. They are
// called from the projections' goroutines and must be quick.
type Metrics struct {
	// Batch is called after each committed transaction of a projection.
	Batch func(BatchMetrics)
	// Error is called for each failed attempt of a handler.
	Error func(projection string, err error)
}

// BatchMetrics describes one committed transaction of a projection.
type BatchMetrics struct {
	// Projection is the projection's name.
	Projection string
	// Partition is the partition the batch belongs to.
	Partition int
	// Events is how many events were handled.
	Events int
	// Parked is how many events went to the dead letters.
	Parked int
	// Duration is the time from reading the batch to its commit.
	Duration time.Duration
	// Lag is how long before the commit the batch's last event was
	// recorded (zero when it handled no event).
	Lag time.Duration
}

func (c *Config) withDefaults() Config {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	// The runner reads these three itself (the restart loop, Rebuild's
	// batches); the other subscription fields stay zero, which the
	// subscription reads as its default.
	subdefault.Or(&cfg.BatchSize, subdefault.BatchSize)
	subdefault.Or(&cfg.RetryBackoff, subdefault.RetryBackoff)
	subdefault.Or(&cfg.MaxRetryBackoff, subdefault.MaxRetryBackoff)
	subdefault.Or(&cfg.HorizonAge, time.Second)
	subdefault.Or(&cfg.HealthMaxLag, 10_000)
	subdefault.Or(&cfg.HealthMaxHorizonAge, 5*time.Minute)
	subdefault.Or(&cfg.HealthMaxLagTime, 30*time.Second)
	return cfg
}

// ErrUnknownProjection is returned for a name the Runner was not given.
var ErrUnknownProjection = errors.New("projection: unknown projection")

// validate checks the projections given to NewRunner.
func validate(ps []Projection) error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range ps {
		switch {
		case p.Name == "":
			errs = append(errs, fmt.Errorf("projection %d: needs a name", i))
		case seen[p.Name]:
			errs = append(errs, fmt.Errorf("projection %q: given twice", p.Name))
		}
		seen[p.Name] = true
		if p.Handler == nil {
			errs = append(errs, fmt.Errorf("projection %q: needs a handler", p.Name))
		}
		if p.Version < 0 || p.Partitions < 0 || p.BatchSize < 0 || p.MaxAttempts < 0 {
			errs = append(errs, fmt.Errorf("projection %q: negative Version, Partitions, BatchSize or MaxAttempts", p.Name))
		}
	}
	return errors.Join(errs...)
}
