package eventstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/metric"

	"github.com/strata-go/strata/internal/failure"
	"github.com/strata-go/strata/internal/instrument"
	"github.com/strata-go/strata/internal/subdefault"
)

// Handler handles a batch of events of one subscription partition, in log
// order, inside tx. The subscription advances its checkpoint in the same
// tx and commits it after Handler returns nil, so what Handler writes
// through tx commits exactly when the checkpoint does (exactly-once effects
// for Postgres read models). Handler may also ignore tx and have effects
// elsewhere (publishing to a broker): those are at-least-once, since a
// crash after the effect and before the commit repeats the batch.
//
// The transaction begins when Handler first uses tx; tx.Commit and
// tx.Rollback return an error (the subscription ends the transaction;
// return an error to roll it back), and tx.Begin gives a savepoint as
// usual. A batch Handler writes nothing for through tx costs no
// transaction: while catching up in batches of 64 events or more, its
// checkpoint is stored with a later batch's (within 100ms, and as soon as
// the subscription has caught up),
// so a crash may hand such batches to Handler again — which changes
// nothing in the database, and repeats effects Handler had elsewhere, as
// any crash before a commit does.
//
// With SubscriptionConfig.HandleOutsideTx, tx is nil and Handler runs before
// the checkpoint's transaction begins.
//
// A returned error rolls tx back; the subscription then handles the batch's
// events one at a time, retrying the failing one (see SubscriptionConfig).
// A panic is such an error (a *PanicError, logged with its stack).
type Handler func(ctx context.Context, tx pgx.Tx, events []Event) error

// FailurePolicy says what a subscription does with an event its handler
// still fails on after MaxAttempts.
type FailurePolicy int

const (
	// Park records the event as a dead letter and goes on. Later events of
	// the same stream are parked behind it, so a stream's order is never
	// broken, while other streams go on. Parked events run again, in order,
	// after RetryDeadLetters.
	Park FailurePolicy = iota
	// Stop makes Run return the error (a *HandlerError), leaving the
	// checkpoint before the event.
	Stop
)

// SubscriptionConfig configures a Subscription. Name is required; every
// other field has a default.
type SubscriptionConfig struct {
	// Name identifies the subscription: its checkpoints, leases and dead
	// letters are kept under it. Required.
	Name string
	// Categories and Types filter the events handed to the handler; empty
	// means all. They are recorded with the checkpoints so that Status can
	// compute the lag.
	Categories []string
	// Types keeps only events of these types; empty means all.
	Types []string
	// Partitions splits the log by a hash of the stream ID so that several
	// processes can work on the subscription at once, each partition owned
	// by one process and handled in order. Default 1. Changing it for an
	// existing subscription needs a reset (ResetSubscription).
	Partitions int
	// BatchSize is the most events handed to the handler at once. Default 500.
	BatchSize int
	// MaxAttempts is how many times an event is tried before FailurePolicy
	// applies. Default 5.
	MaxAttempts int
	// RetryBackoff is the wait after the first failure; it doubles with
	// each attempt, with ±20% jitter, up to MaxRetryBackoff. Default 100ms.
	RetryBackoff time.Duration
	// MaxRetryBackoff caps the wait between attempts. Default 30s.
	MaxRetryBackoff time.Duration
	// OnFailure is what happens after MaxAttempts. Default Park.
	OnFailure FailurePolicy
	// Transient reports errors that say nothing about the event (a broker
	// that is down, say): attempts failing with them are retried with
	// backoff for as long as it takes and are not counted toward
	// MaxAttempts. Default nil: every error counts.
	Transient func(error) bool
	// LeaseTTL is how long a partition's lease lasts without renewal; a
	// process that dies loses its partitions to another after at most this
	// long. Leases are renewed every LeaseTTL/3; between renewals each
	// process looks LeaseTTL/20 apart (one small statement) whether a
	// process joined or left or a lease expired, and rebalances at once
	// if so. Default 5s.
	LeaseTTL time.Duration
	// PollInterval is the longest a subscription waits between reads of an
	// idle log when no notification arrives. After activity it polls much
	// sooner (2ms, doubling up to PollInterval), which also catches appends
	// whose notification was coalesced away. Default 1s.
	PollInterval time.Duration
	// Owner names this process in leases and Status. Default
	// "HOSTNAME:PID:RANDOM".
	Owner string
	// StopWhenCaughtUp makes Run return nil once every partition has read
	// to the end of the readable log (for rebuilds and one-off catch-ups).
	// Run must then own all partitions: it waits for their leases.
	StopWhenCaughtUp bool
	// StopAt, when set, makes Run return nil once every partition has
	// handled every event at or before this position that it selects —
	// whoever handled it: partitions leased by other processes count when
	// their checkpoints show it. Unlike StopWhenCaughtUp, Run takes only its
	// fair share of the partitions, and an open transaction that holds the
	// readable end of the log before the position makes Run wait for it.
	// Rebuilds stop at the log's head this way (see Store.Head).
	StopAt Position
	// HandleOutsideTx calls the handler with a nil tx, before the
	// transaction that advances the checkpoint begins, so that no
	// connection is held and no transaction is open while it runs. For
	// handlers whose effects are not in Postgres (a broker, a consumer on
	// a channel) and may take long: their effects are at-least-once either
	// way. Once the handler has returned nil, the checkpoint is committed
	// even if Run's ctx ends meanwhile, so a clean stop does not repeat the
	// batch. Default false: the handler runs inside the checkpoint's tx.
	HandleOutsideTx bool
	// Sealed hands the handler the events as stored, their personal fields
	// still sealed (see Config.Opener): for handlers that copy events
	// elsewhere whole, such as the outbox relay, so that the copies stay
	// ciphertext and are shredded with the key. Default false: the events
	// are opened inside the handler's transaction, their keys locked
	// (FOR SHARE) until it commits, so a forget waits for the batch.
	Sealed bool
	// OnBatch, if set, is called after each committed batch (for metrics
	// and progress), including the transaction that parks an event the
	// handler kept failing on (Events 0, Parked 1). It must be quick.
	OnBatch func(BatchInfo)
	// Logger receives warnings about failures and lost leases. Default: the
	// store's logger.
	Logger *slog.Logger
	// MeterProvider makes the subscription's metrics (events, batch
	// duration, lag, errors, dead letters; names in package telemetry).
	// Default: the store's (Config.MeterProvider).
	MeterProvider metric.MeterProvider
	// Breaker configures the circuit breaker that pauses every partition
	// of this process while the handler's downstream is unavailable (see
	// BreakerConfig). Default: on, 5 failures, open for 5s.
	Breaker BreakerConfig
}

