package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/failure"
	"github.com/strata-go/strata/internal/instrument"
	"github.com/strata-go/strata/internal/retry"
	"github.com/strata-go/strata/internal/storeview"
	"github.com/strata-go/strata/internal/subdefault"
	"github.com/strata-go/strata/telemetry"
)

// SubscriptionPrefix is put before Config.Name to form the name of the
// relay's subscription: its checkpoints, leases and dead letters are kept
// under "outbox:NAME" (see eventstore.Store.SubscriptionStatuses,
// DeadLetters, RetryDeadLetters and ResetSubscription).
const SubscriptionPrefix = "outbox:"

// ErrPermanent marks an error that retrying will not cure: the message is
// dead-lettered after Config.MaxAttempts instead of retried forever. Wrap
// an error with Permanent to mark it; mapper errors are marked for you.
// It is the module's one permanent-failure mark, so errors marked by
// other Strata packages match it too.
var ErrPermanent = failure.ErrPermanent

// Permanent marks err as permanent (errors.Is(err, ErrPermanent) holds;
// errors.Is and errors.As still see err). Permanent(nil) is nil.
func Permanent(err error) error { return failure.Permanent(err) }

// relayMaxRetryBackoff is Config.MaxRetryBackoff's default, a deliberate
// exception to the subscription's (see the field).
const relayMaxRetryBackoff = 5 * time.Second

// Config configures a Relay. The zero value (or nil) means every default.
type Config struct {
	// Name names the relay; its subscription is SubscriptionPrefix+Name.
	// Run several relays (to different publishers, or with different
	// filters) under different names. Default "relay".
	Name string
	// Topic picks the topic of an event's message. Default: the event's
	// category (eventstore.Category of its stream ID: "order" for
	// "order-42").
	Topic func(e eventstore.Event) string
	// Mapper turns a domain event into the integration message to publish,
	// or into nil to skip the event (the checkpoint still moves past it).
	// Keep the message UUID equal to the event ID so that consumers can
	// deduplicate. An error is permanent (see ErrPermanent): the event is
	// dead-lettered after MaxAttempts. Default: NewMessage.
	Mapper func(e eventstore.Event) (*message.Message, error)
	// Categories and Types keep only the events of these stream categories
	// and types; empty means all. Filtering here is cheaper than in Mapper:
	// the log read skips the rest.
	Categories []string
	// Types keeps only events of these types; empty means all.
	Types []string
	// BatchSize is the most events read and published per batch; the
	// checkpoint moves once per batch, after every message of it was
	// acknowledged. Large batches keep more streams in flight at once and
	// cost nothing in Postgres (the relay's transaction writes only the
	// checkpoint); a crash re-publishes at most one batch. Default 2000.
	BatchSize int
	// Concurrency is how many streams of a batch are published at once.
	// Each stream's messages are published one after another (the next
	// only after the broker acknowledged the previous), so per-stream order
	// holds at any concurrency. Default 64.
	Concurrency int
	// Partitions splits the relay by a hash of the stream ID so that
	// several processes share the work; each partition has one owner at a
	// time. Default 1 (one active process; others stand by and take over
	// after a crash). Changing it needs eventstore.Store.ResetSubscription.
	Partitions int
	// Permanent reports publish errors that retrying will not cure (a
	// message the broker refuses for its size, say). Such a message is
	// retried MaxAttempts times and then becomes a dead letter, with its
	// stream's later events parked behind it so order is kept; the rest of
	// the log goes on. Every other error (broker down, timeouts) is
	// retried with backoff for as long as it takes and never dead-letters.
	// Errors matching ErrPermanent are permanent whatever Permanent says.
	// Default nil: only ErrPermanent errors are permanent.
	Permanent func(error) bool
	// MaxAttempts is how many times a permanently failing event is tried
	// before it is dead-lettered. Default: the subscription's
	// (eventstore.SubscriptionConfig.MaxAttempts, 5).
	MaxAttempts int
	// RetryBackoff is the first wait after a failed publish; it doubles
	// with each failure (±20% jitter) up to MaxRetryBackoff. Default: the
	// subscription's (eventstore.SubscriptionConfig.RetryBackoff, 100ms).
	RetryBackoff time.Duration
	// MaxRetryBackoff caps the wait between attempts while the broker is
	// down. Default 5s, shorter than the subscription's 30s on purpose: the
	// subscription's cap spares a recovering Postgres the retries of every
	// process at once, while a relay's retries go to the broker, one
	// publish each, and the cap is how late the relay notices that the
	// broker is back, so it bounds the publishing delay after an outage.
	MaxRetryBackoff time.Duration
	// LeaseTTL is how long a crashed relay process keeps its partitions
	// before another takes over. Default: the subscription's
	// (eventstore.SubscriptionConfig.LeaseTTL, 5s).
	LeaseTTL time.Duration
	// PollInterval is the longest wait between reads of an idle log when
	// no notification arrives. Default: the subscription's
	// (eventstore.SubscriptionConfig.PollInterval, 1s).
	PollInterval time.Duration
	// Owner names this process in leases. Default "HOSTNAME:PID:RANDOM".
	Owner string
	// Logger receives warnings about failed publishes. Default: the
	// store's logger.
	Logger *slog.Logger
	// MeterProvider makes the relay's metrics (strata.relay.published,
	// strata.relay.errors) and those of its subscription (lag, batches,
	// errors, dead letters; see package telemetry). Default: the store's
	// (eventstore.Config.MeterProvider, else the global one).
	MeterProvider metric.MeterProvider
	// TracerProvider makes the strata.relay.publish spans. Default: the
	// store's (eventstore.Config.TracerProvider).
	TracerProvider trace.TracerProvider
	// HealthMaxLag is how many events behind the log the relay may be
	// before Check reports it Lagging. Default 10,000.
	HealthMaxLag int64
	// HealthMaxLagTime is how old its oldest unpublished event may be
	// before Check reports it Lagging. Default 30s.
	HealthMaxLagTime time.Duration
	// Breaker configures the circuit breaker of the relay's subscription:
	// after a run of failed publishes (every error Permanent does not
	// report says the broker is unavailable) every partition of this
	// process pauses, then one event probes the broker (see
	// eventstore.BreakerConfig). Default: on, 5 failures, open for
	// MaxRetryBackoff.
	Breaker eventstore.BreakerConfig
}

