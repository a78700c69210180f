// Package kafka builds Watermill publishers for Kafka (watermill-kafka/v3)
// that suit the outbox relay: the message key is the outbox partition key
// (the stream ID), so all events of a stream land in one Kafka partition
// in order, and the producer is idempotent with acks from all in-sync
// replicas, so its own retries neither lose nor reorder messages.
//
// # Publisher
//
//	pub, err := kafka.NewPublisher([]string{"127.0.0.1:9092"}, nil)
//	relay := outbox.NewRelay(store, pub, &outbox.Config{Permanent: kafka.Permanent})
//
// # Running against Kafka
//
// No Kafka broker is needed for Strata's test suite (the key is checked on
// the produced message). To run the relay against a real broker:
//
//  1. Start one, for example
//     docker run -d --name kafka -p 9092:9092 apache/kafka:3.7.0
//  2. Create the topics (one per event category, with as many partitions
//     as you want consumers in a group), for example
//     kafka-topics.sh --bootstrap-server 127.0.0.1:9092 --create --topic order --partitions 6
//     (or let the broker auto-create them).
//  3. Build the publisher with NewPublisher([]string{"127.0.0.1:9092"}, nil)
//     and run outbox.NewRelay(store, pub, nil).Run(ctx).
//  4. Consume with watermill-kafka's Subscriber (a ConsumerGroup), with
//     Unmarshaler: Marshaler(), and wrap the handler in outbox.Deduplicate.
//     Kafka keeps order within a partition, and the key keeps each stream in
//     one partition.
package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/internal/failure"
	"github.com/strata-go/strata/outbox"
)

// Config configures the publisher. The zero value (or nil) means every
// default.
type Config struct {
	// Sarama overrides the producer configuration. Default SaramaConfig().
	Sarama *sarama.Config
	// TLS, when set, encrypts the connections with it (Sarama's
	// Net.TLS): the CA to trust, the client certificate if the brokers
	// verify clients. Default nil: plaintext. See security.go.
	TLS *tls.Config
	// SASL, when set, authenticates the connections (Sarama's Net.SASL).
	// Default nil: none.
	SASL *SASL
	// Logger is Watermill's logger. Default watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// Marshaler returns watermill-kafka's partitioning marshaler keyed by
// outbox.PartitionKey (the metadata field outbox.MetaPartitionKey, which
// the relay sets to the stream ID). Use it for the subscriber's
// Unmarshaler too.
func Marshaler() wmkafka.MarshalerUnmarshaler {
	return wmkafka.NewWithPartitioningMarshaler(func(topic string, msg *message.Message) (string, error) {
		return outbox.PartitionKey(msg), nil
	})
}

// SaramaConfig returns the producer configuration the relay needs:
// watermill-kafka's synchronous producer, acks from all in-sync replicas,
// idempotence (no duplicates or reordering from the producer's own
// retries, which requires one request in flight per connection), the
// hash partitioner on the key, and a protocol version that has
// idempotence.
func SaramaConfig() *sarama.Config {
	c := wmkafka.DefaultSaramaSyncPublisherConfig()
	c.Version = sarama.V2_1_0_0
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Partitioner = sarama.NewHashPartitioner
	return c
}

// PublisherConfig returns the watermill-kafka configuration NewPublisher
// uses.
func PublisherConfig(brokers []string, cfg *Config) wmkafka.PublisherConfig {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Sarama == nil {
		c.Sarama = SaramaConfig()
	}
	return wmkafka.PublisherConfig{Brokers: brokers, Marshaler: Marshaler(), OverwriteSaramaConfig: secured(c.Sarama, c.TLS, c.SASL)}
}

// NewPublisher connects to the Kafka brokers and returns a publisher whose
// Publish returns once every message was acknowledged. Brokers that refuse
// the SASL credentials or the TLS handshake, or whose certificate does not
// verify, give an error matching outbox.ErrAuth.
func NewPublisher(brokers []string, cfg *Config) (*wmkafka.Publisher, error) {
	var logger watermill.LoggerAdapter = watermill.NopLogger{}
	if cfg != nil && cfg.Logger != nil {
		logger = cfg.Logger
	}
	if cfg != nil {
		if err := checkSASL(cfg.SASL); err != nil {
			return nil, err
		}
	}
	pub, err := wmkafka.NewPublisher(PublisherConfig(brokers, cfg), logger)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", failure.Auth(explain(err, brokers, cfgTLS(cfg)), isAuth))
	}
	return pub, nil
}

// Permanent reports the Kafka errors that retrying a message cannot cure
// (a message larger than the broker accepts, an invalid message). Use it
// as outbox.Config.Permanent.
func Permanent(err error) bool {
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) || errors.Is(err, sarama.ErrInvalidMessage) ||
		errors.Is(err, sarama.ErrMessageTooLarge)
}
