package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
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
	"github.com/strata-go/strata/internal/instrument"
	"github.com/strata-go/strata/internal/pgtx"
	"github.com/strata-go/strata/internal/sqltext"
	"github.com/strata-go/strata/telemetry"
)

// DeduplicatorConfig configures a Deduplicator. Consumer is required.
type DeduplicatorConfig struct {
	// Consumer names the consuming service or handler: message IDs are
	// remembered per consumer, so two consumers of one message each handle
	// it once. Required; valid UTF-8 without NUL, at most 1024 bytes.
	Consumer string
	// Schema is the Postgres schema holding the processed_messages table
	// (migrations.Apply creates it). Default "strata".
	Schema string
	// MessageID returns the key a message is deduplicated by. Default: its
	// UUID (the event ID for messages of the relay). Set it for producers
	// that leave the UUID empty or change it on every send, to an ID they
	// put in the metadata or a business key. A message whose key is empty,
	// longer than 1024 bytes, not valid UTF-8 or holding a NUL is refused
	// with ErrInvalidMessageID, never handled nor recorded.
	MessageID func(msg *message.Message) string
	// Now is the clock Expire measures age against. Default time.Now.
	Now func() time.Time
	// TracerProvider makes the strata.consume spans. Default: the global
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the strata.consume.* metrics. Default: the global
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// ErrInvalidMessageID is matched by the error a Deduplicator returns for a
// message it cannot deduplicate: its key (DeduplicatorConfig.MessageID,
// by default the UUID) is empty, longer than 1024 bytes, not valid UTF-8 or
// holds a NUL. The handler did not run and nothing was recorded; the
// router nacks the message, so it is redelivered, or moved aside by
// Watermill's PoisonQueueWithFilter middleware (filter on
// errors.Is(err, ErrInvalidMessageID)), rather than acknowledged
// unhandled.
var ErrInvalidMessageID = errors.New("outbox: message has no usable ID to deduplicate by")

// maxIDLen bounds a consumer name and a message ID: together they must fit
// in one entry of processed_messages' primary key index (about 2.7 kB).
const maxIDLen = 1024

// checkID says what makes s unusable as a consumer name or message ID, or
// "" if nothing does.
func checkID(s string) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > maxIDLen:
		return fmt.Sprintf("%d bytes, more than %d", len(s), maxIDLen)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return "holds a NUL byte"
	}
	return ""
}

// Deduplicator makes a Watermill consumer's effects exactly-once: it
// remembers, in Postgres, the ID of every message a handler handled, in
// the same transaction as the handler's own writes, together with the
// messages the handler returned. Create it with NewDeduplicator and wrap
// handlers with Middleware.
type Deduplicator struct {
	pool     *pgxpool.Pool
	cfg      DeduplicatorConfig
	lockSeed string
	lock     string
	lookup   string
	insert   string
	expire   string
	contains string

	tracer trace.Tracer
	in     *instrument.Set
	attrs  [3][]metric.RecordOption // by outcome: ok, duplicate, error
	counts [3][]metric.AddOption
}

var consumeOutcomes = [3]string{telemetry.OutcomeOK, telemetry.OutcomeDuplicate, telemetry.OutcomeError}

// expireBatch is how many rows one statement of Expire deletes at most.
const expireBatch = 1000

