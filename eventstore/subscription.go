package eventstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/metric"

	"github.com/strata-go/strata/telemetry"
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
	// long. Leases are renewed every LeaseTTL/3. Default 5s.
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
	// HandleOutsideTx calls the handler with a nil tx, before the
	// transaction that advances the checkpoint begins, so that no
	// connection is held and no transaction is open while it runs. For
	// handlers whose effects are not in Postgres (a broker, a consumer on
	// a channel) and may take long: their effects are at-least-once either
	// way. Once the handler has returned nil, the checkpoint is committed
	// even if Run's ctx ends meanwhile, so a clean stop does not repeat the
	// batch. Default false: the handler runs inside the checkpoint's tx.
	HandleOutsideTx bool
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
}

// Subscription returns a subscription of the store's log. It does not
// touch the database until Run.
func (s *Store) Subscription(cfg SubscriptionConfig) (*Subscription, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = 100 * time.Millisecond
	}
	if cfg.MaxRetryBackoff <= 0 {
		cfg.MaxRetryBackoff = 30 * time.Second
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Owner == "" {
		cfg.Owner = defaultOwner()
	}
	if cfg.Categories == nil {
		cfg.Categories = []string{}
	}
	if cfg.Types == nil {
		cfg.Types = []string{}
	}
	log := cfg.Logger
	if log == nil {
		log = s.cfg.Logger
	}
	log = log.With("subscription", cfg.Name)
	safeHooks(&cfg, log)
	tel := subscriptionTelemetry{in: s.tel.in}
	if cfg.MeterProvider != nil {
		tel.in = telemetry.NewInstruments(cfg.MeterProvider)
	}
	return &Subscription{store: s, cfg: cfg, log: log, sql: buildSubscriptionQueries(s.schema), tel: tel}, nil
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
// with StopWhenCaughtUp, until caught up). It takes a fair share of the
// partitions (all of them when it runs alone), follows the log live, takes
// over partitions whose owner stopped renewing its lease, and returns after
// finishing or abandoning its current batches. Run returns nil when ctx
// ends; a *HandlerError under the Stop policy; an error when it cannot
// register the subscription at start-up (ErrPartitionsChanged, or the
// database's error). Later database failures are logged and retried.
func (sub *Subscription) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return errors.New("eventstore: subscription needs a handler")
	}
	if err := sub.register(ctx); err != nil {
		return err
	}
	h = sub.recovering(h)
	wake, release := sub.store.wakeups(ctx)
	defer release()
	if reg, err := sub.registerLag(); err != nil {
		sub.log.Warn("strata: could not register the lag gauges", "err", err)
	} else {
		defer func() { _ = reg.Unregister() }()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	// The fan-out lives on Run's own ctx: Run may return (caught up, a
	// handler error) while the caller's ctx goes on.
	hub := &partitionHub{wake: make(map[int]chan struct{})}
	wg.Go(func() { hub.fanOut(ctx, wake) })
	type running struct {
		stop context.CancelFunc
		done chan struct{}
	}
	workers := map[int]*running{}
	exited := make(chan struct{}, 1) // a worker ended: look for closed done channels
	caughtUp := map[int]bool{}
	caughtUpCh := make(chan int, sub.cfg.Partitions)

	defer func() {
		cancel(nil) // stops the workers and the fan-out
		wg.Wait()
		sub.leave(ctx)
	}()

	start := func(p int, cp checkpoint) {
		wctx, stop := context.WithCancel(ctx)
		r := &running{stop: stop, done: make(chan struct{})}
		workers[p] = r
		ch := hub.register(p)
		wg.Go(func() {
			defer func() {
				close(r.done)
				select {
				case exited <- struct{}{}:
				default:
				}
			}()
			err := sub.work(wctx, p, cp, h, ch, caughtUpCh)
			var he *HandlerError
			if errors.As(err, &he) {
				cancel(err)
			}
		})
	}

	tick := time.NewTicker(sub.cfg.LeaseTTL / 3)
	defer tick.Stop()
	for {
		claimed, owned, surplus, err := sub.maintain(ctx, len(workers))
		if err != nil && ctx.Err() == nil {
			sub.log.Warn("strata: lease maintenance failed", "err", err)
		}
		if err == nil {
			for p, w := range workers {
				if !owned[p] {
					sub.log.Warn("strata: lost the lease of a partition", "partition", p)
					w.stop()
				}
			}
			// Hand surplus partitions over only once their workers have
			// stopped, so that no batch is in flight when another process
			// takes them.
			for _, p := range surplus {
				if w, ok := workers[p]; ok {
					w.stop()
					<-w.done
					delete(workers, p)
				}
				if err := sub.release(ctx, p); err != nil && ctx.Err() == nil {
					sub.log.Warn("strata: could not hand over a partition", "partition", p, "err", err)
				}
			}
			for p, cp := range claimed {
				if _, ok := workers[p]; !ok {
					start(p, cp)
				}
			}
		}
		select {
		case <-ctx.Done():
			if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		case <-exited:
			for p, w := range workers {
				select {
				case <-w.done:
					delete(workers, p)
				default:
				}
			}
		case p := <-caughtUpCh:
			caughtUp[p] = true
			if sub.cfg.StopWhenCaughtUp && len(caughtUp) == sub.cfg.Partitions {
				return nil
			}
		case <-tick.C:
		}
	}
}

