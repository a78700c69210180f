package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/failure"
	"github.com/strata-go/strata/internal/retry"
	"github.com/strata-go/strata/internal/storeview"
	"github.com/strata-go/strata/internal/subdefault"
)

// SubscriberConfig configures a Subscriber. The zero value (or nil) means
// every default.
type SubscriberConfig struct {
	// ConsumerGroup names the durable group this Subscriber consumes for.
	// Each group has its own checkpoint per topic, kept in Postgres: every
	// group sees every message of the topic, and the processes of one
	// group share it (each message goes to one of them). A group new to a
	// topic starts at the topic's first message. Default "": the default
	// group, durable like any other.
	ConsumerGroup string
	// Prefix must match the publishers' PublisherConfig.Prefix. Default
	// DefaultPrefix ("wm.").
	Prefix string
	// Partitions splits each topic by a hash of the stream (the
	// publisher's partition key) so that the processes of a group share
	// the topic, each partition owned by one process at a time and
	// delivered in order. With the default publisher (no partition key)
	// a topic is one stream, so only one process consumes it at a time
	// and the others stand by. Changing it for an existing group needs
	// eventstore.Store.ResetSubscription. Default 1.
	Partitions int
	// BatchSize is the most messages read at once; the checkpoint moves
	// after each batch is acked, so a process killed mid-batch delivers
	// that batch's acked messages again after restart (at most BatchSize).
	// 1 moves the checkpoint after every ack. Default 1000: the
	// checkpoint's commit is most of a batch's cost beside its messages,
	// so a backlog drains about twice as fast as in batches of 100
	// (README, Performance); set it lower to bound the repeats after a
	// crash more tightly.
	BatchSize int
	// NackResendSleep is the wait before a nacked message is delivered
	// again. Default 100ms.
	NackResendSleep time.Duration
	// PollInterval is the longest wait between reads of an idle topic when
	// no wake-up notification arrives (LISTEN/NOTIFY wakes subscribers on
	// every append). Default 1s.
	PollInterval time.Duration
	// LeaseTTL is how long a partition stays with a process that stopped
	// renewing it (crashed): another process of the group takes over after
	// at most this long. Default 5s.
	LeaseTTL time.Duration
	// Owner names this process in the partition leases. Default
	// "HOSTNAME:PID:RANDOM".
	Owner string
	// Logger receives warnings. Default: the store's logger.
	Logger *slog.Logger
}

