package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/internal/failure"
)

// ErrNoGroup is NewSubscriber's error for an empty consumer group: without
// one, every process would read every partition and nothing would record
// how far it got.
var ErrNoGroup = errors.New("kafka: a consumer group is required")

// SubscriberConfig configures a subscriber. The zero value (or nil) means
// every default.
type SubscriberConfig struct {
	// Sarama overrides the consumer configuration. Default
	// ConsumerSaramaConfig().
	Sarama *sarama.Config
	// NackResendSleep is how long a nacked message waits before it is
	// handed over again (its partition waits with it, keeping the order).
	// Default 100ms.
	NackResendSleep time.Duration
	// ReconnectRetrySleep is how long the subscriber waits before it
	// connects again after losing the brokers. Default 1s.
	ReconnectRetrySleep time.Duration
	// TLS and SASL secure the connections, as in the publisher's Config
	// (applied to Sarama, or to the Sarama field's copy). Default none.
	TLS  *tls.Config
	SASL *SASL
	// Logger is Watermill's logger. Default watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// ConsumerSaramaConfig returns the consumer configuration NewSubscriber
// uses: watermill-kafka's, with a protocol version that reads zstd
// batches and a new group starting at the oldest message (not only at
// those published after it first joined).
func ConsumerSaramaConfig() *sarama.Config {
	c := wmkafka.DefaultSaramaSubscriberConfig()
	c.Version = sarama.V2_1_0_0
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	return c
}

// SubscriberConfigFor returns the watermill-kafka configuration
// NewSubscriber uses, for callers that adjust it further.
func SubscriberConfigFor(brokers []string, group string, cfg *SubscriberConfig) wmkafka.SubscriberConfig {
	var c SubscriberConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Sarama == nil {
		c.Sarama = ConsumerSaramaConfig()
	}
	return wmkafka.SubscriberConfig{
		Brokers:               brokers,
		Unmarshaler:           Marshaler(),
		OverwriteSaramaConfig: secured(c.Sarama, c.TLS, c.SASL),
		ConsumerGroup:         group,
		NackResendSleep:       c.NackResendSleep,
		ReconnectRetrySleep:   c.ReconnectRetrySleep,
	}
}

// Subscriber is watermill-kafka's subscriber whose Subscribe explains a
// refused connection: brokers that refuse the SASL credentials or the
// TLS handshake give an error matching outbox.ErrAuth.
type Subscriber struct {
	*wmkafka.Subscriber
	brokers []string
	tls     *tls.Config
}

// NewSubscriber returns a subscriber of the consumer group group that
// reads what NewPublisher wrote: the marshaler is the publisher's, each
// partition's messages are handed over one at a time (the next after the
// previous was acked), so each stream arrives in order. Every Subscribe
// call joins the group for one topic. It does not connect until
// Subscribe.
func NewSubscriber(brokers []string, group string, cfg *SubscriberConfig) (*Subscriber, error) {
	if group == "" {
		return nil, ErrNoGroup
	}
	var c SubscriberConfig
	if cfg != nil {
		c = *cfg
	}
	if err := checkSASL(c.SASL); err != nil {
		return nil, err
	}
	var logger watermill.LoggerAdapter = watermill.NopLogger{}
	if c.Logger != nil {
		logger = c.Logger
	}
	sub, err := wmkafka.NewSubscriber(SubscriberConfigFor(brokers, group, &c), logger)
	if err != nil {
		return nil, fmt.Errorf("kafka: subscriber: %w", err)
	}
	return &Subscriber{Subscriber: sub, brokers: brokers, tls: c.TLS}, nil
}

// Subscribe joins the group for topic and returns its messages.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	msgs, err := s.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: subscribe to %q: %w", topic, failure.Auth(explain(err, s.brokers, s.tls), isAuth))
	}
	return msgs, nil
}
