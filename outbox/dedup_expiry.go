package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/retry"
	"github.com/strata-go/strata/internal/sqltext"
)

// ExpiryConfig configures an Expiry. Consumers and MaxAge are required.
type ExpiryConfig struct {
	// Schema is the Postgres schema of the processed_messages table.
	// Default "strata".
	Schema string
	// Consumers are the Deduplicator consumer names whose IDs expire.
	Consumers []string
	// MaxAge is how long a processed message ID is remembered. A message
	// redelivered after its ID expired is handled again, so MaxAge must
	// exceed the longest time the broker may redeliver. Required.
	MaxAge time.Duration
	// Interval is the pause between two rounds of Run. Default 1 minute.
	Interval time.Duration
	// BatchSize is the most IDs one statement deletes, each batch in its
	// own transaction. Default 1000.
	BatchSize int
	// Logger receives failed rounds (Run retries them). Default
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Expiry forgets the processed message IDs of Deduplicator consumers once
// they are older than MaxAge, in bounded batches: the maintenance worker
// that keeps processed_messages from growing for ever. Run it in one or
// many processes: each batch locks the rows it deletes with SKIP LOCKED,
// so concurrent expiries take disjoint rows instead of queueing on each
// other.
type Expiry struct {
	pool *pgxpool.Pool
	cfg  ExpiryConfig
	sql  string
}

// expireProcessedSQL deletes one batch of a consumer's IDs recorded before
// $2, oldest first. Index: processed_messages_age_idx (consumer,
// processed_at).
const expireProcessedSQL = `DELETE FROM {schema}.processed_messages p USING (
		SELECT consumer, message_id FROM {schema}.processed_messages
		WHERE consumer = $1 AND processed_at < $2 ORDER BY processed_at LIMIT $3
		FOR UPDATE SKIP LOCKED) d
	WHERE p.consumer = d.consumer AND p.message_id = d.message_id`

// NewExpiry returns an Expiry on pool. It does not touch the database.
func NewExpiry(pool *pgxpool.Pool, cfg *ExpiryConfig) (*Expiry, error) {
	var c ExpiryConfig
	if cfg != nil {
		c = *cfg
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: outbox: expiry: %s", eventstore.ErrInvalidArgument, fmt.Sprintf(format, args...))
	}
	if c.Schema == "" {
		c.Schema = "strata"
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case pool == nil:
		return nil, bad("needs a pool")
	case len(c.Consumers) == 0:
		return nil, bad("no consumers")
	case c.MaxAge <= 0:
		return nil, bad("max age %s is not positive", c.MaxAge)
	case c.Interval < 0:
		return nil, bad("interval %s is negative", c.Interval)
	case c.BatchSize < 1:
		return nil, bad("batch size %d is below 1", c.BatchSize)
	}
	for _, name := range c.Consumers {
		if why := checkID(name); why != "" {
			return nil, bad("consumer name %q: %s", name, why)
		}
	}
	return &Expiry{pool: pool, cfg: c, sql: sqltext.Expander(c.Schema).Replace(expireProcessedSQL)}, nil
}

// Expire forgets every consumer's IDs older than MaxAge now, batch after
// batch, and returns how many it forgot. On an error the count says how
// many were forgotten before it.
func (x *Expiry) Expire(ctx context.Context) (int64, error) {
	before := x.cfg.Now().Add(-x.cfg.MaxAge)
	var total int64
	for _, consumer := range x.cfg.Consumers {
		for {
			tag, err := x.pool.Exec(ctx, x.sql, consumer, before, x.cfg.BatchSize)
			if err != nil {
				return total, fmt.Errorf("outbox: expire processed messages of %q: %w", consumer, err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < int64(x.cfg.BatchSize) {
				break
			}
		}
	}
	return total, nil
}

// Run expires IDs every Interval until ctx ends, then returns nil. A
// failed round is logged and tried again at the next one.
func (x *Expiry) Run(ctx context.Context) error {
	for {
		if _, err := x.Expire(ctx); err != nil && ctx.Err() == nil {
			x.cfg.Logger.Warn("strata: processed-message expiry failed; trying again at the next round", "err", err, "retry_in", x.cfg.Interval)
		}
		if !retry.Sleep(ctx, x.cfg.Interval) {
			return nil
		}
	}
}