// Health is the relay's view of its broker, as Relay.Health reports it.
type Health struct {
	// Healthy is false while publishes are failing: from the first failed
	// publish until the next successful one.
	Healthy bool
	// LastError is the latest publish error while unhealthy; nil when
	// healthy.
	LastError error
	// FailingSince is when the current run of failures began (zero when
	// healthy).
	FailingSince time.Time
	// LastPublished is when a publish last succeeded (zero before the
	// first).
	LastPublished time.Time
	// Published counts messages the broker acknowledged since the Relay was
	// created (it is not reset when Run begins again).
	// Re-publications after a failure or a restart are counted again.
	Published int64
}

// Relay publishes every committed event of the store to a Watermill
// publisher, in each stream's order, at least once. Create it with
// NewRelay and start it with Run.
type Relay struct {
	store *eventstore.Store
	pub   message.Publisher
	cfg   Config
	log   *slog.Logger

	published atomic.Int64
	running   atomic.Int32 // Run calls in progress
	mu        sync.Mutex
	health    Health

	tracer trace.Tracer
	in     *instrument.Set
	topics sync.Map // topic → *topicAttrs
}

// topicAttrs are the measurement options of one topic, made once.
type topicAttrs struct{ add []metric.AddOption }

// NewRelay returns a relay from store to publisher. The publisher must
// return from Publish only once the broker acknowledged the messages
// (JetStream acks, RabbitMQ publisher confirms, Kafka acks): the relay's
// guarantee is only as good as that acknowledgement. The constructors in
// the natsjs, rabbitmq and kafka subpackages are configured so. NewRelay
// does not touch the database until Run.
func NewRelay(store *eventstore.Store, publisher message.Publisher, cfg *Config) *Relay {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Name == "" {
		c.Name = "relay"
	}
	if c.Topic == nil {
		c.Topic = func(e eventstore.Event) string { return e.Category() }
	}
	if c.Mapper == nil {
		c.Mapper = func(e eventstore.Event) (*message.Message, error) { return NewMessage(e), nil }
	}
	subdefault.Or(&c.BatchSize, 2000)
	subdefault.Or(&c.Concurrency, 64)
	// Run's restart loop reads RetryBackoff itself; the other
	// subscription fields stay zero, which the subscription reads as its
	// default.
	subdefault.Or(&c.RetryBackoff, subdefault.RetryBackoff)
	subdefault.Or(&c.MaxRetryBackoff, relayMaxRetryBackoff)
	if c.MeterProvider == nil && store != nil {
		c.MeterProvider = storeview.Of(store).MeterProvider
	}
	if c.TracerProvider == nil && store != nil {
		c.TracerProvider = storeview.Of(store).TracerProvider
	}
	subdefault.Or(&c.HealthMaxLag, 10_000)
	subdefault.Or(&c.HealthMaxLagTime, 30*time.Second)
	log := c.Logger
	if log == nil && store != nil {
		log = storeview.Of(store).Logger
	}
	if log == nil {
		log = slog.Default()
	}
	return &Relay{store: store, pub: publisher, cfg: c, log: log.With("relay", c.Name), health: Health{Healthy: true},
		tracer: telemetry.Tracer(c.TracerProvider), in: instrument.New(c.MeterProvider)}
}

