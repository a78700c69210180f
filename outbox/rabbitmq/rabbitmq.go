// Package rabbitmq builds Watermill publishers for RabbitMQ
// (watermill-amqp/v3) that suit the outbox relay: durable queues,
// persistent messages, and publisher confirms, so Publish returns only
// after the broker took responsibility for every message. Without
// confirms a publish "succeeds" once the bytes leave the socket and the
// relay would move its checkpoint past messages the broker may have lost.
//
// # Publisher
//
//	pub, err := rabbitmq.NewPublisher("amqp://guest:guest@127.0.0.1:5672/", nil)
//	relay := outbox.NewRelay(store, pub, nil)
//
// By default each topic (the event's category) is a durable queue of that
// name on the default exchange: watermill-amqp's NewDurableQueueConfig.
// For fan-out to many consumer groups use PublisherConfig with
// amqp.NewDurablePubSubConfig's exchange settings instead, keeping
// Publish.ConfirmDelivery on.
//
// # TLS and credentials
//
//	pub, err := rabbitmq.NewPublisher("amqps://relay:"+url.QueryEscape(pw)+"@mq.internal:5671/", &rabbitmq.Config{TLS: tlsCfg})
//
// A refused password or certificate is an error matching outbox.ErrAuth
// from NewPublisher.
//
// # Consumers
//
// NewSubscriber reads what NewPublisher writes: the topic's durable queue,
// the same marshaler (event ID as UUID, metadata as headers), prefetch 1
// so that one consumer per queue sees each stream in order, also across a
// nack. Declare the queues before the relay first publishes — RabbitMQ
// drops, and confirms, a message routed to no queue — with DeclareQueues,
// or let the first subscriber do it with SubscriberConfig.AutoProvision.
// Wrap the handler with outbox.Deduplicate:
//
//	err := rabbitmq.DeclareQueues(url, "order")
//	sub, err := rabbitmq.NewSubscriber(url, nil)
//	router.AddConsumerHandler("billing", "order", sub, handle).AddMiddleware(outbox.Deduplicate(pool, "strata", "billing"))
//
// For several consumer groups of one topic, use watermill-amqp's
// NewDurablePubSubConfig on both sides (an exchange per topic, a queue
// per group), keeping Publish.ConfirmDelivery on.
package rabbitmq

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/strata-go/strata/internal/failure"
	"github.com/strata-go/strata/internal/tlsprobe"
)

// Config configures the publisher. The zero value (or nil) means every
// default.
type Config struct {
	// ChannelPoolSize is how many AMQP channels the publisher keeps open,
	// which bounds how many publishes wait for confirms at once. Match it
	// to outbox.Config.Concurrency. Default 16.
	ChannelPoolSize int
	// TLS, when set, is the connection's TLS configuration (amqp.DialTLS),
	// for an amqps:// URL: the CA to trust, the client certificate if the
	// broker verifies peers. Default nil: amqps:// URLs verify against the
	// system's roots, amqp:// ones are plaintext. The user and password
	// are the URL's (amqps://user:password@host:5671/vhost); Strata never
	// logs the URL.
	TLS *tls.Config
	// Logger is Watermill's logger. Default watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// PublisherConfig returns the watermill-amqp configuration NewPublisher
// uses: NewDurableQueueConfig with publisher confirms and a channel pool.
func PublisherConfig(url string, cfg *Config) amqp.Config {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.ChannelPoolSize <= 0 {
		c.ChannelPoolSize = 16
	}
	ac := amqp.NewDurableQueueConfig(url)
	ac.Publish.ConfirmDelivery = true
	ac.Publish.ChannelPoolSize = c.ChannelPoolSize
	ac.Connection.TLSConfig = c.TLS
	return ac
}

// NewPublisher connects to RabbitMQ at url and returns a publisher whose
// Publish returns once the broker confirmed each message. A broker that
// refuses the credentials or the TLS handshake, or a broker certificate
// that does not verify, gives an error matching outbox.ErrAuth at once
// (the first connection is not retried).
func NewPublisher(url string, cfg *Config) (*amqp.Publisher, error) {
	var logger watermill.LoggerAdapter = watermill.NopLogger{}
	if cfg != nil && cfg.Logger != nil {
		logger = cfg.Logger
	}
	pub, err := amqp.NewPublisher(PublisherConfig(url, cfg), logger)
	if err != nil {
		var tlsCfg *tls.Config
		if cfg != nil {
			tlsCfg = cfg.TLS
		}
		return nil, fmt.Errorf("rabbitmq: %w", connectError(url, tlsCfg, err))
	}
	return pub, nil
}

// connectError explains a failed first connection: a refusal of the
// credentials or of the TLS handshake matches outbox.ErrAuth.
func connectError(url string, tlsCfg *tls.Config, err error) error {
	err = failure.Auth(err, isAuth)
	if !errors.Is(err, failure.ErrAuth) && tlsCfg != nil {
		if u, perr := amqp091.ParseURI(url); perr == nil {
			if _, tlsErr := tlsprobe.Handshake(net.JoinHostPort(u.Host, strconv.Itoa(u.Port)), tlsCfg, nil); tlsErr != nil {
				err = failure.Auth(fmt.Errorf("%w (the TLS handshake: %w)", err, tlsErr), nil)
			}
		}
	}
	return err
}

// isAuth reports RabbitMQ's refusals of a connection's credentials: a
// wrong user or password, no shared SASL mechanism, a user without
// access to the virtual host (all ACCESS_REFUSED, 403).
func isAuth(err error) bool {
	var amqpErr *amqp091.Error
	return errors.As(err, &amqpErr) && amqpErr.Code == amqp091.AccessRefused
}