// partitionHub passes the store's wake-ups on to every partition worker.
type partitionHub struct {
	mu   sync.Mutex
	wake map[int]chan struct{}
}

func (ph *partitionHub) register(p int) chan struct{} {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	ch, ok := ph.wake[p]
	if !ok {
		ch = make(chan struct{}, 1)
		ph.wake[p] = ch
	}
	return ch
}

func (ph *partitionHub) fanOut(ctx context.Context, in <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-in:
			ph.mu.Lock()
			for _, ch := range ph.wake {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
			ph.mu.Unlock()
		}
	}
}

// register creates the subscription's partition rows if they are missing
// and checks that the partition count has not changed.
func (sub *Subscription) register(ctx context.Context) error {
	q := sub.store.pool
	if _, err := q.Exec(ctx, sub.sql.register, sub.cfg.Name, sub.cfg.Partitions, sub.cfg.Categories, sub.cfg.Types); err != nil {
		return fmt.Errorf("eventstore: subscription %q: register: %w", sub.cfg.Name, err)
	}
	var n int
	if err := q.QueryRow(ctx, sub.sql.partitionCount, sub.cfg.Name, sub.cfg.Partitions).Scan(&n); err != nil {
		return fmt.Errorf("eventstore: subscription %q: %w", sub.cfg.Name, err)
	}
	if n != sub.cfg.Partitions {
		return fmt.Errorf("%w: %q has %d partitions, configured with %d; reset it to change", ErrPartitionsChanged, sub.cfg.Name, n, sub.cfg.Partitions)
	}
	return nil
}

// maintain heartbeats this process's membership, renews its leases and
// claims free partitions up to its fair share (all partitions divided by
// the live members, rounded up), releasing any above it. It returns the
// partitions newly claimed (with their checkpoints) and all owned.
func (sub *Subscription) maintain(ctx context.Context, running int) (claimed map[int]checkpoint, owned map[int]bool, surplus []int, err error) {
	q := sub.store.pool
	ttl := sub.cfg.LeaseTTL.Seconds()
	var members int
	if err := q.QueryRow(ctx, sub.sql.heartbeat, sub.cfg.Name, sub.cfg.Owner, ttl).Scan(&members); err != nil {
		return nil, nil, nil, fmt.Errorf("heartbeat: %w", err)
	}
	rows, err := q.Query(ctx, sub.sql.renew, sub.cfg.Name, sub.cfg.Owner, ttl)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("renew: %w", err)
	}
	ownedList, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("renew: %w", err)
	}
	owned = map[int]bool{}
	for _, p := range ownedList {
		owned[int(p)] = true
	}
	share := sub.cfg.Partitions
	if !sub.cfg.StopWhenCaughtUp && members > 1 {
		share = (sub.cfg.Partitions + members - 1) / members
	}

	if extra := len(owned) - share; extra > 0 {
		// Give back the highest partitions (Run stops their workers, then
		// releases them).
		keys := make([]int, 0, len(owned))
		for p := range owned {
			keys = append(keys, p)
		}
		slices.Sort(keys)
		surplus = keys[len(keys)-extra:]
		for _, p := range surplus {
			delete(owned, p)
		}
	}
	claimed = map[int]checkpoint{}
	if want := share - len(owned); want > 0 {
		rows, err := q.Query(ctx, sub.sql.claim, sub.cfg.Name, want, sub.cfg.Owner, ttl)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("claim: %w", err)
		}
		var p int32
		var tx, seq, resets int64
		_, err = pgx.ForEachRow(rows, []any{&p, &tx, &seq, &resets}, func() error {
			claimed[int(p)] = checkpoint{Position{TxID: uint64(tx), Seq: seq}, resets}
			owned[int(p)] = true
			return nil
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("claim: %w", err)
		}
	}
	// Partitions owned but without a worker (one that exited after a fence)
	// restart from their stored checkpoint.
	if running < len(owned) {
		rows, err := q.Query(ctx, sub.sql.ownedCheckpoints, sub.cfg.Name, sub.cfg.Owner)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("checkpoints: %w", err)
		}
		var p int32
		var tx, seq, resets int64
		_, err = pgx.ForEachRow(rows, []any{&p, &tx, &seq, &resets}, func() error {
			if _, ok := claimed[int(p)]; !ok {
				claimed[int(p)] = checkpoint{Position{TxID: uint64(tx), Seq: seq}, resets}
			}
			return nil
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("checkpoints: %w", err)
		}
	}
	return claimed, owned, surplus, nil
}