// SubscriptionName returns the name of the relay's subscription, under
// which eventstore's admin functions see its checkpoints and dead letters.
func (r *Relay) SubscriptionName() string { return SubscriptionPrefix + r.cfg.Name }

// Health reports whether publishes are succeeding; safe to call from any
// goroutine (a health endpoint, say).
func (r *Relay) Health() Health {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.health
	h.Published = r.published.Load()
	return h
}

// Run relays events until ctx is done, and returns nil then. Many
// processes may run the same relay: each partition is published by one of
// them at a time, and a crashed process's partitions are taken over after
// LeaseTTL. A broker outage does not end Run: publishing is retried with
// backoff until the broker is back, and Health reports it meanwhile. Nor
// does a database outage: Run starts again, with backoff, until it can
// register its subscription, and returns an error only for a
// subscription registered with another number of partitions, or when the
// database refuses the connection's credentials or TLS (an error matching
// eventstore.ErrAuth), which no retry can cure.
func (r *Relay) Run(ctx context.Context) error {
	c := &r.cfg
	sub, err := r.store.Subscription(eventstore.SubscriptionConfig{
		Name: r.SubscriptionName(),
		// Published as stored: personal fields stay sealed in every broker
		// copy, and are shredded with their key (package shred).
		Sealed:          true,
		Categories:      c.Categories,
		Types:           c.Types,
		Partitions:      c.Partitions,
		BatchSize:       c.BatchSize,
		MaxAttempts:     c.MaxAttempts,
		RetryBackoff:    c.RetryBackoff,
		MaxRetryBackoff: c.MaxRetryBackoff,
		OnFailure:       eventstore.Park,
		Transient:       failure.Rules{IsPermanent: c.Permanent, TransientByDefault: true}.Transient,
		LeaseTTL:        c.LeaseTTL,
		PollInterval:    c.PollInterval,
		Owner:           c.Owner,
		Logger:          c.Logger,
		MeterProvider:   c.MeterProvider,
		Breaker:         c.Breaker,
	})
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	r.running.Add(1)
	defer r.running.Add(-1)
	wait := retry.Backoff(c.RetryBackoff, c.MaxRetryBackoff)
	for {
		err := sub.Run(ctx, r.handle)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, eventstore.ErrPartitionsChanged) || errors.Is(err, eventstore.ErrAuth) {
			return fmt.Errorf("outbox: relay %q: %w", c.Name, err)
		}
		// The subscription gives up only when it cannot register at
		// start-up (the database unreachable, a connection lost): a
		// database outage must not end the relay any more than a broker
		// outage does. A refused password or certificate (ErrAuth) is no
		// outage: retrying would only hide it.
		backoff := wait.NextBackOff()
		r.log.Warn("strata: relay could not start; retrying", "err", err, "retry_in", backoff)
		if !retry.Sleep(ctx, backoff) {
			return nil
		}
	}
}

