package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/failure"
	"github.com/strata-go/strata/internal/retry"
	"github.com/strata-go/strata/internal/storeview"
)

// Runner runs projections: each reads the global log through its own
// eventstore.Subscription, so checkpoints commit with the read model,
// leases give each projection partition one owner at a time across
// processes, and notifications wake it when events are appended. Create
// it with NewRunner; many processes may run the same projections.
//
// Its administration (Status, DeadLetters, RetryDeadLetters, Reset,
// WaitFor) names a projection and goes through the store's administration
// of the projection's subscription (eventstore.Store.SubscriptionStatuses,
// DeadLetters, RetryDeadLetters, ResetSubscription, WaitFor), which serves
// every kind of subscription (relays and Pub/Sub groups too): one path,
// the Runner adding the projection's name, version and read model.
type Runner struct {
	store   *eventstore.Store
	cfg     Config
	log     *slog.Logger
	entries []*entry
	byName  map[string]*entry
	err     error // from validating the projections; returned by every method
	sql     queries
}

// entry is one projection of a Runner.
type entry struct {
	p   Projection
	sub string // subscription name

	handled atomic.Int64 // events handled in this process, by Run and Rebuild (progress)

	mu      sync.Mutex
	stopped error // the *eventstore.HandlerError that stopped it in this process
	running int   // supervise calls in progress (under mu)
}

// NewRunner returns a Runner of the given projections on store. cfg may be
// nil. It does not touch the database. Invalid projections (no name, no
// handler, a name given twice) make every method of the Runner return the
// error.
func NewRunner(store *eventstore.Store, projections []Projection, cfg *Config) *Runner {
	c := cfg.withDefaults()
	r := &Runner{store: store, cfg: c, byName: map[string]*entry{}, sql: buildQueries(store)}
	r.log = c.Logger
	if r.log == nil && store != nil {
		r.log = storeview.Of(store).Logger
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.err = validate(projections)
	if store == nil {
		r.err = errors.Join(r.err, errors.New("projection: NewRunner needs a store"))
	}
	for _, p := range projections {
		if p.Version == 0 {
			p.Version = 1
		}
		if p.Partitions == 0 {
			p.Partitions = 1
		}
		e := &entry{p: p, sub: SubscriptionName(p.Name, p.Version)}
		r.entries = append(r.entries, e)
		r.byName[p.Name] = e
	}
	return r
}

// Store returns the store the Runner was made with.
func (r *Runner) Store() *eventstore.Store { return r.store }

func (r *Runner) entry(name string) (*entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	e, ok := r.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProjection, name)
	}
	return e, nil
}

