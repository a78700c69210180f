package rabbitmq

import (
	"crypto/tls"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// SubscriberConfig configures a subscriber. The zero value (or nil) means
// every default.
type SubscriberConfig struct {
	// AutoProvision declares the topic's durable queue (the queue the
	// publisher routes to: named after the topic, on the default
	// exchange) when Subscribe is called. Default false: the queue must
	// exist — declared by an operator or with DeclareQueues — and
	// Subscribe fails, naming it, when it does not.
	//
	// Declare the queues before the relay first publishes: RabbitMQ drops
	// a message routed to no queue, and confirms it all the same.
	AutoProvision bool
	// Prefetch is how many unacknowledged messages the broker hands this
	// consumer at once. Default 1: with one consumer per queue, each
	// stream's events are handled in order, also across a nack (the
	// message is requeued at its place, before the next). Above 1, or with
	// several consumers of one queue, a redelivery may come after later
	// messages of its stream.
	Prefetch int
	// TLS, when set, is the connection's TLS configuration for an
	// amqps:// URL, as in the publisher's Config. Default nil.
	TLS *tls.Config
	// Logger is Watermill's logger. Default watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// SubscriberConfigFor returns the watermill-amqp configuration
// NewSubscriber uses: the publisher's NewDurableQueueConfig (one durable
// queue per topic, the same marshaler), with cfg's prefetch and
// provisioning.
func SubscriberConfigFor(url string, cfg SubscriberConfig) amqp.Config {
	ac := amqp.NewDurableQueueConfig(url)
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 1
	}
	ac.Consume.Qos.PrefetchCount = cfg.Prefetch
	ac.Connection.TLSConfig = cfg.TLS
	if !cfg.AutoProvision {
		ac.TopologyBuilder = passiveTopology{}
	}
	return ac
}

// NewSubscriber connects to RabbitMQ at url and returns a subscriber that
// reads what NewPublisher wrote: the event ID as the message UUID, the
// metadata as headers, the payload. Messages are acknowledged after the
// handler's Ack and requeued on Nack. Wrap the handler with
// outbox.Deduplicate, since delivery is at least once. A broker that
// refuses the credentials or the TLS handshake gives an error matching
// outbox.ErrAuth at once.
func NewSubscriber(url string, cfg *SubscriberConfig) (*amqp.Subscriber, error) {
	var c SubscriberConfig
	if cfg != nil {
		c = *cfg
	}
	var logger watermill.LoggerAdapter = watermill.NopLogger{}
	if c.Logger != nil {
		logger = c.Logger
	}
	sub, err := amqp.NewSubscriber(SubscriberConfigFor(url, c), logger)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %w", connectError(url, c.TLS, err))
	}
	return sub, nil
}

// DeclareQueues declares the durable queue of each topic (idempotent), so
// that the relay's messages are kept before any consumer subscribed.
func DeclareQueues(url string, topics ...string) error {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return fmt.Errorf("rabbitmq: connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq: open a channel: %w", err)
	}
	defer ch.Close()
	for _, topic := range topics {
		if _, err := ch.QueueDeclare(topic, true, false, false, false, nil); err != nil {
			return fmt.Errorf("rabbitmq: declare queue %q: %w", topic, err)
		}
	}
	return nil
}

// passiveTopology checks that the queue exists instead of declaring it.
type passiveTopology struct{}

func (passiveTopology) BuildTopology(ch *amqp091.Channel, p amqp.BuildTopologyParams, _ amqp.Config, _ watermill.LoggerAdapter) error {
	if _, err := ch.QueueDeclarePassive(p.QueueName, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: queue %q (create it with DeclareQueues, or set SubscriberConfig.AutoProvision): %w", p.QueueName, err)
	}
	return nil
}

func (passiveTopology) ExchangeDeclare(*amqp091.Channel, string, amqp.Config) error { return nil }
