package eventstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/strata-go/strata/telemetry"
)

// ErrUnavailable marks a handler error that says the handler's downstream
// (a broker, a service, a database other than the store's) is down, not
// that the event is bad. Wrap an error with Unavailable to mark it. Such
// errors are transient (retried for as long as it takes, never
// dead-lettered) and feed the subscription's circuit breaker.
var ErrUnavailable = errors.New("eventstore: downstream unavailable")

type unavailableError struct{ err error }

func (e unavailableError) Error() string        { return e.err.Error() }
func (e unavailableError) Unwrap() []error      { return []error{e.err, ErrUnavailable} }
func (e unavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unavailable marks err as a downstream outage: errors.Is(err,
// ErrUnavailable) holds, and errors.Is and errors.As still see err.
// Unavailable(nil) is nil.
func Unavailable(err error) error {
	if err == nil {
		return nil
	}
	return unavailableError{err}
}

// BreakerConfig configures a subscription's circuit breaker: one per
// subscription and process, shared by the partitions this process runs.
//
// The breaker tells a downstream outage from a poison event by the error:
// a failure counts toward opening it only when the handler's error is
// marked with Unavailable or is transient by SubscriptionConfig.Transient
// (for the relay: every publish error its Permanent does not report; for
// a projection: a lost connection, or what its Transient reports). Any
// other error is the event's own: it goes to retries and dead letters as
// without a breaker, and, since the downstream answered, it counts as a
// success for the breaker.
//
// After Failures such failures in a row the breaker opens: every
// partition's worker pauses before its next batch (nothing is attempted,
// nothing is parked, no transaction is open) for OpenFor. Then it
// half-opens: one worker handles one event as a probe while the others
// wait; if the probe succeeds the breaker closes and every worker goes
// on, if it fails the breaker opens again. The state is in Status (State
// "open" or "half-open" on the partitions this process owns), in
// Subscription.BreakerState and in the strata.subscription.breaker.*
// metrics.
type BreakerConfig struct {
	// Disabled turns the breaker off: every failure is retried by its
	// partition alone, as before breakers existed. Default false.
	Disabled bool
	// Failures is how many failures in a row, each saying the downstream
	// is unavailable, open the breaker. Default 5.
	Failures int
	// OpenFor is how long the breaker stays open before it half-opens.
	// Default 5s, or the subscription's MaxRetryBackoff if shorter (so a
	// pause is never longer than the retries it replaces would wait).
	OpenFor time.Duration
}

// Breaker states, as BreakerState and Status report them.
const (
	// BreakerClosed: events flow.
	BreakerClosed = "closed"
	// BreakerOpen: consumption is paused after a run of downstream
	// failures.
	BreakerOpen = "open"
	// BreakerHalfOpen: one event is let through as a probe.
	BreakerHalfOpen = "half-open"
)

// errBreakerProbe is what the breaker answers a batch of several events
// while half-open: the worker falls back to one event at a time, and the
// first is the probe.
var errBreakerProbe = errors.New("eventstore: circuit breaker half-open: probing with one event")

// breaker is a subscription's circuit breaker (see BreakerConfig).
type breaker struct {
	sub   *Subscription
	cb    *gobreaker.CircuitBreaker[struct{}]
	poll  time.Duration          // how often a paused worker looks again
	dirty atomic.Bool            // a state change not yet written to the partitions' rows
	last  atomic.Pointer[string] // the last downstream error's text
	sql   string                 // breakerStateSQL, expanded

	mu      sync.Mutex // serializes the writes of the state
	enterMu sync.Mutex // guards entered (taken under the breaker's own lock)
	entered []string   // states entered since the last record, for the metric

	transitions metric.Int64Counter
	attrs       attribute.Set
	gauge       metric.Registration
}

// breakerStateSQL records the breaker's state on the partitions this
// process owns (the breaker is per process). It skips the rows locked by
// a batch in flight: the breaker's caller may itself be inside such a
// batch (its handler's transaction locks its partition's row first), and
// a batch that commits sets its row's state anyway.
const breakerStateSQL = `UPDATE {schema}.subscriptions SET state = $3, last_error = $4, updated_at = now()
	WHERE (name, partition) IN (
		SELECT name, partition FROM {schema}.subscriptions WHERE name = $1 AND owner = $2 FOR UPDATE SKIP LOCKED)`

// newBreaker returns the subscription's breaker, nil when disabled.
func newBreaker(sub *Subscription) *breaker {
	cfg := sub.cfg.Breaker
	if cfg.Disabled {
		return nil
	}
	if cfg.Failures <= 0 {
		cfg.Failures = 5
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = min(5*time.Second, sub.cfg.MaxRetryBackoff)
	}
	b := &breaker{sub: sub, sql: sub.store.sql.expand.Replace(breakerStateSQL), poll: min(max(cfg.OpenFor/10, 5*time.Millisecond), 250*time.Millisecond),
		attrs: attribute.NewSet(attribute.String(telemetry.AttrSubscription, sub.cfg.Name))}
	failures := uint32(cfg.Failures)
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        sub.cfg.Name,
		MaxRequests: 1, // one probe
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsSuccessful: func(err error) bool {
			if err == nil || !b.downstream(err) {
				return true
			}
			msg := err.Error()
			b.last.Store(&msg)
			return false
		},
		IsExcluded: func(err error) bool {
			return errors.Is(err, errFenced) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		},
		OnStateChange: func(_ string, _, to gobreaker.State) {
			// Called under the breaker's lock, with no context: the
			// caller of the breaker records it (record).
			b.enterMu.Lock()
			b.entered = append(b.entered, stateName(to))
			b.enterMu.Unlock()
			b.dirty.Store(true)
			sub.log.Warn("strata: circuit breaker "+stateName(to), "last_error", b.lastError())
		},
	})
	b.transitions = sub.tel.in.SubscriptionBreakerTransitions
	return b
}