// release gives back one partition's lease.
func (sub *Subscription) release(ctx context.Context, p int) error {
	_, err := sub.store.pool.Exec(ctx, sub.sql.release, sub.cfg.Name, p, sub.cfg.Owner)
	return err
}

// leave gives back this process's leases and membership on the way out, so
// that another process takes over at once instead of after LeaseTTL.
func (sub *Subscription) leave(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := sub.store.pool.Exec(ctx, sub.sql.leave, sub.cfg.Name, sub.cfg.Owner); err != nil {
		sub.log.Warn("strata: could not release leases; others take over after the lease expires", "err", err)
	}
}

// checkpoint is a partition's stored checkpoint with its count of resets,
// the fence of the partition's next batch.
type checkpoint struct {
	Position
	resets int64
}

// worker is one partition's reading loop.
type worker struct {
	sub      *Subscription
	p        int
	cp       Position  // the stored checkpoint: the fence of the next batch
	resets   int64     // the partition's resets as of cp: part of the fence
	pending  int       // events handled past cp whose checkpoint is not stored yet
	pendingT time.Time // when the first of them was read
	pendingR time.Time // when the last of them was recorded
	stored   time.Time // when cp was last stored
	readAt   Position  // where the next read starts (past cp over skipped events)
	filter   Filter
	parked   map[string]int64 // stream → id of its first dead letter
	lastSync time.Time
	ahead    chan prefetched // the next page, read while a batch is handled
	metrics  partitionMetrics
}

func (sub *Subscription) work(ctx context.Context, p int, cp checkpoint, h Handler, wake <-chan struct{}, caughtUp chan<- int) error {
	w := &worker{sub: sub, p: p, cp: cp.Position, resets: cp.resets, readAt: cp.Position, stored: time.Now(), filter: Filter{Categories: sub.cfg.Categories, Types: sub.cfg.Types, Partitions: sub.cfg.Partitions, Partition: p},
		metrics: sub.tel.partition(sub.cfg.Name, p)}
	defer w.dropPrefetch()
	if err := w.loadParked(ctx); err != nil {
		if ctx.Err() == nil {
			sub.log.Warn("strata: partition start failed", "partition", p, "err", err)
		}
		return err
	}
	idle := 0
	reported, woke := false, false
	for ctx.Err() == nil {
		if time.Since(w.lastSync) > sub.cfg.PollInterval {
			if err := w.sync(ctx, h); err != nil {
				return w.exit(ctx, err)
			}
		}
		started := time.Now()
		page, err := w.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			sub.log.Warn("strata: read failed; retrying", "partition", p, "err", err)
			if !sleep(ctx, sub.cfg.PollInterval) {
				return nil
			}
			continue
		}
		if len(page.Events) > 0 {
			idle, woke = 0, false
			if !page.AtEnd {
				// Catching up: read the next page while this one is handled.
				w.prefetch(ctx, page.Next)
			}
			if err := w.handle(ctx, h, page, started); err != nil {
				return w.exit(ctx, err)
			}
			continue
		}
		if page.Next != w.readAt {
			// A filtered read passed over events it does not select. The
			// checkpoint moves past them with the next batch.
			w.readAt = page.Next
			if !page.AtEnd {
				continue
			}
		}
		if w.pending > 0 {
			// Caught up: store the checkpoint that batches without writes
			// left behind.
			if err := w.flush(ctx); err != nil {
				return w.exit(ctx, err)
			}
		}
		if woke {
			// A wake-up with nothing new to read may be a reset or a retry
			// request rather than an append: look at the partition's row.
			woke = false
			if err := w.sync(ctx, h); err != nil {
				return w.exit(ctx, err)
			}
		}
		if !reported {
			reported = true
			select {
			case caughtUp <- p:
			case <-ctx.Done():
			}
		}
		wait := min(sub.cfg.PollInterval, (2*time.Millisecond)<<min(idle, 20))
		idle++
		select {
		case <-ctx.Done():
		case <-wake:
			idle, woke = 0, true
		case <-time.After(wait):
		}
	}
	return nil
}

// prefetched is a page read ahead, from after.
type prefetched struct {
	after Position
	page  Page
	err   error
}

// prefetch starts reading the page after the given position.
func (w *worker) prefetch(ctx context.Context, after Position) {
	ch := make(chan prefetched, 1)
	w.ahead = ch
	go func() {
		page, err := w.sub.store.ReadAllFiltered(ctx, after, w.sub.cfg.BatchSize, w.filter)
		ch <- prefetched{after: after, page: page, err: err}
	}()
}

// read returns the page after the checkpoint: the one read ahead if it
// starts there, else a fresh read.
func (w *worker) read(ctx context.Context) (Page, error) {
	if w.ahead != nil {
		r := <-w.ahead
		w.ahead = nil
		if r.err == nil && r.after == w.readAt {
			return r.page, nil
		}
	}
	return w.sub.store.ReadAllFiltered(ctx, w.readAt, w.sub.cfg.BatchSize, w.filter)
}

