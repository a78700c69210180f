package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/failure"
	"github.com/strata-go/strata/internal/retry"
	"github.com/strata-go/strata/internal/storeview"
	"github.com/strata-go/strata/schema"
)

// SubscriptionPrefix starts the name of every workflow's subscription:
// "workflow:NAME". Its checkpoints, leases and dead letters (the parked
// inputs) are under that name.
const SubscriptionPrefix = "workflow:"

// Runner runs one workflow: it reacts to the log's events through an
// eventstore subscription and fires the workflow's deadlines. Create it
// with New; many processes may run the same workflow.
type Runner[S any] struct {
	store *eventstore.Store
	reg   *schema.Registry
	wf    Workflow[S]
	cfg   Config
	log   *slog.Logger
	sql   queries
	ch    string
	tel   telemetryOf
}

// New returns a Runner of wf on store. Events (inputs, the instances'
// own, the outgoing) are decoded and encoded by reg. cfg may be nil. New
// does not touch the database; it returns an error matching
// ErrInvalidWorkflow for a workflow it cannot run.
func New[S any](store *eventstore.Store, reg *schema.Registry, wf Workflow[S], cfg *Config) (*Runner[S], error) {
	if store == nil || reg == nil {
		return nil, fmt.Errorf("%w: New needs a store and a registry", ErrInvalidWorkflow)
	}
	if err := wf.check(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	log := c.Logger
	if log == nil {
		log = storeview.Of(store).Logger
	}
	if c.MeterProvider == nil {
		c.MeterProvider = storeview.Of(store).MeterProvider
	}
	if c.TracerProvider == nil {
		c.TracerProvider = storeview.Of(store).TracerProvider
	}
	r := &Runner[S]{store: store, reg: reg, wf: wf, cfg: c, log: log.With("workflow", wf.Name),
		sql: buildQueries(storeview.Of(store).Schema), ch: channel(storeview.Of(store).Schema)}
	r.tel = newTelemetry(c.MeterProvider, c.TracerProvider)
	return r, nil
}

// Name returns the workflow's name.
func (r *Runner[S]) Name() string { return r.wf.Name }

// SubscriptionName returns the name of the workflow's subscription.
func (r *Runner[S]) SubscriptionName() string { return SubscriptionPrefix + r.wf.Name }

// StreamID returns the stream of the instance with the given key.
func (r *Runner[S]) StreamID(key string) string { return r.wf.Name + "-" + key }

// Run reacts to events and fires deadlines until ctx is done, then
// returns nil after finishing or abandoning the reactions in flight
// (their transactions roll back; nothing is lost). The subscription is
// restarted with backoff after database failures; Run returns early only
// with an error that no restart cures (a changed partition count).
func (r *Runner[S]) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var err error
	wake := r.listenAll(ctx, &wg)
	if !r.cfg.NoEvents {
		wg.Go(func() { err = r.runEvents(ctx) })
		for i := range r.cfg.Workers {
			wg.Go(func() { r.runInbox(ctx, wake[i]) })
		}
	}
	if !r.cfg.NoDeadlines {
		wg.Go(func() { r.runDeadlines(ctx, wake[len(wake)-1]) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// subscription builds the workflow's eventstore subscription: the
// router, one partition, so that it reads the log in order.
func (r *Runner[S]) subscription() (*eventstore.Subscription, error) {
	return r.store.Subscription(eventstore.SubscriptionConfig{
		Name: r.SubscriptionName(),
		// The inbox keeps events as stored (personal fields sealed); the
		// reaction opens them in its transaction (queuedInputs).
		Sealed:          true,
		Categories:      r.wf.Categories,
		Types:           r.wf.Types,
		BatchSize:       r.cfg.BatchSize,
		MaxAttempts:     r.cfg.MaxAttempts,
		RetryBackoff:    r.cfg.RetryBackoff,
		MaxRetryBackoff: r.cfg.MaxRetryBackoff,
		LeaseTTL:        r.cfg.LeaseTTL,
		PollInterval:    r.cfg.PollInterval,
		Owner:           r.cfg.Owner,
		Logger:          r.log,
		MeterProvider:   r.cfg.MeterProvider,
		Transient:       failure.Rules{IsTransient: transient}.Transient,
	})
}

// transient reports the errors of a reaction that say nothing about its
// input: another transaction got to a stream first in the log's order, or
// the database broke a deadlock or a serialization conflict. A retry of
// the same input succeeds.
func transient(err error) bool {
	if errors.Is(err, eventstore.ErrOutOfOrder) || errors.Is(err, eventstore.ErrConflict) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// runEvents runs the subscription, restarting it after failures.
func (r *Runner[S]) runEvents(ctx context.Context) error {
	wait := retry.Backoff(r.cfg.RetryBackoff, r.cfg.MaxRetryBackoff)
	for {
		sub, err := r.subscription()
		if err != nil {
			return fmt.Errorf("workflow %q: %w", r.wf.Name, err)
		}
		started := time.Now()
		err = sub.Run(ctx, r.handle)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, eventstore.ErrPartitionsChanged) {
			return fmt.Errorf("workflow %q: %w", r.wf.Name, err)
		}
		if time.Since(started) > time.Minute {
			wait.Reset()
		}
		d := wait.NextBackOff()
		r.log.Warn("strata: workflow subscription failed; restarting", "err", err, "retry_in", d)
		if !retry.Sleep(ctx, d) {
			return nil
		}
	}
}

// handle is the router: the subscription's handler. It reads the log in
// order (one partition), routes each event to its instance and copies the
// routed ones to the inbox, in the transaction that moves the checkpoint,
// so each event is routed exactly once and each instance's inputs are
// queued in log order whatever streams they come from. The reaction
// workers (inbox.go) take them from there.
func (r *Runner[S]) handle(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	var a inboxArgs
	for _, e := range events {
		if e.Category() == r.wf.Name {
			continue // the workflow's own instances
		}
		ev, err := r.reg.Decode(e)
		if err != nil {
			return fmt.Errorf("workflow %q: decode %s (%s of %q): %w", r.wf.Name, e.ID, e.Type, e.StreamID, err)
		}
		key, ok, err := r.route(e, ev)
		if err != nil {
			return err
		}
		if ok {
			if err := a.add(key, e); err != nil {
				return fmt.Errorf("workflow %q: event %s: %w", r.wf.Name, e.ID, err)
			}
		}
	}
	if len(a.keys) == 0 {
		return nil // the transaction never begins; the checkpoint moves alone
	}
	if _, err := tx.Exec(ctx, r.sql.inboxInsert, r.wf.Name, a.keys, a.ids, a.streams, a.versions, a.txs, a.seqs,
		a.types, a.schemaVersions, a.data, a.meta, a.recorded); err != nil {
		return fmt.Errorf("workflow %q: route: %w", r.wf.Name, err)
	}
	if _, err := tx.Exec(ctx, r.sql.notify, r.ch, r.wf.Name); err != nil {
		return fmt.Errorf("workflow %q: route: %w", r.wf.Name, err)
	}
	return nil
}

// inboxArgs are a batch's routed events, column by column.
type inboxArgs struct {
	keys, ids, streams, types, data, meta []string
	versions, txs, seqs                   []int64
	schemaVersions                        []int32
	recorded                              []time.Time
}

func (a *inboxArgs) add(key string, e eventstore.Event) error {
	meta, err := json.Marshal(e.Metadata)
	if err != nil {
		return err
	}
	a.keys = append(a.keys, key)
	a.ids = append(a.ids, e.ID.String())
	a.streams = append(a.streams, e.StreamID)
	a.versions = append(a.versions, e.Version)
	a.txs = append(a.txs, int64(e.Position.TxID))
	a.seqs = append(a.seqs, e.Position.Seq)
	a.types = append(a.types, e.Type)
	a.schemaVersions = append(a.schemaVersions, int32(e.SchemaVersion))
	a.data = append(a.data, string(e.Data))
	a.meta = append(a.meta, string(meta))
	a.recorded = append(a.recorded, e.RecordedAt)
	return nil
}

// route calls the workflow's Route, turning a panic into an error and
// checking the key.
func (r *Runner[S]) route(e eventstore.Event, ev any) (key string, ok bool, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = storeview.Recovered(r.log, "workflow route", v)
		}
	}()
	key, ok = r.wf.Route(e, ev)
	if ok {
		if err := checkKey(key); err != nil {
			return "", false, fmt.Errorf("workflow %q: route %s (%s of %q): %w", r.wf.Name, e.ID, e.Type, e.StreamID, err)
		}
	}
	return key, ok, nil
}