// registerGauge starts the breaker's state gauge (0 closed, 1 half-open,
// 2 open) for one Run; the returned function stops it.
func (b *breaker) registerGauge() func() {
	in := b.sub.tel.in
	g := in.SubscriptionBreakerState
	reg, err := in.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(g, int64(b.cb.State()), metric.WithAttributeSet(b.attrs))
		return nil
	}, g)
	if err != nil {
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}

// downstream reports whether err says the downstream is unavailable.
func (b *breaker) downstream(err error) bool {
	return errors.Is(err, ErrUnavailable) || b.sub.isTransient(err)
}

func (b *breaker) lastError() string {
	if msg := b.last.Load(); msg != nil {
		return *msg
	}
	return ""
}

func stateName(s gobreaker.State) string {
	switch s {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}

// state returns the breaker's state; closed when there is no breaker.
func (b *breaker) state() string {
	if b == nil {
		return BreakerClosed
	}
	return stateName(b.cb.State())
}

// wrap puts the breaker in front of h: while open, a call waits (ctx
// permitting) until it half-opens; while half-open, a batch of several
// events is refused with errBreakerProbe and a single event either is the
// probe or waits for the probe's outcome.
func (b *breaker) wrap(h Handler) Handler {
	if b == nil {
		return h
	}
	return func(ctx context.Context, tx pgx.Tx, events []Event) error {
		for {
			st := b.cb.State() // moves an expired open breaker to half-open
			b.record(ctx)
			if st == gobreaker.StateHalfOpen && len(events) > 1 {
				return errBreakerProbe
			}
			_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, h(ctx, tx, events) })
			b.record(ctx)
			if !errors.Is(err, gobreaker.ErrOpenState) && !errors.Is(err, gobreaker.ErrTooManyRequests) {
				return err
			}
			if !sleep(ctx, b.poll) {
				return ctx.Err()
			}
		}
	}
}

// record writes a state change to the rows of the partitions this process
// owns, best effort: Status shows "open" or "half-open" (with the last
// downstream error) and "running" again once closed.
func (b *breaker) record(ctx context.Context) {
	if !b.dirty.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.dirty.Swap(false) {
		return
	}
	state, lastErr := b.state(), b.lastError() // before enterMu: State may change it
	b.enterMu.Lock()
	entered := b.entered
	b.entered = nil
	b.enterMu.Unlock()
	for _, to := range entered {
		b.transitions.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
			attribute.String(telemetry.AttrSubscription, b.sub.cfg.Name), attribute.String(telemetry.AttrBreakerState, to))))
	}
	var e *string
	switch state {
	case BreakerClosed:
		state = "running"
	default:
		msg := "circuit breaker " + state + ": " + lastErr
		e = &msg
	}
	if _, err := b.sub.store.pool.Exec(ctx, b.sql, b.sub.cfg.Name, b.sub.cfg.Owner, state, e); err != nil && ctx.Err() == nil {
		b.sub.log.Warn("strata: could not record the circuit breaker's state", "err", err)
	}
}

// BreakerState returns the state of the subscription's circuit breaker in
// this process: BreakerClosed, BreakerOpen or BreakerHalfOpen (always
// BreakerClosed when BreakerConfig.Disabled).
func (sub *Subscription) BreakerState() string { return sub.brk.state() }