// outgoing is one message to publish, its topic and its event.
type outgoing struct {
	topic string
	msg   *message.Message
	event *eventstore.Event
}

// handle is the relay's subscription handler. It never touches tx, so the
// transaction holds no ID (and holds back no reader) while it publishes;
// the subscription commits the checkpoint after handle returns nil, that
// is after every message of the batch was acknowledged.
func (r *Relay) handle(ctx context.Context, _ pgx.Tx, events []eventstore.Event) error {
	// Group by stream, keeping each stream's log order (which is its
	// version order).
	index := make(map[string]int, 64)
	var groups [][]outgoing
	for k := range events {
		e := events[k]
		msg, err := r.cfg.Mapper(e)
		if err != nil {
			return Permanent(fmt.Errorf("outbox: map event %s (%s v%d of %q): %w", e.ID, e.Type, e.Version, e.StreamID, err))
		}
		if msg == nil {
			continue
		}
		i, ok := index[e.StreamID]
		if !ok {
			i = len(groups)
			index[e.StreamID] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], outgoing{topic: r.cfg.Topic(e), msg: msg, event: &events[k]})
	}
	if len(groups) == 0 {
		return nil
	}
	var err error
	if len(groups) == 1 || r.cfg.Concurrency == 1 {
		for _, g := range groups {
			if err = r.publishStream(ctx, g); err != nil {
				break
			}
		}
	} else {
		err = r.publishConcurrently(ctx, groups)
	}
	if err == nil || ctx.Err() == nil {
		// A batch abandoned because Run is ending says nothing about the
		// broker: Health stays as it was.
		r.record(err)
	}
	return err
}

// publishConcurrently publishes the groups, up to Concurrency at once, and
// waits for all of them. After a failure it starts no further groups: the
// subscription retries the batch anyway.
func (r *Relay) publishConcurrently(ctx context.Context, groups [][]outgoing) error {
	sem := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var failed atomic.Bool
	for _, g := range groups {
		if failed.Load() || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := r.publishStream(ctx, g); err != nil {
				failed.Store(true)
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return ctx.Err()
}

// publishStream publishes one stream's messages in order, in one Publish
// call per run of messages with the same topic. Each message whose event
// carries a trace context is published in a strata.relay.publish span, a
// child of that context, whose own context the message carries on.
func (r *Relay) publishStream(ctx context.Context, g []outgoing) error {
	var spans []trace.Span
	for i := 0; i < len(g); {
		j := i + 1
		for j < len(g) && g[j].topic == g[i].topic {
			j++
		}
		msgs := make([]*message.Message, j-i)
		spans = spans[:0]
		for k := range msgs {
			msgs[k] = g[i+k].msg
			if span := r.startPublish(ctx, g[i+k]); span != nil {
				spans = append(spans, span)
			}
		}
		attrs := r.topicAttrs(g[i].topic)
		err := r.pub.Publish(g[i].topic, msgs...)
		for _, span := range spans {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, "publish failed")
			}
			span.End()
		}
		if err != nil {
			r.in.RelayErrors.Add(ctx, 1, attrs.add...)
			return fmt.Errorf("outbox: publish to %q (stream %q): %w", g[i].topic, g[i].event.StreamID, err)
		}
		r.in.RelayPublished.Add(ctx, int64(len(msgs)), attrs.add...)
		r.published.Add(int64(len(msgs)))
		i = j
	}
	return nil
}