// NewDeduplicator returns a Deduplicator storing processed message IDs
// through pool. It does not touch the database until used.
func NewDeduplicator(pool *pgxpool.Pool, cfg *DeduplicatorConfig) (*Deduplicator, error) {
	var c DeduplicatorConfig
	if cfg != nil {
		c = *cfg
	}
	why := checkID(c.Consumer)
	if why == "" && len(c.Consumer) > eventstore.MaxStreamIDLength {
		// Keyed with message IDs of up to maxIDLen bytes in one index entry.
		why = fmt.Sprintf("%d bytes, more than %d", len(c.Consumer), eventstore.MaxStreamIDLength)
	}
	if why != "" {
		return nil, fmt.Errorf("%w: outbox: deduplicator: consumer name %q: %s", eventstore.ErrInvalidArgument, c.Consumer, why)
	}
	if c.Schema == "" {
		c.Schema = "strata"
	}
	if c.MessageID == nil {
		c.MessageID = func(msg *message.Message) string { return msg.UUID }
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	sql := sqltext.Expander(c.Schema)
	d := &Deduplicator{
		pool:     pool,
		cfg:      c,
		lockSeed: "strata.processed_messages\x00" + c.Schema + "\x00" + c.Consumer + "\x00",
		tracer:   telemetry.Tracer(c.TracerProvider),
		in:       instrument.New(c.MeterProvider),
		// A delivery claims its message with a transaction-scoped advisory
		// lock, which takes no transaction ID: a concurrent delivery of the
		// same message waits here until the first one commits or rolls
		// back. Then lookup, a separate statement with a snapshot taken
		// after the lock was granted, sees the first one's record.
		lock:   `SELECT pg_advisory_xact_lock($1::bigint)`,
		lookup: sql.Replace(`SELECT outputs FROM {schema}.processed_messages WHERE consumer = $1 AND message_id = $2`),
		// Written last, after the handler, just before commit: the
		// transaction gets its ID only for its own writes. The primary key
		// still guards against a writer that did not take the lock.
		insert: sql.Replace(`INSERT INTO {schema}.processed_messages (consumer, message_id, processed_at, outputs) VALUES ($1, $2, $3, $4)`),
		// Bounded batches, oldest first (processed_messages_age_idx), each
		// its own transaction: no single DELETE holds locks on, or bloats
		// the WAL with, a consumer's whole history.
		expire: sql.Replace(`DELETE FROM {schema}.processed_messages WHERE consumer = $1 AND processed_at < $2 AND message_id IN (
			SELECT message_id FROM {schema}.processed_messages WHERE consumer = $1 AND processed_at < $2 ORDER BY processed_at LIMIT $3)`),
		contains: sql.Replace(`SELECT EXISTS (SELECT 1 FROM {schema}.processed_messages WHERE consumer = $1 AND message_id = $2)`),
	}
	for i, o := range consumeOutcomes {
		set := attribute.NewSet(attribute.String(telemetry.AttrConsumer, c.Consumer), attribute.String(telemetry.AttrOutcome, o))
		d.attrs[i] = []metric.RecordOption{metric.WithAttributeSet(set)}
		d.counts[i] = []metric.AddOption{metric.WithAttributeSet(set)}
	}
	return d, nil
}

// lockKey is the advisory lock key of a message for this consumer and
// schema: a 64-bit FNV-1a hash. Two messages whose keys collide only wait
// for each other.
func (d *Deduplicator) lockKey(id string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(d.lockSeed))
	_, _ = h.Write([]byte(id))
	return int64(h.Sum64())
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

// TxFromContext returns the transaction a Deduplicator opened for the
// message being handled (use msg.Context()). Write the handler's effects
// through it: they commit together with the record that the message was
// handled, or not at all. ok is false outside Deduplicator.Middleware.
func TxFromContext(ctx context.Context) (tx pgx.Tx, ok bool) {
	tx, ok = ctx.Value(txKey{}).(pgx.Tx)
	return tx, ok
}

// Middleware wraps h so that each message ID is handled once per consumer.
// For every delivery it begins a transaction and claims the message ID in
// it (an advisory lock, so that concurrent deliveries of one message run
// one after the other). Unless the ID is recorded already, it runs h with
// the transaction in the message's context (TxFromContext); if h succeeds
// it records the ID, with the messages h returned, in the same transaction
// and commits; if h fails it rolls back and the error goes back to
// Watermill, which nacks the message for redelivery.
//
// A redelivered message that was already handled does not run h again: it
// is acknowledged and returns the messages h returned the first time (same
// UUIDs, payloads and metadata). Watermill's router publishes a handler's
// messages after this transaction committed; if that publish fails, the
// router nacks, and the redelivery publishes them again. The outputs are
// thus at least once, like the relay's: consumers downstream deduplicate
// them by UUID.
//
// Nothing in the transaction takes a transaction ID before h writes: a
// slow handler does not hold back the gap-safe readers of the log
// (projections, relays, Pub/Sub), and an eventstore.Store.AppendTx as h's
// first write is not refused with ErrOutOfOrder because of the time h ran.
// The ID is recorded just before commit.
//
// A message without a usable ID (see DeduplicatorConfig.MessageID) is
// refused with an error matching ErrInvalidMessageID.
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
		id := d.cfg.MessageID(msg)
		var err error
		if why := checkID(id); why != "" {
			err = fmt.Errorf("outbox: deduplicator %q: message ID %.64q %s: %w", d.cfg.Consumer, id, why, ErrInvalidMessageID)
		} else {
			// If the transaction's connection is lost, pgtx ends the server
			// process behind it, which would otherwise hold the message's
			// advisory lock, and every redelivery of it, until a keepalive
			// notices, hours later. The handler is caller code: no idle
			// timeout.
			err = pgtx.Run(ctx, d.pool, pgtx.Options{}, func(tx pgx.Tx) error {
				stored, found, err := d.claim(ctx, tx, id)
				if err != nil {
					return err
				}
				if found {
					duplicate = true
					out, err = decodeOutputs(stored)
					if err != nil {
						return fmt.Errorf("outbox: outputs of message %q: %w", id, err)
					}
					return nil
				}
				msg.SetContext(context.WithValue(ctx, txKey{}, tx))
				defer msg.SetContext(orig)
				out, err = h(msg)
				if err != nil {
					return err
				}
				enc, err := encodeOutputs(out)
				if err != nil {
					return fmt.Errorf("outbox: outputs of message %q: %w", id, err)
				}
				if _, err := tx.Exec(ctx, d.insert, d.cfg.Consumer, id, d.cfg.Now(), enc); err != nil {
					return fmt.Errorf("outbox: record message %q: %w", id, err)
				}
				return nil
			})
		}
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

// claim takes the message's advisory lock in tx and then looks its record
// up, in one round trip: two statements, so that the lookup's snapshot is
// taken after the lock was granted. found reports a record; outputs are
// its stored messages (nil for none).
func (d *Deduplicator) claim(ctx context.Context, tx pgx.Tx, id string) (outputs []byte, found bool, err error) {
	b := &pgx.Batch{}
	b.Queue(d.lock, d.lockKey(id))
	b.Queue(d.lookup, d.cfg.Consumer, id)
	br := tx.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("outbox: claim message %q: %w", id, cerr)
		}
	}()
	if _, err := br.Exec(); err != nil {
		return nil, false, fmt.Errorf("outbox: claim message %q: %w", id, err)
	}
	switch err := br.QueryRow().Scan(&outputs); {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("outbox: look up message %q: %w", id, err)
	}
	return outputs, true, nil
}

