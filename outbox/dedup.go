package outbox

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/telemetry"
)

// DeduplicatorConfig configures a Deduplicator. Consumer is required.
type DeduplicatorConfig struct {
	// Consumer names the consuming service or handler: message IDs are
	// remembered per consumer, so two consumers of one message each handle
	// it once. Required.
	Consumer string
	// Schema is the Postgres schema holding the processed_messages table
	// (migrations.Apply creates it). Default "strata".
	Schema string
	// Now is the clock Expire measures age against. Default time.Now.
	Now func() time.Time
	// TracerProvider makes the strata.consume spans. Default: the global
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the strata.consume.* metrics. Default: the global
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Deduplicator makes a Watermill consumer's effects exactly-once: it
// remembers, in Postgres, the ID of every message a handler handled, in
// the same transaction as the handler's own writes. Create it with
// NewDeduplicator and wrap handlers with Middleware.
type Deduplicator struct {
	pool     *pgxpool.Pool
	cfg      DeduplicatorConfig
	insert   string
	expire   string
	contains string

	tracer trace.Tracer
	in     *telemetry.Instruments
	attrs  [3][]metric.RecordOption // by outcome: ok, duplicate, error
	counts [3][]metric.AddOption
}

var consumeOutcomes = [3]string{telemetry.OutcomeOK, telemetry.OutcomeDuplicate, telemetry.OutcomeError}

// NewDeduplicator returns a Deduplicator storing processed message IDs
// through pool. It does not touch the database until used.
func NewDeduplicator(pool *pgxpool.Pool, cfg *DeduplicatorConfig) (*Deduplicator, error) {
	var c DeduplicatorConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Consumer == "" {
		return nil, fmt.Errorf("%w: outbox: deduplicator needs a consumer name", eventstore.ErrInvalidArgument)
	}
	if len(c.Consumer) > eventstore.MaxStreamIDLength || !utf8.ValidString(c.Consumer) || strings.IndexByte(c.Consumer, 0) >= 0 {
		return nil, fmt.Errorf("%w: outbox: deduplicator consumer name %q: want at most %d bytes of UTF-8 without NUL", eventstore.ErrInvalidArgument, c.Consumer, eventstore.MaxStreamIDLength)
	}
	if c.Schema == "" {
		c.Schema = "strata"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	table := pgx.Identifier{c.Schema, "processed_messages"}.Sanitize()
	d := &Deduplicator{
		pool:   pool,
		cfg:    c,
		tracer: telemetry.Tracer(c.TracerProvider),
		in:     telemetry.NewInstruments(c.MeterProvider),
		// The primary key (consumer, message_id) decides: a second delivery
		// inserts nothing. A concurrent delivery of the same message waits
		// on the first one's uncommitted row and then inserts nothing (or,
		// if the first rolled back, inserts and goes on).
		insert: `INSERT INTO ` + table + ` (consumer, message_id, processed_at) VALUES ($1, $2, $3)
			ON CONFLICT (consumer, message_id) DO NOTHING`,
		// processed_messages_age_idx.
		expire:   `DELETE FROM ` + table + ` WHERE consumer = $1 AND processed_at < $2`,
		contains: `SELECT EXISTS (SELECT 1 FROM ` + table + ` WHERE consumer = $1 AND message_id = $2)`,
	}
	for i, o := range consumeOutcomes {
		set := attribute.NewSet(attribute.String(telemetry.AttrConsumer, c.Consumer), attribute.String(telemetry.AttrOutcome, o))
		d.attrs[i] = []metric.RecordOption{metric.WithAttributeSet(set)}
		d.counts[i] = []metric.AddOption{metric.WithAttributeSet(set)}
	}
	return d, nil
}

// Deduplicate is NewDeduplicator(pool, &DeduplicatorConfig{Consumer:
// consumer, Schema: schema}).Middleware, for router.AddMiddleware or
// handler.AddMiddleware. schema "" means "strata". It panics if consumer
// is empty.
func Deduplicate(pool *pgxpool.Pool, schema, consumer string) message.HandlerMiddleware {
	d, err := NewDeduplicator(pool, &DeduplicatorConfig{Consumer: consumer, Schema: schema})
	if err != nil {
		panic(err)
	}
	return d.Middleware
}

type txKey struct{}

// TxFromContext returns the transaction a Deduplicator opened for the
// message being handled (use msg.Context()). Write the handler's effects
// through it: they commit together with the record that the message was
// handled, or not at all. ok is false outside Deduplicator.Middleware.
func TxFromContext(ctx context.Context) (tx pgx.Tx, ok bool) {
	tx, ok = ctx.Value(txKey{}).(pgx.Tx)
	return tx, ok
}

// Middleware wraps h so that each message ID is handled once per consumer.
// For every delivery it begins a transaction, records the message ID in
// it and, unless the ID was already recorded, runs h with the transaction
// in the message's context (TxFromContext). If h succeeds the transaction
// commits; if h fails it rolls back and the error goes back to Watermill,
// which nacks the message for redelivery. A redelivered message that was
// already handled is acknowledged without running h again, and produces no
// messages.
//
// Each delivery is a strata.consume span, a child of the trace context in
// the message's metadata (see package telemetry); the message's context
// holds the span while h runs, so the events h appends with it continue
// the trace. Deliveries are counted and timed by outcome
// (strata.consume.messages, strata.consume.duration).
func (d *Deduplicator) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		start := time.Now()
		orig := msg.Context()
		ctx, span := d.tracer.Start(telemetry.Extract(orig, msg.Metadata), telemetry.SpanConsume,
			trace.WithSpanKind(trace.SpanKindConsumer))
		if span.IsRecording() {
			span.SetAttributes(
				attribute.String(telemetry.AttrConsumer, d.cfg.Consumer),
				attribute.String(telemetry.AttrMessagingMessageID, msg.UUID),
				attribute.String(telemetry.AttrEventType, msg.Metadata.Get(MetaType)),
				attribute.String(telemetry.AttrStreamID, msg.Metadata.Get(MetaStream)),
			)
		}
		var out []*message.Message
		duplicate := false
		err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, d.insert, d.cfg.Consumer, msg.UUID, d.cfg.Now())
			if err != nil {
				return fmt.Errorf("outbox: record message %s: %w", msg.UUID, err)
			}
			if tag.RowsAffected() == 0 {
				duplicate = true
				return nil // handled before
			}
			msg.SetContext(context.WithValue(ctx, txKey{}, tx))
			defer msg.SetContext(orig)
			out, err = h(msg)
			return err
		})
		outcome := 0
		switch {
		case err != nil:
			outcome = 2
			span.RecordError(err)
			span.SetStatus(codes.Error, "handler failed")
		case duplicate:
			outcome = 1
		}
		span.SetAttributes(attribute.Bool(telemetry.AttrDuplicate, duplicate))
		span.End()
		d.in.ConsumeMessages.Add(ctx, 1, d.counts[outcome]...)
		d.in.ConsumeDuration.Record(ctx, time.Since(start).Seconds(), d.attrs[outcome]...)
		if err != nil {
			return nil, err
		}
		return out, nil
	}
}

// Processed reports whether the consumer has handled (and committed) the
// message with this ID and the ID has not expired.
func (d *Deduplicator) Processed(ctx context.Context, messageID string) (bool, error) {
	var ok bool
	if err := d.pool.QueryRow(ctx, d.contains, d.cfg.Consumer, messageID).Scan(&ok); err != nil {
		return false, fmt.Errorf("outbox: processed %s: %w", messageID, err)
	}
	return ok, nil
}

// Expire forgets the consumer's message IDs recorded more than olderThan
// ago and returns how many it forgot. A message redelivered after its ID
// expired is handled again, so olderThan must exceed the longest time the
// broker may redeliver (its retention or redelivery window). Call it from
// a periodic job.
func (d *Deduplicator) Expire(ctx context.Context, olderThan time.Duration) (int64, error) {
	tag, err := d.pool.Exec(ctx, d.expire, d.cfg.Consumer, d.cfg.Now().Add(-olderThan))
	if err != nil {
		return 0, fmt.Errorf("outbox: expire processed messages of %q: %w", d.cfg.Consumer, err)
	}
	return tag.RowsAffected(), nil
}
