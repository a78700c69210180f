package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox/kafka"
	"github.com/strata-go/strata/outbox/natsjs"
	"github.com/strata-go/strata/outbox/rabbitmq"
	"github.com/strata-go/strata/pubsub"
)

// broker is where the relay publishes and the services subscribe. The
// services' code is the same for every broker: only this file knows them.
type broker struct {
	// Name describes the broker in the account.
	Name string
	// Publisher is what the relay publishes to.
	Publisher message.Publisher
	// Subscriber returns a subscriber for one consumer group (one
	// service): each group gets every message of the topics it reads.
	Subscriber func(group string) (message.Subscriber, error)
	// Permanent tells the relay which publish errors retrying cannot cure.
	Permanent func(error) bool
	// Topic names the topic of each stream category: "order" and
	// "payment" events go to "<prefix>_orders" and "<prefix>_payments".
	Topic func(category string) string
}

// openBroker connects to the broker that spec names: "postgres" (Strata's
// Pub/Sub on the event store), "gochannel" (Watermill's in-process
// channels), nats://…, amqp://… or kafka://host:port[,host:port]. The
// example's topics start afresh, as its Postgres schema does.
func openBroker(ctx context.Context, spec string, store *eventstore.Store, prefix string, logger watermill.LoggerAdapter) (*broker, error) {
	b := &broker{Topic: func(category string) string { return prefix + "_" + category + "s" }}
	topics := []string{b.Topic("order"), b.Topic("payment")}
	switch {
	case spec == "postgres":
		// Messages are stored as events under their own stream prefix
		// ("wm."), in the shop's store. The publisher appends them
		// without the store's schema registry: messages are not the
		// domain's events.
		pub, err := pubsub.NewPublisher(store, nil)
		if err != nil {
			return nil, err
		}
		b.Name, b.Publisher = "Strata's Postgres Pub/Sub (messages in the event store)", pub
		b.Subscriber = func(group string) (message.Subscriber, error) {
			return pubsub.NewSubscriber(store, &pubsub.SubscriberConfig{ConsumerGroup: group})
		}

	case spec == "gochannel":
		// In-process. Publish blocks until a subscriber acked, which is
		// what the relay needs before it moves its checkpoint; messages
		// published while nobody subscribes are dropped, so main starts
		// the services before the relay.
		gc := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, logger)
		b.Name, b.Publisher = "Watermill GoChannel (in process)", gc
		b.Subscriber = func(string) (message.Subscriber, error) { return gc, nil }

	case strings.HasPrefix(spec, "nats://"):
		if err := resetJetStreams(ctx, spec, topics); err != nil {
			return nil, err
		}
		pub, err := natsjs.NewPublisher(spec, &natsjs.Config{Logger: logger})
		if err != nil {
			return nil, err
		}
		b.Name, b.Publisher, b.Permanent = "NATS JetStream at "+host(spec), pub, natsjs.Permanent
		b.Subscriber = func(group string) (message.Subscriber, error) {
			return wmnats.NewSubscriber(wmnats.SubscriberConfig{
				URL:            spec,
				CloseTimeout:   5 * time.Second,
				AckWaitTimeout: 30 * time.Second,
				NatsOptions:    []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)},
				Unmarshaler:    &natsjs.Marshaler{},
				JetStream: wmnats.JetStreamConfig{
					DurablePrefix:    group, // a durable consumer per service and topic
					SubscribeOptions: []nats.SubOpt{nats.DeliverAll(), nats.AckExplicit()},
				},
			}, logger)
		}

	case strings.HasPrefix(spec, "amqp://"), strings.HasPrefix(spec, "amqps://"):
		if err := deleteQueues(spec, topics); err != nil {
			return nil, err
		}
		pub, err := rabbitmq.NewPublisher(spec, &rabbitmq.Config{Logger: logger})
		if err != nil {
			return nil, err
		}
		b.Name, b.Publisher = "RabbitMQ at "+host(spec), pub
		// A durable queue per topic; each topic has one consuming service
		// here. For several services on one topic, give each its own queue
		// (amqp.NewDurablePubSubConfig).
		b.Subscriber = func(string) (message.Subscriber, error) {
			return wmamqp.NewSubscriber(wmamqp.NewDurableQueueConfig(spec), logger)
		}

	case strings.HasPrefix(spec, "kafka://"):
		// Kafka topics are not deleted here: each run uses topics of its
		// own (the broker must auto-create topics), so that no message of
		// an earlier run reaches this one.
		run := fmt.Sprintf("%s_%d", prefix, time.Now().Unix())
		b.Topic = func(category string) string { return run + "_" + category + "s" }
		brokers, codec, err := parseKafka(spec)
		if err != nil {
			return nil, err
		}
		pub, err := kafka.NewPublisher(brokers, &kafka.Config{Logger: logger, Compression: codec})
		if err != nil {
			return nil, err
		}
		b.Name, b.Publisher, b.Permanent = "Kafka "+strings.Join(brokers, ","), pub, kafka.Permanent
		// Each service is a consumer group: it gets every message of its
		// topics, each stream in order.
		b.Subscriber = func(group string) (message.Subscriber, error) {
			return kafka.NewSubscriber(brokers, group, &kafka.SubscriberConfig{Logger: logger})
		}

	default:
		if u, err := url.Parse(spec); err == nil {
			spec = u.Redacted()
		}
		return nil, fmt.Errorf("unknown broker %q: want postgres, gochannel, nats://…, amqp://… or kafka://…", spec)
	}
	return b, nil
}

// parseKafka reads kafka://host:port[,host:port…][?compression=codec]:
// the bootstrap brokers and the producer's codec ("" for the default).
func parseKafka(spec string) (brokers []string, codec string, err error) {
	rest := strings.TrimPrefix(spec, "kafka://")
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		q, err := url.ParseQuery(rest[i+1:])
		if err != nil {
			return nil, "", fmt.Errorf("broker %q: %w", spec, err)
		}
		codec, rest = q.Get("compression"), rest[:i]
		if _, err := kafka.ParseCompression(codec); err != nil {
			return nil, "", err
		}
	}
	for _, h := range strings.Split(rest, ",") {
		if h == "" {
			return nil, "", fmt.Errorf("broker %q: want kafka://host:port[,host:port…]", spec)
		}
		brokers = append(brokers, h)
	}
	return brokers, codec, nil
}

// resetJetStreams deletes the example's JetStream streams, with their
// messages and durable consumers from earlier runs, and creates them anew.
func resetJetStreams(ctx context.Context, addr string, topics []string) error {
	nc, err := nats.Connect(addr)
	if err != nil {
		return fmt.Errorf("NATS at %s: %w", host(addr), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for _, t := range topics {
		if err := js.DeleteStream(ctx, t); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete JetStream stream %s: %w", t, err)
		}
		cfg := jetstream.StreamConfig{Name: t, Subjects: []string{t}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create JetStream stream %s: %w", t, err)
		}
	}
	return nil
}

// deleteQueues deletes the example's RabbitMQ queues, with the messages
// of earlier runs; the publisher declares them again.
func deleteQueues(addr string, queues []string) error {
	conn, err := amqp091.Dial(addr)
	if err != nil {
		return fmt.Errorf("RabbitMQ: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	for _, q := range queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return fmt.Errorf("delete queue %s: %w", q, err)
		}
	}
	return nil
}

// host returns the host of a broker URL, for messages: never the
// password it may carry.
func host(spec string) string {
	u, err := url.Parse(spec)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Host
}
