package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/retry"
	"github.com/strata-go/strata/internal/sqltext"
	"github.com/strata-go/strata/internal/storeview"
)

// Retention of messages. Messages are events of the log, so a topic that
// is only ever consumed grows the events table for ever unless its
// messages are deleted. An Expirer deletes, per topic, the messages every
// consumer group has passed (and, optionally, any message past an age),
// in bounded batches, through the database function
// strata_expire_messages (migration 0031), which runs with its owner's
// rights: the application role may not delete events, and the function
// only ever deletes events of the message types.

// TopicRetention says which messages of a topic may be deleted.
type TopicRetention struct {
	// Topic is the topic, as given to Publish. Required.
	Topic string
	// MinAge keeps every message for at least this long after it was
	// published. Default 0: a message may go as soon as it is consumed.
	MinAge time.Duration
	// Unconsumed deletes messages older than MinAge whether or not every
	// consumer group has passed them (a topic kept "for MinAge", as a
	// broker's retention would; a group that falls further behind loses
	// messages). Default false: a message is deleted only once every
	// subscription that reads it has passed it.
	Unconsumed bool
}

// ExpirerConfig configures an Expirer. Topics is required.
type ExpirerConfig struct {
	// Topics are the topics to expire and their rules.
	Topics []TopicRetention
	// Prefix must match the publishers' PublisherConfig.Prefix. Default
	// DefaultPrefix ("wm.").
	Prefix string
	// Interval is the pause between two rounds of Run. Default 1 minute.
	Interval time.Duration
	// BatchSize is the most messages one statement deletes, each batch in
	// its own transaction, so that no delete holds many row locks or
	// makes a long transaction. Default 1000.
	BatchSize int
	// Logger receives failed rounds (Run retries them). Default: the
	// store's logger.
	Logger *slog.Logger
}

// Expirer deletes the messages of topics that retention lets go. Create
// it with NewExpirer; run it with Run in one or many processes (their
// batches take disjoint rows), or call Expire.
//
// What is kept: a message some subscription reading its topic (a consumer
// group, a relay or projection selecting its category) has not passed,
// unless TopicRetention.Unconsumed; the last message of each of the
// topic's streams (its stream's version continues from it); a message
// parked as a dead letter. What it means for readers: every reader of the
// topic has passed a deleted message, so none skips a message still in
// the log nor sees one twice. A consumer group created after its topic's
// messages were deleted starts at the first message kept, and a group
// reset to an earlier position cannot replay deleted messages.
type Expirer struct {
	store *eventstore.Store
	cfg   ExpirerConfig
	log   *slog.Logger
	cats  []string
	sql   string
}

// NewExpirer returns an Expirer of the store's messages. It does not touch
// the database.
func NewExpirer(store *eventstore.Store, cfg *ExpirerConfig) (*Expirer, error) {
	var c ExpirerConfig
	if cfg != nil {
		c = *cfg
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: pubsub: expirer: %s", eventstore.ErrInvalidArgument, fmt.Sprintf(format, args...))
	}
	if store == nil {
		return nil, bad("needs a store")
	}
	if len(c.Topics) == 0 {
		return nil, bad("no topics")
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	switch {
	case c.Interval < 0:
		return nil, bad("interval %s is negative", c.Interval)
	case c.BatchSize < 0:
		return nil, bad("batch size %d is negative", c.BatchSize)
	}
	cats := make([]string, len(c.Topics))
	for i, t := range c.Topics {
		switch {
		case t.Topic == "":
			return nil, bad("topic %d has no name", i)
		case t.MinAge < 0:
			return nil, bad("topic %q: min age %s is negative", t.Topic, t.MinAge)
		}
		cats[i] = Category(c.Prefix, t.Topic)
		if len(cats[i]) > eventstore.MaxStreamIDLength {
			return nil, bad("topic %q: longer than a stream ID may be", t.Topic)
		}
	}
	log := c.Logger
	if log == nil {
		log = storeview.Of(store).Logger
	}
	return &Expirer{store: store, cfg: c, log: log, cats: cats,
		sql: sqltext.Expander(storeview.Of(store).Schema).Replace(expireMessagesSQL)}, nil
}

// expireMessagesSQL deletes one batch of a topic's messages (see migration
// 0031 for what it keeps and why). Index: events_category_log_idx (0065).
const expireMessagesSQL = `SELECT {schema}.strata_expire_messages($1, make_interval(secs => $2), $3, $4)`

// Expire deletes what retention lets go of every topic now, batch after
// batch, and returns how many messages it deleted. On an error the count
// says how many were deleted before it.
func (x *Expirer) Expire(ctx context.Context) (int64, error) {
	var total int64
	for i, t := range x.cfg.Topics {
		for {
			var n int64
			err := x.store.Pool().QueryRow(ctx, x.sql, x.cats[i], t.MinAge.Seconds(), t.Unconsumed, x.cfg.BatchSize).Scan(&n)
			if err != nil {
				return total, fmt.Errorf("pubsub: expire messages of topic %q: %w", t.Topic, err)
			}
			total += n
			if n < int64(x.cfg.BatchSize) || x.cfg.BatchSize == 0 {
				break
			}
		}
	}
	return total, nil
}

// Run expires messages every Interval until ctx ends, then returns nil. A
// failed round is logged and tried again at the next one.
func (x *Expirer) Run(ctx context.Context) error {
	for {
		if _, err := x.Expire(ctx); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
			x.log.Warn("strata: message expiry failed; trying again at the next round", "err", err, "retry_in", x.cfg.Interval)
		}
		if !retry.Sleep(ctx, x.cfg.Interval) {
			return nil
		}
	}
}