// MaxPartitions is the most partitions a subscription may have.
const MaxPartitions = 1024

// BatchInfo describes a committed batch, for SubscriptionConfig.OnBatch.
type BatchInfo struct {
	// Subscription and Partition say whose batch it was.
	Subscription string
	// Partition is the batch's partition.
	Partition int
	// Events is how many events were handled (parked ones excluded),
	// counting those of earlier batches whose checkpoint this commit
	// stored (see SubscriptionConfig.Handler on batches without writes).
	Events int
	// Parked is how many events went to the dead letters.
	Parked int
	// Last is the checkpoint after the batch.
	Last Position
	// LastRecordedAt is when the batch's last event was recorded.
	LastRecordedAt time.Time
	// Duration is the time from reading the batch to its commit.
	Duration time.Duration
}

// HandlerError is what Run returns under the Stop policy: the handler kept
// failing on Event.
type HandlerError struct {
	// Subscription is the subscription's name.
	Subscription string
	// Event is the event the handler failed on.
	Event Event
	// Attempts is how many times it was tried.
	Attempts int
	// Err is the handler's last error.
	Err error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("eventstore: subscription %q: handler failed %d times on event %s (%s v%d of %q): %v",
		e.Subscription, e.Attempts, e.Event.ID, e.Event.Type, e.Event.Version, e.Event.StreamID, e.Err)
}

func (e *HandlerError) Unwrap() error { return e.Err }

// ErrPartitionsChanged is returned by Run when the subscription exists with
// another number of partitions.
var ErrPartitionsChanged = errors.New("eventstore: subscription partition count changed")

// errFenced means a checkpoint update matched no row: the lease was lost or
// the checkpoint was reset under us.
var errFenced = errors.New("eventstore: checkpoint fenced")

// Subscription reads the global log for one named consumer — a projection,
// a relay, a Pub/Sub consumer group — with checkpoints, leases and wake-ups.
// Create it with Store.Subscription and start it with Run.
type Subscription struct {
	store *Store
	cfg   SubscriptionConfig
	log   *slog.Logger
	sql   subscriptionQueries
	tel   subscriptionTelemetry
	brk   *breaker // nil when disabled
}

// Subscription returns a subscription of the store's log. It does not
// touch the database until Run.
func (s *Store) Subscription(cfg SubscriptionConfig) (*Subscription, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	log := cfg.Logger
	if log == nil {
		log = s.cfg.Logger
	}
	log = log.With("subscription", cfg.Name)
	safeHooks(&cfg, log)
	tel := subscriptionTelemetry{in: s.tel.in}
	if cfg.MeterProvider != nil {
		tel.in = instrument.New(cfg.MeterProvider)
	}
	sub := &Subscription{store: s, cfg: cfg, log: log, sql: buildSubscriptionQueries(s.sql.expand), tel: tel}
	sub.brk = newBreaker(sub)
	return sub, nil
}