// dropPrefetch waits for a read ahead to finish and forgets it.
func (w *worker) dropPrefetch() {
	if w.ahead != nil {
		<-w.ahead
		w.ahead = nil
	}
}

// sync reconciles the worker with its partition's row: it stops when the
// lease is gone, follows a checkpoint that was reset, and runs the dead
// letters whose retry was requested.
func (w *worker) sync(ctx context.Context, h Handler) error {
	w.lastSync = time.Now()
	var owner *string
	var tx, seq, resets int64
	err := w.sub.store.pool.QueryRow(ctx, w.sub.sql.partitionRow, w.sub.cfg.Name, w.p).Scan(&owner, &tx, &seq, &resets)
	if err != nil {
		return nil // tried again at the next poll
	}
	if owner == nil || *owner != w.sub.cfg.Owner {
		return errFenced
	}
	if cp := (Position{TxID: uint64(tx), Seq: seq}); cp != w.cp || resets != w.resets {
		w.cp, w.readAt, w.resets, w.pending = cp, cp, resets, 0
		if err := w.loadParked(ctx); err != nil {
			// The worker restarts and loads them again, rather than go on
			// with dead letters that may not match the new checkpoint.
			return fmt.Errorf("load dead letters after a reset: %w", err)
		}
	}
	return w.retryDeadLetters(ctx, h)
}

// exit decides what a worker's error means: a fenced checkpoint ends the
// worker quietly (the coordinator restarts it if the lease is still ours);
// a *HandlerError is passed up.
func (w *worker) exit(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	if errors.Is(err, errFenced) {
		w.sub.log.Info("strata: checkpoint moved under us (lease lost or reset); restarting partition", "partition", w.p)
		return nil
	}
	var he *HandlerError
	if errors.As(err, &he) {
		w.setState(ctx, "failing", err.Error())
		return err
	}
	w.sub.log.Warn("strata: partition stopped", "partition", w.p, "err", err)
	return err
}

// handle runs one page through the handler in a single transaction; if the
// handler fails, it falls back to one event per transaction so the failure
// is pinned on one event and the events before it commit.
func (w *worker) handle(ctx context.Context, h Handler, page Page, started time.Time) error {
	events := page.Events
	live, parked := w.split(events)
	err := w.commit(ctx, live, parked, page.Next, !page.AtEnd, func(tx pgx.Tx) error {
		if len(live) == 0 {
			return nil
		}
		return h(ctx, tx, live)
	}, started)
	if err == nil || errors.Is(err, errFenced) || ctx.Err() != nil {
		return err
	}
	if len(events) == 1 {
		return w.handleOne(ctx, h, events[0], err)
	}
	w.metrics.failure(w.sub.isTransient(err))
	for _, e := range events {
		if err := w.handleOne(ctx, h, e, nil); err != nil {
			return err
		}
	}
	return nil
}

// handleOne handles a single event with retries; firstErr is the error of
// an attempt already made, if any.
func (w *worker) handleOne(ctx context.Context, h Handler, e Event, firstErr error) error {
	cfg := &w.sub.cfg
	attempts, err := 0, firstErr
	if err != nil {
		attempts = 1
	}
	backoff := cfg.RetryBackoff
	for {
		if err != nil {
			if errors.Is(err, errFenced) {
				return err
			}
			transient := w.sub.isTransient(err)
			w.metrics.failure(transient)
			if transient {
				attempts-- // says nothing about the event
			}
			if attempts >= cfg.MaxAttempts {
				break
			}
			w.sub.log.Warn("strata: handler failed; retrying", "partition", w.p, "event", e.ID, "stream", e.StreamID, "attempt", attempts, "err", err)
			w.setState(ctx, "failing", err.Error())
			if !sleep(ctx, jitter(backoff)) {
				return ctx.Err()
			}
			backoff = min(backoff*2, cfg.MaxRetryBackoff)
		}
		live, parked := w.split([]Event{e})
		started := time.Now()
		err = w.commit(ctx, live, parked, e.Position, false, func(tx pgx.Tx) error {
			if len(live) == 0 {
				return nil
			}
			return h(ctx, tx, live)
		}, started)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		attempts++
	}
	herr := &HandlerError{Subscription: cfg.Name, Event: e, Attempts: attempts, Err: err}
	if cfg.OnFailure == Stop {
		return herr
	}
	// Park: record it and move the checkpoint past it, in one transaction.
	w.sub.log.Error("strata: parking event after repeated failures", "partition", w.p, "event", e.ID, "stream", e.StreamID, "attempts", attempts, "err", err)
	return w.park(ctx, e, attempts, err)
}

