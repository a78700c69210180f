package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
}

// NewDeduplicator returns a Deduplicator storing processed message IDs
// through pool. It does not touch the database until used.
func NewDeduplicator(pool *pgxpool.Pool, cfg *DeduplicatorConfig) (*Deduplicator, error) {
	var c DeduplicatorConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Consumer == "" {
		return nil, errors.New("outbox: deduplicator needs a consumer name")
	}
	if c.Schema == "" {
		c.Schema = "strata"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	table := pgx.Identifier{c.Schema, "processed_messages"}.Sanitize()
	return &Deduplicator{
		pool: pool,
		cfg:  c,
		// The primary key (consumer, message_id) decides: a second delivery
		// inserts nothing. A concurrent delivery of the same message waits
		// on the first one's uncommitted row and then inserts nothing (or,
		// if the first rolled back, inserts and goes on).
		insert: `INSERT INTO ` + table + ` (consumer, message_id, processed_at) VALUES ($1, $2, $3)
			ON CONFLICT (consumer, message_id) DO NOTHING`,
		// processed_messages_age_idx.
		expire:   `DELETE FROM ` + table + ` WHERE consumer = $1 AND processed_at < $2`,
		contains: `SELECT EXISTS (SELECT 1 FROM ` + table + ` WHERE consumer = $1 AND message_id = $2)`,
	}, nil
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
func (d *Deduplicator) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		var out []*message.Message
		err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, d.insert, d.cfg.Consumer, msg.UUID, d.cfg.Now())
			if err != nil {
				return fmt.Errorf("outbox: record message %s: %w", msg.UUID, err)
			}
			if tag.RowsAffected() == 0 {
				return nil // handled before
			}
			orig := msg.Context()
			msg.SetContext(context.WithValue(orig, txKey{}, tx))
			defer msg.SetContext(orig)
			out, err = h(msg)
			return err
		})
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