// setDefaults fills in the fields left at their zero value (see each
// field's doc comment).
func (cfg *SubscriptionConfig) setDefaults() {
	subdefault.Or(&cfg.Partitions, subdefault.Partitions)
	subdefault.Or(&cfg.BatchSize, subdefault.BatchSize)
	subdefault.Or(&cfg.MaxAttempts, subdefault.MaxAttempts)
	subdefault.Or(&cfg.RetryBackoff, subdefault.RetryBackoff)
	subdefault.Or(&cfg.MaxRetryBackoff, subdefault.MaxRetryBackoff)
	subdefault.Or(&cfg.LeaseTTL, subdefault.LeaseTTL)
	subdefault.Or(&cfg.PollInterval, subdefault.PollInterval)
	if cfg.Owner == "" {
		cfg.Owner = defaultOwner()
	}
	if cfg.Categories == nil {
		cfg.Categories = []string{}
	}
	if cfg.Types == nil {
		cfg.Types = []string{}
	}
}

// check refuses a configuration no subscription can run with.
func (cfg *SubscriptionConfig) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: subscription %q: %s", ErrInvalidArgument, cfg.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case cfg.Name == "":
		return bad("needs a name")
	case !validText(cfg.Name) || len(cfg.Name) > MaxStreamIDLength:
		return bad("name is not valid text of at most %d bytes", MaxStreamIDLength)
	case !validText(cfg.Owner):
		return bad("owner %q is not valid UTF-8 or contains a NUL byte", cfg.Owner)
	case cfg.Partitions > MaxPartitions:
		return bad("%d partitions, more than %d", cfg.Partitions, MaxPartitions)
	case cfg.LeaseTTL > 0 && cfg.LeaseTTL < time.Millisecond:
		return bad("lease TTL %s is shorter than 1ms", cfg.LeaseTTL)
	case cfg.StopWhenCaughtUp && !cfg.StopAt.IsZero():
		return bad("StopWhenCaughtUp and StopAt are set together; choose one")
	}
	if err := checkPosition("subscription "+strconv.Quote(cfg.Name)+": StopAt", cfg.StopAt); err != nil {
		return err
	}
	for _, c := range cfg.Categories {
		if !validText(c) {
			return bad("category %q is not valid UTF-8 or contains a NUL byte", c)
		}
	}
	for _, t := range cfg.Types {
		if !validText(t) {
			return bad("type %q is not valid UTF-8 or contains a NUL byte", t)
		}
	}
	return nil
}

func defaultOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Name returns the subscription's name.
func (sub *Subscription) Name() string { return sub.cfg.Name }

// Owner returns the name this process uses in the subscription's leases.
func (sub *Subscription) Owner() string { return sub.cfg.Owner }

// Register creates the subscription's partition rows (checkpoints at the
// start of the log) if they do not exist yet, so that admin operations such
// as ResetSubscription can address a subscription before its first Run.
// Run registers by itself; calling Register is never required.
func (sub *Subscription) Register(ctx context.Context) error { return sub.register(ctx) }

// Run handles the subscription's events with h until ctx is done (or,
// with StopWhenCaughtUp or StopAt, until caught up). It takes a fair share of the
// partitions (all of them when it runs alone), follows the log live, takes
// over partitions whose owner stopped renewing its lease, and returns after
// finishing or abandoning its current batches. Run returns nil when ctx
// ends; a *HandlerError under the Stop policy; an error when it cannot
// register the subscription at start-up (ErrPartitionsChanged, or the
// database's error: one matching ErrAuth when it refused the connection's
// credentials or TLS). Later database failures are logged and retried.
func (sub *Subscription) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return errors.New("eventstore: subscription needs a handler")
	}
	if err := sub.register(ctx); err != nil {
		return failure.Auth(err, nil)
	}
	// The wake-up listener stays up for the whole Run, across the
	// restarts of partition workers.
	defer sub.store.holdListener(ctx)()
	if reg, err := sub.registerLag(); err != nil {
		sub.log.Warn("strata: could not register the lag gauges", "err", err)
	} else {
		defer func() {
			if err := reg.Unregister(); err != nil {
				sub.log.Warn("strata: could not unregister the lag gauges", "err", err)
			}
		}()
	}
	// The coordinator and its workers live on Run's own ctx: Run may
	// return (caught up, a handler error) while the caller's ctx goes on.
	ctx, cancel := context.WithCancelCause(ctx)
	if sub.brk != nil {
		defer sub.brk.registerGauge()()
	}
	c := newCoordinator(sub, sub.brk.wrap(sub.opening(sub.recovering(h))), cancel)
	defer c.stop(ctx)
	return c.run(ctx)
}

// subscriptionQueries holds the subscription's SQL with the schema filled
// in, each group in the file of its concern.
type subscriptionQueries struct {
	leaseQueries
	workerQueries
	deadLetterQueries
}

func buildSubscriptionQueries(r *strings.Replacer) subscriptionQueries {
	return subscriptionQueries{buildLeaseQueries(r), buildWorkerQueries(r), buildDeadLetterQueries(r)}
}