// Subscriber delivers a topic's messages from the event store, through a
// durable consumer group. It implements message.Subscriber and is safe for
// concurrent use.
type Subscriber struct {
	store *eventstore.Store
	cfg   SubscriberConfig

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

// NewSubscriber returns a Subscriber reading store.
func NewSubscriber(store *eventstore.Store, cfg *SubscriberConfig) (*Subscriber, error) {
	if store == nil {
		return nil, errors.New("pubsub: NewSubscriber: nil store")
	}
	var c SubscriberConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	subdefault.Or(&c.Partitions, 1)
	subdefault.Or(&c.BatchSize, 1000)
	subdefault.Or(&c.NackResendSleep, 100*time.Millisecond)
	return &Subscriber{store: store, cfg: c, closing: make(chan struct{})}, nil
}

// SubscriptionName returns the name of the eventstore subscription that
// holds a consumer group's checkpoints for a topic, for
// eventstore.Store.SubscriptionStatuses, ResetSubscription and the other
// admin calls.
func SubscriptionName(prefix, group, topic string) string {
	g := strings.NewReplacer("%", "%25", "/", "%2F").Replace(group)
	return "pubsub/" + g + "/" + Category(prefix, topic)
}

// Subscribe returns the channel on which the topic's messages arrive, in
// order, for this Subscriber's consumer group. The next message comes only
// after the current one is acked; a nacked message comes again. Acking
// moves the group's checkpoint (in batches, see BatchSize). The channel is
// closed when ctx ends or the Subscriber is closed; a message then
// outstanding is delivered again later, to this group.
//
// Each delivered message's context carries ctx's values and is cancelled
// once the message is acked or nacked, or the subscription ends.
//
// Subscribe registers the consumer group's subscription first: a database
// that refuses the connection's credentials or TLS makes it return an
// error matching eventstore.ErrAuth.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if topic == "" {
		return nil, errors.New("pubsub: subscribe: empty topic")
	}
	cfg := &s.cfg
	sub, err := s.store.Subscription(eventstore.SubscriptionConfig{
		Name:            SubscriptionName(cfg.Prefix, cfg.ConsumerGroup, topic),
		Categories:      []string{Category(cfg.Prefix, topic)},
		Partitions:      cfg.Partitions,
		BatchSize:       cfg.BatchSize,
		HandleOutsideTx: true,
		// A database error (the checkpoint not stored, say) says nothing
		// about the message: retried with backoff until the database
		// answers, never counted toward MaxAttempts, so an outage parks
		// nothing. Only a message that cannot be delivered (a stored
		// payload that does not decode) is parked after MaxAttempts.
		Transient:    failure.Rules{TransientByDefault: true}.Transient,
		PollInterval: cfg.PollInterval,
		LeaseTTL:     cfg.LeaseTTL,
		Owner:        cfg.Owner,
		Logger:       cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("pubsub: subscribe to %q: %w", topic, err)
	}
	// A refused login or TLS handshake is reported here rather than
	// retried in the background behind an open channel; any other failure
	// to register (the database down) is retried by the subscription.
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	err = sub.Register(rctx)
	rcancel()
	if failure.IsAuth(err) {
		return nil, fmt.Errorf("pubsub: subscribe to %q: %w", topic, failure.Auth(err, nil))
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	out := make(chan *message.Message)
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		d := &delivery{out: out, nackSleep: cfg.NackResendSleep}
		log := cfg.Logger
		if log == nil {
			log = storeview.Of(s.store).Logger
		}
		wait := retry.Backoff(subdefault.RetryBackoff, subdefault.MaxRetryBackoff)
		for {
			err := sub.Run(ctx, d.handle)
			if ctx.Err() != nil {
				return
			}
			// Run gives up only when the database keeps failing at start
			// (or under the Stop policy, which is not used): start again.
			backoff := wait.NextBackOff()
			log.Warn("strata: pubsub subscription stopped; restarting", "topic", topic, "err", err, "retry_in", backoff)
			if !retry.Sleep(ctx, backoff) {
				return
			}
		}
	}()
	return out, nil
}

// Close ends every subscription of this Subscriber, closing their
// channels, and returns once they have stopped and given up their leases.
// Messages delivered but not acked come again later, to the same group.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// delivery hands one subscription's events to its channel, one message at
// a time, each after the previous one was acked.
type delivery struct {
	out       chan<- *message.Message
	nackSleep time.Duration
}

// handle is the eventstore.Handler: it returns once every event of the
// batch was acked, so the checkpoint moves past them; it returns an error
// only when the subscription ends (the batch is then delivered again).
func (d *delivery) handle(ctx context.Context, _ pgx.Tx, events []eventstore.Event) error {
	for _, e := range events {
		for {
			msg, err := toMessage(e)
			if err != nil {
				return err
			}
			acked, err := d.deliver(ctx, msg)
			if err != nil {
				return err
			}
			if acked {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d.nackSleep):
			}
		}
	}
	return nil
}

// deliver sends msg and waits for its ack (true) or nack (false).
func (d *delivery) deliver(ctx context.Context, msg *message.Message) (bool, error) {
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msg.SetContext(mctx)
	select {
	case d.out <- msg:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case <-msg.Acked():
		return true, nil
	case <-msg.Nacked():
		return false, nil
	case <-ctx.Done():
		// An ack that came with the end of the subscription (Close right
		// after Ack: select picks either) still counts, so that a clean
		// stop records what was acked and does not deliver it again.
		select {
		case <-msg.Acked():
			return true, nil
		default:
			return false, ctx.Err()
		}
	}
}

var _ message.Subscriber = (*Subscriber)(nil)