// startPublish starts the publish span of a message whose event carries a
// trace context and puts the span's context in the message's metadata; it
// returns nil for an event without one.
func (r *Relay) startPublish(ctx context.Context, o outgoing) trace.Span {
	if !telemetry.HasTraceContext(o.event.Metadata.Values) {
		return nil
	}
	ctx, span := r.tracer.Start(telemetry.Extract(ctx, o.event.Metadata.Values), telemetry.SpanRelayPublish,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String(telemetry.AttrRelay, r.cfg.Name),
			attribute.String(telemetry.AttrStreamID, o.event.StreamID),
			attribute.String(telemetry.AttrEventType, o.event.Type),
			attribute.String(telemetry.AttrEventID, o.event.ID.String()),
			attribute.String(telemetry.AttrMessagingDestination, o.topic),
			attribute.String(telemetry.AttrMessagingMessageID, o.msg.UUID),
		))
	if o.msg.Metadata == nil {
		o.msg.Metadata = message.Metadata{}
	}
	telemetry.Inject(ctx, o.msg.Metadata)
	return span
}

// topicAttrs returns the metric attributes of a topic.
func (r *Relay) topicAttrs(topic string) *topicAttrs {
	if a, ok := r.topics.Load(topic); ok {
		return a.(*topicAttrs)
	}
	set := attribute.NewSet(attribute.String(telemetry.AttrRelay, r.cfg.Name), attribute.String(telemetry.AttrTopic, topic))
	a, _ := r.topics.LoadOrStore(topic, &topicAttrs{add: []metric.AddOption{metric.WithAttributeSet(set)}})
	return a.(*topicAttrs)
}

// Check reports the relay's health for a telemetry.HealthHandler: Failing
// while Run is not running in this process or while publishes fail (since
// the first failure, with the error); Lagging when its subscription is
// more than HealthMaxLag events or HealthMaxLagTime behind the log, or has
// dead letters; Ready otherwise. It reads the subscription's status from
// the database (a failure to read it is Failing).
func (r *Relay) Check(ctx context.Context) telemetry.Health {
	if r.running.Load() == 0 {
		return telemetry.Health{State: telemetry.Failing, Reason: "relay " + r.cfg.Name + " is not running in this process"}
	}
	if h := r.Health(); !h.Healthy {
		reason := "publishing fails"
		if h.LastError != nil {
			reason += ": " + h.LastError.Error()
		}
		return telemetry.Health{State: telemetry.Failing, Reason: reason, Since: h.FailingSince}
	}
	// Counting one event past HealthMaxLag tells all the check needs, at a
	// bounded cost.
	sts, err := r.store.ProbeSubscription(ctx, r.SubscriptionName(), eventstore.ProbeOptions{MaxLag: r.cfg.HealthMaxLag + 1})
	if err != nil {
		return telemetry.Health{State: telemetry.Failing, Reason: err.Error()}
	}
	var lag, dead int64
	var lagTime time.Duration
	for _, st := range sts {
		lag += st.Lag
		dead += st.DeadLetters
		lagTime = max(lagTime, st.LagTime)
	}
	switch {
	case lag > r.cfg.HealthMaxLag || lagTime > r.cfg.HealthMaxLagTime:
		return telemetry.Health{State: telemetry.Lagging, Reason: fmt.Sprintf("%d events behind, the oldest recorded %s ago", lag, lagTime.Round(time.Millisecond)),
			Since: time.Now().Add(-lagTime)}
	case dead > 0:
		return telemetry.Health{State: telemetry.Lagging, Reason: fmt.Sprintf("%d dead letters", dead)}
	}
	return telemetry.Health{State: telemetry.Ready}
}

// record updates Health after a batch.
func (r *Relay) record(err error) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		if !r.health.Healthy {
			r.log.Info("strata: relay publishing again", "failing_for", now.Sub(r.health.FailingSince).Round(time.Millisecond))
		}
		r.health.Healthy, r.health.LastError, r.health.FailingSince, r.health.LastPublished = true, nil, time.Time{}, now
		return
	}
	if r.health.Healthy {
		r.health.FailingSince = now
	}
	r.health.Healthy, r.health.LastError = false, err
}