// split separates events of parked streams from the rest.
func (w *worker) split(events []Event) (live, parked []Event) {
	if len(w.parked) == 0 {
		return events, nil
	}
	live = make([]Event, 0, len(events))
	for _, e := range events {
		if _, ok := w.parked[e.StreamID]; ok {
			parked = append(parked, e)
		} else {
			live = append(live, e)
		}
	}
	return live, parked
}

// flush stores the checkpoint at readAt for the batches that left it
// behind (see writeBatch).
func (w *worker) flush(ctx context.Context) error {
	if err := w.advance(ctx, w.sub.store.pool, w.readAt, int64(w.pending)); err != nil {
		return err
	}
	events, started := w.pending, w.pendingT
	w.cp, w.pending, w.stored = w.readAt, 0, time.Now()
	if w.sub.cfg.OnBatch != nil {
		w.sub.cfg.OnBatch(BatchInfo{Subscription: w.sub.cfg.Name, Partition: w.p, Events: events, Last: w.cp,
			LastRecordedAt: w.pendingR, Duration: time.Since(started)})
	}
	return nil
}

// checkpointDelay is how long a worker may go without storing its
// checkpoint while it handles batches that write nothing (see writeBatch).
const checkpointDelay = 100 * time.Millisecond

// minDeferBatch is the smallest batch whose checkpoint may be deferred:
// below it a round trip per batch hardly matters, and small batches keep
// their checkpoint (and the lag reported from it) exact.
const minDeferBatch = 64

// commit runs fn and advances the checkpoint to last in one transaction,
// parking the given events of parked streams in it too. The checkpoint
// update is fenced on this owner and on the previous checkpoint. more says
// the log has more to read right away (catching up), when a batch that
// wrote nothing may leave its checkpoint to a later one (see writeBatch).
func (w *worker) commit(ctx context.Context, live, parked []Event, last Position, more bool, fn func(pgx.Tx) error, started time.Time) error {
	sub := w.sub
	if sub.cfg.HandleOutsideTx {
		if err := fn(nil); err != nil {
			return err
		}
		fn = func(pgx.Tx) error { return nil }
		more = false // its effects are outside: record them at once
		// The handler's effects are done: record them even if the
		// subscription is stopping meanwhile (the fence keeps it safe), so
		// that a clean stop does not repeat them.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), sub.cfg.LeaseTTL)
		defer cancel()
	}
	canDefer := more && len(live) >= minDeferBatch && time.Since(w.stored) < checkpointDelay
	stored, err := w.writeBatch(ctx, fn, parked, last, len(live), canDefer)
	if err != nil {
		return err
	}
	w.metrics.batch(len(live), len(parked), time.Since(started))
	if !stored {
		w.readAt = last
		if w.pending == 0 {
			w.pendingT = started
		}
		w.pending += len(live)
		if n := len(live); n > 0 {
			w.pendingR = live[n-1].RecordedAt
		}
		return nil
	}
	events := len(live) + w.pending
	recorded := time.Time{}
	if w.pending > 0 {
		started, recorded = w.pendingT, w.pendingR
	}
	w.cp, w.readAt, w.pending, w.stored = last, last, 0, time.Now()
	if sub.cfg.OnBatch != nil {
		info := BatchInfo{Subscription: sub.cfg.Name, Partition: w.p, Events: events, Parked: len(parked), Last: last, Duration: time.Since(started)}
		info.LastRecordedAt = recorded
		if n := len(live); n > 0 {
			info.LastRecordedAt = live[n-1].RecordedAt
		}
		sub.cfg.OnBatch(info)
	}
	return nil
}

// writeBatch is the transactional part of a batch: the handler (unless it
// ran outside), the parked events of parked streams, the checkpoint. The
// transaction begins only when the handler uses it or there are events to
// park: when neither happens, one autocommit statement moves the checkpoint
// (a round trip instead of three: BEGIN, UPDATE, COMMIT), or, with
// canDefer, nothing does: the batch wrote nothing, so a later batch may
// store the checkpoint past it (within checkpointDelay) as well as this one
// could. A crash before then repeats batches that had no effects in the
// database; the fence is unchanged. stored says whether the checkpoint was
// stored.
//
// The checkpoint's update is the transaction's first statement, before
// anything the handler writes: it locks the partition's row until the
// commit, so that a reset (which locks the rows first, then clears the
// read model) either waits for the batch and then clears what it wrote, or
// fences it. Updated last, a batch could commit between a reset's DELETE
// and its update of the row and keep rows the DELETE did not see.
func (w *worker) writeBatch(ctx context.Context, fn func(pgx.Tx) error, parked []Event, last Position, live int, canDefer bool) (stored bool, err error) {
	sub := w.sub
	handled := int64(live + w.pending)
	tx := &batchTx{ctx: ctx, pool: sub.store.pool, first: func(ctx context.Context, tx pgx.Tx) error {
		return w.advance(ctx, tx, last, handled)
	}}
	defer tx.end(ctx)
	if err := fn(tx); err != nil {
		if errors.Is(tx.err, errFenced) {
			// Whatever the handler made of it, the batch was fenced.
			return false, errFenced
		}
		return false, err
	}
	if tx.err != nil {
		// BEGIN failed under a handler that did not pass the error on.
		return false, tx.err
	}
	for _, e := range parked {
		if _, err := tx.Exec(ctx, sub.sql.insertDeadLetter, sub.cfg.Name, w.p, int64(e.Position.TxID), e.Position.Seq, e.ID, e.StreamID, e.Type,
			fmt.Sprintf("parked behind dead letter %d of the same stream", w.parked[e.StreamID]), 0, w.parked[e.StreamID]); err != nil {
			if errors.Is(tx.err, errFenced) {
				return false, errFenced
			}
			return false, fmt.Errorf("park: %w", err)
		}
	}
	if !tx.started() {
		if canDefer {
			return false, nil
		}
		return true, w.advance(ctx, sub.store.pool, last, handled)
	}
	return true, tx.tx.Commit(ctx)
}

