// Package kafka builds Watermill publishers and subscribers for Kafka
// (watermill-kafka/v3, Sarama) that suit the outbox relay and its
// consumers: the message key is the outbox partition key (the stream ID),
// so all events of a stream land in one Kafka partition in order; the
// producer is idempotent with acks from all in-sync replicas, so its own
// retries neither lose nor reorder messages; record batches are compressed
// (zstd by default); and the subscriber is a consumer group that hands
// each partition's messages over one at a time, so each stream reaches
// its consumer in order.
//
// # Publisher
//
//	pub, err := kafka.NewPublisher([]string{"127.0.0.1:9092"}, nil)
//	relay := outbox.NewRelay(store, pub, &outbox.Config{Permanent: kafka.Permanent})
//
// # Subscriber
//
//	sub, err := kafka.NewSubscriber([]string{"127.0.0.1:9092"}, "billing", nil)
//	msgs, err := sub.Subscribe(ctx, "order")
//
// Every service is its own consumer group and gets every message of the
// topics it subscribes to; the processes of one service share its group,
// and Kafka gives each of them a share of the topic's partitions. A stream
// is in one partition, so it is handled by one process at a time, in
// order: the subscriber hands a partition's next message over only after
// the previous one was acked (a nacked message is handed over again). A
// new group starts at the oldest message. Offsets are committed after the
// ack (every second), so a crash or a rebalance redelivers what was acked
// since: wrap the handler in outbox.Deduplicate.
//
// # Compression
//
// Config.Compression names the producer's codec: zstd by default, lz4,
// snappy, gzip or none. The producer compresses each record batch (the
// messages of one Publish call to one partition), the broker stores and
// serves the batches as they are, and consumers decompress them: the
// saving is on the wire and on the broker's disk. The relay publishes a
// stream's pending events in one call, so a busy stream's events share a
// batch; a lone small event compresses little (see the package's tests
// for the figures).
//
// # Running against Kafka
//
// Strata's tests run against an in-process Kafka-protocol cluster
// (package kafkatest, which wraps franz-go's kfake). To run against a
// real cluster:
//
//  1. Start one, for example
//     docker run -d --name kafka -p 9092:9092 apache/kafka:3.7.0
//  2. Create the topics (one per event category, with as many partitions
//     as you want consumers in a group), for example
//     kafka-topics.sh --bootstrap-server 127.0.0.1:9092 --create --topic order --partitions 6
//     (or let the broker auto-create them).
//  3. Build the publisher with NewPublisher([]string{"127.0.0.1:9092"}, nil)
//     and run outbox.NewRelay(store, pub, nil).Run(ctx).
//  4. Consume with NewSubscriber(brokers, "service-name", nil) and wrap
//     the handler in outbox.Deduplicate.
//
// The shop example does all of this with -broker kafka://127.0.0.1:9092.
package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

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
	// Sarama overrides the producer configuration, Compression included.
	// Default SaramaConfig() with Compression's codec.
	Sarama *sarama.Config
	// TLS, when set, encrypts the connections with it (Sarama's
	// Net.TLS): the CA to trust, the client certificate if the brokers
	// verify clients. Default nil: plaintext. See security.go.
	TLS *tls.Config
	// SASL, when set, authenticates the connections (Sarama's Net.SASL).
	// Default nil: none.
	SASL *SASL
	// Compression is the codec of produced record batches: "zstd", "lz4",
	// "snappy", "gzip" or "none". Ignored when Sarama is set. Default
	// "zstd" (the best ratio on JSON events; lz4 costs the producer less
	// CPU for somewhat larger batches).
	Compression string
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
// hash partitioner on the key, zstd compression, and a protocol version
// that has idempotence and zstd.
func SaramaConfig() *sarama.Config {
	c := wmkafka.DefaultSaramaSyncPublisherConfig()
	c.Version = sarama.V2_1_0_0
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Partitioner = sarama.NewHashPartitioner
	c.Producer.Compression = sarama.CompressionZSTD
	// Fail a publish within about a second when no broker answers, rather
	// than retrying inside Sarama for many seconds: the relay retries with
	// backoff, reports itself unhealthy and trips its circuit breaker.
	c.Metadata.Retry.Max = 1
	c.Metadata.Retry.Backoff = 100 * time.Millisecond
	c.Net.DialTimeout = 5 * time.Second
	return c
}

// ParseCompression returns the Sarama codec that name ("zstd", "lz4",
// "snappy", "gzip" or "none") names; "" is "zstd".
func ParseCompression(name string) (sarama.CompressionCodec, error) {
	if name == "" {
		return sarama.CompressionZSTD, nil
	}
	var c sarama.CompressionCodec
	if err := c.UnmarshalText([]byte(name)); err != nil {
		return 0, fmt.Errorf("kafka: compression %q: want zstd, lz4, snappy, gzip or none", name)
	}
	return c, nil
}

// PublisherConfig returns the watermill-kafka configuration NewPublisher
// uses, or the error of an unknown Config.Compression.
func PublisherConfig(brokers []string, cfg *Config) (wmkafka.PublisherConfig, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Sarama == nil {
		codec, err := ParseCompression(c.Compression)
		if err != nil {
			return wmkafka.PublisherConfig{}, err
		}
		c.Sarama = SaramaConfig()
		c.Sarama.Producer.Compression = codec
	}
	return wmkafka.PublisherConfig{Brokers: brokers, Marshaler: Marshaler(), OverwriteSaramaConfig: secured(c.Sarama, c.TLS, c.SASL)}, nil
}

// NewPublisher connects to the Kafka brokers and returns a publisher whose
// Publish returns once every message was acknowledged. It sends a call's
// messages one after another, each once the previous one was
// acknowledged (watermill-kafka's synchronous producer), so a failure
// stops the call at the first message not acknowledged and never leaves a
// stream's later event in the log without the one before it; the relay's
// retry repeats the call from its start, in order. Brokers that refuse
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
	pc, err := PublisherConfig(brokers, cfg)
	if err != nil {
		return nil, err
	}
	pub, err := wmkafka.NewPublisher(pc, logger)
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