// storedMessage is a handler's output message as processed_messages.outputs
// keeps it. Every string is kept as bytes (base64 in the JSON), so that
// UUIDs and metadata that are not valid UTF-8 round-trip unchanged.
type storedMessage struct {
	UUID     []byte      `json:"uuid"`
	Payload  []byte      `json:"payload"`
	Metadata [][2][]byte `json:"metadata,omitempty"`
}

// encodeOutputs returns the JSON of msgs for processed_messages.outputs,
// nil (NULL) for none.
func encodeOutputs(msgs []*message.Message) ([]byte, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	stored := make([]storedMessage, len(msgs))
	for i, m := range msgs {
		if m == nil {
			return nil, fmt.Errorf("handler returned a nil message at index %d", i)
		}
		s := storedMessage{UUID: []byte(m.UUID), Payload: m.Payload}
		keys := slices.Sorted(maps.Keys(m.Metadata))
		for _, k := range keys {
			s.Metadata = append(s.Metadata, [2][]byte{[]byte(k), []byte(m.Metadata[k])})
		}
		stored[i] = s
	}
	return json.Marshal(stored)
}

// decodeOutputs turns encodeOutputs' JSON back into messages.
func decodeOutputs(b []byte) ([]*message.Message, error) {
	if b == nil {
		return nil, nil
	}
	var stored []storedMessage
	if err := json.Unmarshal(b, &stored); err != nil {
		return nil, err
	}
	msgs := make([]*message.Message, len(stored))
	for i, s := range stored {
		m := message.NewMessage(string(s.UUID), s.Payload)
		for _, kv := range s.Metadata {
			m.Metadata.Set(string(kv[0]), string(kv[1]))
		}
		msgs[i] = m
	}
	return msgs, nil
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
// ago, with their stored outputs, and returns how many it forgot. A
// message redelivered after its ID expired is handled again, so olderThan
// must exceed the longest time the broker may redeliver (its retention or
// redelivery window). Call it from a periodic job.
//
// It deletes in batches of at most 1000 rows, each in its own transaction,
// so that it never holds locks on a large part of the table; on an error
// the count says how many were forgotten before it.
func (d *Deduplicator) Expire(ctx context.Context, olderThan time.Duration) (int64, error) {
	before := d.cfg.Now().Add(-olderThan)
	var total int64
	for {
		tag, err := d.pool.Exec(ctx, d.expire, d.cfg.Consumer, before, expireBatch)
		if err != nil {
			return total, fmt.Errorf("outbox: expire processed messages of %q: %w", d.cfg.Consumer, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < expireBatch {
			return total, nil
		}
	}
}