// Run runs every projection until ctx is done, then returns nil after
// finishing or abandoning the batches in flight (their transactions roll
// back; nothing is lost). Each projection catches up from its checkpoint,
// then follows the log live. Partitions are shared fairly with the other
// processes running the same projections; a dead process's partitions
// are taken over after Config.LeaseTTL.
//
// A projection whose database connection fails is restarted with backoff,
// for as long as ctx lasts; one whose connection the database refuses for
// its credentials or TLS (eventstore.ErrAuth) stops, as no retry can cure
// that. A projection under the eventstore.Stop policy
// that keeps failing on an event stops in this process (Status shows it
// failing, with the error) while the others go on; Run returns early only
// when every projection has stopped, with their errors joined.
func (r *Runner) Run(ctx context.Context) error {
	if r.err != nil {
		return r.err
	}
	if len(r.entries) == 0 {
		<-ctx.Done()
		return nil
	}
	errs := make([]error, len(r.entries))
	var wg sync.WaitGroup
	for i, e := range r.entries {
		wg.Go(func() { errs[i] = r.supervise(ctx, e) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

// supervise runs one projection's subscription, restarting it after
// database failures, until ctx ends or the handler stops it.
func (r *Runner) supervise(ctx context.Context, e *entry) error {
	e.mu.Lock()
	e.stopped = nil
	e.running++
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.running--
		e.mu.Unlock()
	}()
	err := r.keepRunning(ctx, e, r.cfg.Owner, eventstore.Position{})
	if err != nil {
		r.log.Error("strata: projection stopped", "projection", e.p.Name, "err", err)
		e.mu.Lock()
		e.stopped = err
		e.mu.Unlock()
		return fmt.Errorf("projection %q: %w", e.p.Name, err)
	}
	return nil
}

// keepRunning runs one projection's subscription, restarting it with
// backoff after database failures, until ctx ends (nil), it reaches stopAt
// if set (nil), or its handler stops it (the *eventstore.HandlerError),
// or a retry cannot help (eventstore.ErrPartitionsChanged, or
// eventstore.ErrAuth: the database refused the credentials or TLS).
func (r *Runner) keepRunning(ctx context.Context, e *entry, owner string, stopAt eventstore.Position) error {
	wait := retry.Backoff(r.cfg.RetryBackoff, r.cfg.MaxRetryBackoff)
	for {
		sub, err := r.subscription(e, owner, stopAt)
		if err != nil {
			return err
		}
		started := time.Now()
		err = sub.Run(withVersion(ctx, e), r.handler(e))
		if ctx.Err() != nil || err == nil {
			return nil
		}
		var he *eventstore.HandlerError
		if errors.As(err, &he) || errors.Is(err, eventstore.ErrPartitionsChanged) || errors.Is(err, eventstore.ErrAuth) {
			return err
		}
		if time.Since(started) > time.Minute {
			wait.Reset()
		}
		backoff := wait.NextBackOff()
		r.log.Warn("strata: projection failed; restarting", "projection", e.p.Name, "err", err, "retry_in", backoff)
		if !retry.Sleep(ctx, backoff) {
			return nil
		}
	}
}

func withVersion(ctx context.Context, e *entry) context.Context {
	return context.WithValue(ctx, versionKey{}, e.p.Version)
}

// subscription builds the eventstore subscription of a projection, which
// stops at stopAt unless it is zero. Every batch it handles counts in
// e.handled.
func (r *Runner) subscription(e *entry, owner string, stopAt eventstore.Position) (*eventstore.Subscription, error) {
	p := e.p
	cfg := eventstore.SubscriptionConfig{
		Name:            e.sub,
		Categories:      p.Categories,
		Types:           p.Types,
		Partitions:      p.Partitions,
		BatchSize:       r.cfg.BatchSize,
		MaxAttempts:     r.cfg.MaxAttempts,
		RetryBackoff:    r.cfg.RetryBackoff,
		MaxRetryBackoff: r.cfg.MaxRetryBackoff,
		OnFailure:       p.OnFailure,
		LeaseTTL:        r.cfg.LeaseTTL,
		PollInterval:    r.cfg.PollInterval,
		Owner:           owner,
		Logger:          r.cfg.Logger,
		MeterProvider:   r.cfg.MeterProvider,
		Transient:       failure.Rules{IsTransient: p.Transient}.Transient,
		StopAt:          stopAt,
	}
	if p.BatchSize > 0 {
		cfg.BatchSize = p.BatchSize
	}
	if p.MaxAttempts > 0 {
		cfg.MaxAttempts = p.MaxAttempts
	}
	m := r.cfg.Metrics.Batch
	cfg.OnBatch = func(b eventstore.BatchInfo) {
		e.handled.Add(int64(b.Events))
		if m != nil {
			bm := BatchMetrics{Projection: p.Name, Partition: b.Partition, Events: b.Events, Parked: b.Parked, Duration: b.Duration}
			if b.Events > 0 && !b.LastRecordedAt.IsZero() {
				bm.Lag = max(0, time.Since(b.LastRecordedAt))
			}
			m(bm)
		}
	}
	sub, err := r.store.Subscription(cfg)
	if err != nil {
		return nil, fmt.Errorf("projection %q: %w", p.Name, err)
	}
	return sub, nil
}

// handler adapts a projection's Handler to the subscription's batches.
func (r *Runner) handler(e *entry) eventstore.Handler {
	name, onErr := e.p.Name, r.cfg.Metrics.Error
	bh, batched := e.p.Handler.(BatchHandler)
	h := e.p.Handler
	return func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		var err error
		if batched {
			err = bh.HandleBatch(ctx, tx, events)
		} else {
			for _, ev := range events {
				if err = h.Handle(ctx, tx, ev); err != nil {
					break
				}
			}
		}
		if err != nil && onErr != nil && ctx.Err() == nil {
			onErr(name, err)
		}
		return err
	}
}