func (w *worker) advance(ctx context.Context, q querier, to Position, handled int64) error {
	tag, err := q.Exec(ctx, w.sub.sql.advance, w.sub.cfg.Name, w.p, w.sub.cfg.Owner,
		int64(w.cp.TxID), w.cp.Seq, int64(to.TxID), to.Seq, handled, w.sub.cfg.LeaseTTL.Seconds(), w.resets)
	if err != nil {
		return fmt.Errorf("advance checkpoint: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return errFenced
	}
	return nil
}

// park records e as a dead letter and moves the checkpoint past it.
func (w *worker) park(ctx context.Context, e Event, attempts int, cause error) error {
	sub := w.sub
	var id int64
	err := sub.store.inTx(ctx, func(tx pgx.Tx) error {
		var blockedBy *int64
		if first, ok := w.parked[e.StreamID]; ok {
			blockedBy = &first
		}
		if err := tx.QueryRow(ctx, sub.sql.insertDeadLetter+" RETURNING id", sub.cfg.Name, w.p, int64(e.Position.TxID), e.Position.Seq, e.ID, e.StreamID, e.Type,
			cause.Error(), attempts, blockedBy).Scan(&id); err != nil {
			return fmt.Errorf("park: %w", err)
		}
		return w.advance(ctx, tx, e.Position, int64(w.pending))
	})
	if err != nil {
		return err
	}
	w.cp, w.readAt, w.pending, w.stored = e.Position, e.Position, 0, time.Now()
	w.metrics.batch(0, 1, 0)
	if sub.cfg.OnBatch != nil {
		sub.cfg.OnBatch(BatchInfo{Subscription: sub.cfg.Name, Partition: w.p, Parked: 1, Last: e.Position, LastRecordedAt: e.RecordedAt})
	}
	if _, ok := w.parked[e.StreamID]; !ok {
		if w.parked == nil {
			w.parked = map[string]int64{}
		}
		w.parked[e.StreamID] = id
	}
	w.setState(ctx, "running", "")
	return nil
}

// loadParked reads which streams of this partition have dead letters. On
// an error w.parked is left as it was: a partial set would let events of a
// parked stream overtake its dead letters.
func (w *worker) loadParked(ctx context.Context) error {
	rows, err := w.sub.store.pool.Query(ctx, w.sub.sql.parkedStreams, w.sub.cfg.Name, w.p)
	if err != nil {
		return err
	}
	var stream string
	var id int64
	parked := map[string]int64{}
	if _, err := pgx.ForEachRow(rows, []any{&stream, &id}, func() error {
		parked[stream] = id
		return nil
	}); err != nil {
		return err
	}
	w.parked = parked
	return nil
}

// retryOne runs one dead letter's event through the handler and deletes
// the dead letter, in one transaction (the handler runs before it with
// HandleOutsideTx).
func (w *worker) retryOne(ctx context.Context, h Handler, id int64, e Event) error {
	sub := w.sub
	if sub.cfg.HandleOutsideTx {
		if err := h(ctx, nil, []Event{e}); err != nil {
			return err
		}
	}
	return sub.store.inTx(ctx, func(tx pgx.Tx) error {
		// Lock the partition's row first, fenced, as a batch does (see
		// writeBatch): a reset then waits for this transaction or fences it.
		tag, err := tx.Exec(ctx, sub.sql.lockPartition, sub.cfg.Name, w.p, sub.cfg.Owner, w.resets)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errFenced
		}
		if !sub.cfg.HandleOutsideTx {
			if err := h(ctx, tx, []Event{e}); err != nil {
				return err
			}
		}
		tag, err = tx.Exec(ctx, sub.sql.deleteDeadLetter, id, sub.cfg.Name, w.p, sub.cfg.Owner)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errFenced
		}
		return nil
	})
}

