// Package outbox publishes every committed event of the store to a broker
// through Watermill — NATS JetStream, RabbitMQ, Kafka or in-process — with
// the guarantees of a transactional outbox, and makes consumers' effects
// exactly-once with a Postgres table of processed message IDs.
//
// # The log is the outbox
//
// There is no outbox table: the relay reads the event log itself, through
// an eventstore.Subscription named "outbox:"+Config.Name, so it never
// skips an event (the gap-safe read) and an event is relayed exactly when
// its append committed. For each batch it publishes the messages, waits
// until the broker acknowledged all of them, and only then moves its
// checkpoint. A crash between the acknowledgement and the checkpoint
// re-publishes that batch: delivery is at least once.
//
//	pub, err := natsjs.NewPublisher("nats://127.0.0.1:4222", nil)
//	relay := outbox.NewRelay(store, pub, &outbox.Config{Permanent: natsjs.Permanent})
//	err = relay.Run(ctx) // until ctx ends
//
// # Messages
//
// NewMessage builds each message: UUID = the event ID, payload = the
// event's JSON byte for byte, and metadata MetaEventID, MetaStream,
// MetaVersion, MetaType, MetaSchemaVersion, MetaPosition,
// MetaCorrelationID, MetaCausationID, MetaRecordedAt, MetaPartitionKey
// (the stream ID) plus the event's Metadata.Values — where the W3C trace context
// ("traceparent") travels from the append to the consumer. Config.Topic
// routes (default: the stream's category, "order" for "order-42") and
// Config.Mapper filters or turns domain events into integration messages.
//
// # Order and concurrency
//
// Within a batch the relay publishes up to Config.Concurrency streams at
// once, each stream's messages one after another, and the next batch only
// starts when the whole batch is acknowledged: a stream's messages reach
// the broker in version order, and none overtakes an earlier one even
// across crashes. Partitioned brokers keep that order when they route by
// the partition key: the kafka subpackage uses it as the Kafka key, the
// natsjs subpackage can add it to the subject.
//
// # Broker outages and dead letters
//
// A failed publish is retried with exponential backoff (Config.RetryBackoff
// doubling to Config.MaxRetryBackoff, with jitter) for as long as the
// broker is down; Relay.Health reports the relay unhealthy meanwhile, with
// the last error and since when. Nothing is skipped or dead-lettered
// because of an outage. An error that Config.Permanent (or ErrPermanent)
// calls permanent — a message the broker refuses for its size, a mapper
// error — is tried Config.MaxAttempts times and then recorded as a dead
// letter of the relay's subscription; the stream's later events are parked
// behind it so its order holds, and the other streams go on. List and
// retry them with eventstore.Store.DeadLetters and RetryDeadLetters (or
// `strata dead-letters`).
//
// # Many processes
//
// Run the relay in as many processes as you like: each partition
// (Config.Partitions, split by a hash of the stream ID) is owned by one
// process at a time through a lease, and a crashed process's partitions
// are taken over after Config.LeaseTTL. Replay with
// eventstore.Store.ResetSubscription(ctx, relay.SubscriptionName(), pos, nil).
//
// # Deduplicating consumers
//
// At-least-once delivery means a consumer may see a message twice (a relay
// crash, a broker redelivery). Wrap its Watermill handler with a
// Deduplicator: each delivery runs in a Postgres transaction; the handler
// writes its effects through it (TxFromContext), and the message ID is
// recorded in processed_messages (created by migrations.Apply) in the same
// transaction, just before it commits. So the effects and the record
// commit together, and a redelivered message has no second effect.
//
//	router.AddConsumerHandler("billing", "order", sub, func(msg *message.Message) error {
//		tx, _ := outbox.TxFromContext(msg.Context())
//		_, err := tx.Exec(msg.Context(), `UPDATE invoices SET paid = true WHERE order_id = $1`, msg.Metadata.Get(outbox.MetaStream))
//		return err
//	}).AddMiddleware(outbox.Deduplicate(pool, "strata", "billing"))
//
// (ExampleDeduplicate runs this against a real router.)
//
// The messages a handler returns are recorded with the ID (UUID, payload,
// metadata). Watermill's router publishes them only after the transaction
// committed; if that publish fails, the router nacks, and the redelivery,
// found handled, returns the recorded messages so that the router
// publishes them again: effects exactly once, outputs at least once.
//
// Concurrent deliveries of one message wait for each other on an advisory
// lock, which takes no transaction ID: until the handler writes, its
// transaction does not hold back the gap-safe readers of the log (the
// relay, projections, Pub/Sub), and its AppendTx is not refused with
// eventstore.ErrOutOfOrder for the time it ran. Do slow work (calls to
// other services) before the handler's first write.
//
// Messages are deduplicated by UUID, or by the key
// DeduplicatorConfig.MessageID returns (for producers that leave the UUID
// empty). A message without a usable key is refused with
// ErrInvalidMessageID, never acknowledged unhandled; Watermill's
// PoisonQueueWithFilter can move it aside.
//
// Forget old IDs with Deduplicator.Expire from a periodic job, keeping
// them longer than the broker may redeliver; it deletes in batches of
// 1000 rows.
//
// # Publishers
//
// The publisher's Publish must return only after the broker acknowledged
// the messages. Ready-made constructors:
//
//   - NATS JetStream: natsjs.NewPublisher (watermill-nats/v2, JetStream
//     acks, Nats-Msg-Id = event ID so the server drops re-publications);
//     natsjs.NewSubscriber reads it back (a durable consumer per topic and
//     group, one message in flight so each stream stays in order).
//
//   - RabbitMQ: rabbitmq.NewPublisher (watermill-amqp/v3, durable queues,
//     publisher confirms); rabbitmq.NewSubscriber reads it back (prefetch
//     1), and rabbitmq.DeclareQueues declares the queues before the relay
//     first publishes.
//
//   - Kafka: kafka.NewPublisher (watermill-kafka/v3, key = partition key,
//     idempotent producer, acks from all replicas); its package
//     documentation says how to run against a Kafka broker.
//
//   - In-process: Watermill's GoChannel. Set BlockPublishUntilSubscriberAck,
//     or GoChannel delivers each message from its own goroutine, in any
//     order, and Publish returns before anyone handled it:
//
//     pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, logger)
//     relay := outbox.NewRelay(store, pubsub, nil)
//
// # Running against Kafka
//
// Strata's Kafka tests run against an in-process Kafka-protocol cluster
// (kafka/kafkatest, franz-go's kfake): SIGKILLed relay, broker outage, a
// refused message, a two-member consumer group, the circuit breaker. To
// relay to a real broker:
//
//  1. Start one: docker run -d --name kafka -p 9092:9092 apache/kafka:3.7.0
//  2. Create a topic per event category, with as many partitions as
//     consumers you want in a group:
//     kafka-topics.sh --bootstrap-server 127.0.0.1:9092 --create --topic order --partitions 6
//  3. pub, err := kafka.NewPublisher([]string{"127.0.0.1:9092"}, nil), then
//     outbox.NewRelay(store, pub, &outbox.Config{Permanent: kafka.Permanent}).Run(ctx).
//  4. Consume with kafka.NewSubscriber(brokers, "service", nil), the
//     handler wrapped in Deduplicate. Each stream's events share a key,
//     hence a partition, hence an order.
//
// # Circuit breaker
//
// The relay's subscription has a circuit breaker (Config.Breaker,
// eventstore.BreakerConfig): after a run of failed publishes every
// partition of the process pauses, then one event probes the broker.
// Publish errors that Config.Permanent reports are the message's own and
// never open it.
//
// # Telemetry and health
//
// The relay counts acknowledged messages and failed publishes
// (strata.relay.published, strata.relay.errors, by relay and topic); its
// subscription "outbox:NAME" records throughput, lag, errors and dead
// letters (strata.subscription.*). An event that carries a W3C trace
// context (the store adds it when the append's context has a span) is
// published in a strata.relay.publish span, a child of that context, and
// its message carries the publish span's "traceparent". A Deduplicator
// starts a strata.consume span from the message's metadata and puts it in
// msg.Context(), so the events a handler appends with that context stay in
// the same trace. Names are in package telemetry.
//
// Relay.Check reports the relay as Ready, Lagging (more than
// Config.HealthMaxLag events or HealthMaxLagTime behind, or with dead
// letters) or Failing (not running, or publishes failing since a given
// time), for a telemetry.HealthHandler:
//
//	checks := map[string]telemetry.HealthFunc{"outbox:relay": relay.Check}
//	http.Handle("/healthz", telemetry.NewHealthHandler(checks, nil))
//
// # Performance
//
// BenchmarkRelayThroughput and BenchmarkRelayLatency measure the relay
// against publishing the same messages directly with the same publisher;
// run them with
//
//	go test -run '^$' -bench BenchmarkRelay -benchtime 1x ./outbox/
package outbox