// retryDeadLetters runs this partition's dead letters whose retry was
// requested, stream by stream in their original order. A success deletes
// the dead letter in the handler's transaction; a stream with no dead
// letters left is unparked. A failure leaves the rest of that stream parked.
func (w *worker) retryDeadLetters(ctx context.Context, h Handler) error {
	sub := w.sub
	rows, err := sub.store.pool.Query(ctx, sub.sql.retryRequested, sub.cfg.Name, w.p)
	if err != nil {
		return nil // tried again at the next poll
	}
	type item struct {
		id int64
		e  Event
	}
	var items []item
	var sc eventScanner
	for rows.Next() {
		var id int64
		var e Event
		e, err = sc.scanWithID(rows, &id)
		if err != nil {
			break
		}
		items = append(items, item{id, e})
	}
	rows.Close()
	if err != nil || rows.Err() != nil || len(items) == 0 {
		return nil
	}
	failed := map[string]bool{}
	done := map[string]bool{}
	for _, it := range items {
		if failed[it.e.StreamID] {
			continue
		}
		err := w.retryOne(ctx, h, it.id, it.e)
		if errors.Is(err, errFenced) {
			return err
		}
		if err != nil {
			w.metrics.failure(w.sub.isTransient(err))
			// The stream stays parked from this event on: none of its later
			// dead letters may run before it.
			failed[it.e.StreamID] = true
			if _, err2 := sub.store.pool.Exec(ctx, sub.sql.retryFailed, it.id, err.Error(), sub.cfg.Name, w.p, it.e.StreamID); err2 != nil {
				return nil
			}
			continue
		}
		done[it.e.StreamID] = true
	}
	// Events of a retried stream parked while the retry ran are retried
	// next, so that the stream drains completely.
	for stream := range done {
		if !failed[stream] {
			if _, err := sub.store.pool.Exec(ctx, sub.sql.retryRest, sub.cfg.Name, w.p, stream); err != nil {
				return nil
			}
		}
	}
	return w.loadParked(ctx)
}

func (w *worker) setState(ctx context.Context, state, lastErr string) {
	var e *string
	if lastErr != "" {
		e = &lastErr
	}
	if _, err := w.sub.store.pool.Exec(ctx, w.sub.sql.setState, w.sub.cfg.Name, w.p, w.sub.cfg.Owner, state, e); err != nil && ctx.Err() == nil {
		w.sub.log.Warn("strata: could not record state", "partition", w.p, "err", err)
	}
}

func (sc *eventScanner) scanWithID(rows pgx.Rows, id *int64) (Event, error) {
	var e Event
	sc.meta, sc.corr, sc.caus = nil, nil, nil
	err := rows.Scan(id, &sc.pos, &sc.tx, &e.ID, &e.StreamID, &e.Version, &e.Type, &sc.sv, &e.Data, &sc.meta, &sc.corr, &sc.caus, &e.RecordedAt)
	if err != nil {
		return Event{}, err
	}
	return sc.finish(e)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func jitter(d time.Duration) time.Duration {
	var b [1]byte
	_, _ = rand.Read(b[:])
	// ±20%
	return d + time.Duration(float64(d)*(float64(b[0])/255*0.4-0.2))
}

// subscriptionQueries holds the subscription SQL with the schema filled in.
type subscriptionQueries struct {
	register, partitionCount, heartbeat, renew, claim, release, leave, ownedCheckpoints, partitionRow string
	advance, setState, lockPartition                                                                  string
	insertDeadLetter, parkedStreams, retryRequested, deleteDeadLetter, retryFailed, retryRest         string
}

func buildSubscriptionQueries(schema string) subscriptionQueries {
	r := strings.NewReplacer("{schema}", schema)
	return subscriptionQueries{
		// Creates the partition rows unless the subscription exists with
		// another partition count (then Run reports the mismatch).
		register: r.Replace(`INSERT INTO {schema}.subscriptions (name, partition, partitions, categories, event_types)
			SELECT $1, p, $2, $3, $4 FROM generate_series(0, $2 - 1) AS p
			WHERE NOT EXISTS (SELECT 1 FROM {schema}.subscriptions WHERE name = $1 AND partitions <> $2)
			ON CONFLICT (name, partition) DO UPDATE SET categories = EXCLUDED.categories, event_types = EXCLUDED.event_types`),
		partitionCount: r.Replace(`SELECT coalesce(max(partitions) FILTER (WHERE partitions <> $2), count(*))::int FROM {schema}.subscriptions WHERE name = $1`),
		// Upsert this member and count the live ones (the count cannot see
		// a first insert in the same statement, hence the greatest()).
		heartbeat: r.Replace(`WITH me AS (
				INSERT INTO {schema}.subscription_members (name, owner, seen_until)
				VALUES ($1, $2, now() + make_interval(secs => $3))
				ON CONFLICT (name, owner) DO UPDATE SET seen_until = EXCLUDED.seen_until
				RETURNING 1)
			SELECT greatest(count(*) FILTER (WHERE owner <> $2) + 1, 1)::int
			FROM {schema}.subscription_members WHERE name = $1 AND seen_until > now()`),
		renew: r.Replace(`UPDATE {schema}.subscriptions SET lease_until = now() + make_interval(secs => $3)
			WHERE name = $1 AND owner = $2 AND lease_until > now()
			RETURNING partition`),
		// SKIP LOCKED: processes starting together do not queue on each
		// other's candidate rows.
		claim: r.Replace(`WITH free AS (
				SELECT partition FROM {schema}.subscriptions
				WHERE name = $1 AND (owner IS NULL OR lease_until IS NULL OR lease_until <= now())
				ORDER BY partition LIMIT $2
				FOR UPDATE SKIP LOCKED)
			UPDATE {schema}.subscriptions s
			SET owner = $3, lease_until = now() + make_interval(secs => $4), state = 'running', updated_at = now()
			FROM free WHERE s.name = $1 AND s.partition = free.partition
			RETURNING s.partition, s.position_tx, s.position_seq, s.resets`),
		release: r.Replace(`UPDATE {schema}.subscriptions SET owner = NULL, lease_until = NULL, state = 'idle', updated_at = now()
			WHERE name = $1 AND partition = $2 AND owner = $3`),
		leave: r.Replace(`WITH gone AS (DELETE FROM {schema}.subscription_members WHERE name = $1 AND owner = $2)
			UPDATE {schema}.subscriptions SET owner = NULL, lease_until = NULL,
				state = CASE WHEN state = 'failing' THEN state ELSE 'stopped' END, updated_at = now()
			WHERE name = $1 AND owner = $2`),
		partitionRow:     r.Replace(`SELECT owner, position_tx, position_seq, resets FROM {schema}.subscriptions WHERE name = $1 AND partition = $2`),
		ownedCheckpoints: r.Replace(`SELECT partition, position_tx, position_seq, resets FROM {schema}.subscriptions WHERE name = $1 AND owner = $2`),
		// The fence: only the lease owner, and only from the checkpoint it
		// read (and the number of resets it knows of), may move the
		// checkpoint. A reset or a takeover makes this match nothing and
		// the batch rolls back.
		advance: r.Replace(`UPDATE {schema}.subscriptions
			SET position_tx = $6, position_seq = $7, events_handled = events_handled + $8,
			    lease_until = now() + make_interval(secs => $9), state = 'running', last_error = NULL, updated_at = now()
			WHERE name = $1 AND partition = $2 AND owner = $3 AND position_tx = $4 AND position_seq = $5 AND resets = $10`),
		// A dead letter's retry locks its partition's row first, fenced on
		// the owner and the resets it knows of.
		lockPartition: r.Replace(`SELECT 1 FROM {schema}.subscriptions
			WHERE name = $1 AND partition = $2 AND owner = $3 AND resets = $4 FOR NO KEY UPDATE`),
		setState: r.Replace(`UPDATE {schema}.subscriptions SET state = $4, last_error = $5, updated_at = now()
			WHERE name = $1 AND partition = $2 AND owner = $3`),
		insertDeadLetter: r.Replace(`INSERT INTO {schema}.dead_letters
			(subscription, partition, position_tx, position_seq, event_id, stream_id, event_type, error, attempts, blocked_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`),
		parkedStreams: r.Replace(`SELECT DISTINCT ON (stream_id) stream_id, id FROM {schema}.dead_letters
			WHERE subscription = $1 AND partition = $2 ORDER BY stream_id, id`),
		retryRequested: r.Replace(`SELECT d.id, ` + prefixed("e.", eventColumns) + `
			FROM {schema}.dead_letters d JOIN {schema}.events e ON e.event_id = d.event_id
			WHERE d.subscription = $1 AND d.partition = $2 AND d.retry_requested
			ORDER BY d.id`),
		deleteDeadLetter: r.Replace(`DELETE FROM {schema}.dead_letters d USING {schema}.subscriptions s
			WHERE d.id = $1 AND s.name = $2 AND s.partition = $3 AND s.owner = $4`),
		retryFailed: r.Replace(`UPDATE {schema}.dead_letters
			SET retry_requested = false,
			    attempts = attempts + CASE WHEN id = $1 THEN 1 ELSE 0 END,
			    error = CASE WHEN id = $1 THEN $2 ELSE error END
			WHERE subscription = $3 AND partition = $4 AND stream_id = $5`),
		retryRest: r.Replace(`UPDATE {schema}.dead_letters SET retry_requested = true
			WHERE subscription = $1 AND partition = $2 AND stream_id = $3`),
	}
}

func prefixed(prefix, columns string) string {
	parts := strings.Split(columns, ", ")
	for i := range parts {
		parts[i] = prefix + parts[i]
	}
	return strings.Join(parts, ", ")
}
