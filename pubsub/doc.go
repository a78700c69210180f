// Package pubsub makes the event store a Watermill Pub/Sub: a
// message.Publisher that appends messages as events and a
// message.Subscriber that delivers them through durable consumer groups.
// Watermill's router, middleware and CQRS component then run on Postgres
// alone, and the same handlers move to NATS or Kafka later by swapping the
// constructors.
//
//	pub, _ := pubsub.NewPublisher(store, nil)
//	sub, _ := pubsub.NewSubscriber(store, &pubsub.SubscriberConfig{ConsumerGroup: "billing"})
//	router.AddConsumerHandler("bill", "orders", sub, handle)
//
// # How topics are stored
//
// A topic's messages are events of the stream category
// Category(prefix, topic): the prefix ("wm." by default) and the topic
// with '%' and '-' percent-encoded, so topics with dashes (Watermill's own
// tests use UUIDs) never share a category. By default a topic is one
// stream, StreamID(prefix, topic, ""), so every consumer sees it in one
// total order. PublisherConfig.PartitionKey spreads a topic over streams
// "<category>-<key>": order is then kept per key, and the partitions of a
// consumer group can be consumed by several processes at once.
//
// Each message is one event. A payload that is JSON is the event's data,
// byte for byte (type EventTypeJSON); any other payload is stored as a
// base64 JSON string (type EventTypeBytes) and decoded back byte for byte.
// Metadata is kept as the event's metadata values (correlation_id also as
// its correlation ID; event_id, which the outbox relay sets to the ID of
// the event a message carries, also as its causation ID, so the copy
// hangs under its event in `strata trace`). The event ID is EventID(topic, message UUID): a
// message published again to the same topic — a retried Publish, a
// redelivered handler's output, the same UUID twice in one Publish or in
// concurrent ones — is stored once, and Publish returns nil for it; the
// other messages of the call are stored as usual. The same message sent to
// two topics is stored in each.
//
// Each stored message carries the trace context of its own context
// (msg.Context()) in its metadata (telemetry.WithTraceContext), even when
// concurrent Publish calls share one append.
//
// Messages are not domain events: the Publisher appends them without the
// store's Config.Validator (see NewPublisher), so the application's one
// Store, with its *schema.Registry, serves both its events and its
// messages.
//
// # Publishing in a transaction
//
// A message whose context carries a pgx.Tx (ContextWithTx) is appended in
// that transaction: a handler's read-model writes and its outgoing
// messages commit together, or not at all. Without a tx, each Publish
// commits before it returns; concurrent Publish calls to one stream are
// coalesced into one append (one commit for many publishers).
//
// Watermill's Publish takes no context: the messages' own does
// (msg.Context(), which the CQRS buses set to the context passed to them).
// When it ends, or the Publisher is closed, Publish returns an error
// matching the context's error (or ErrClosed) at once, whether it waits
// for its turn behind a coalesced append or its own append waits for the
// database; its messages were then not written (an append that had already
// committed returns nil). Close ends the calls under way this way and
// returns without waiting for a database that does not answer.
//
// # Consumer groups and delivery
//
// Subscribe(ctx, topic) reads the topic through an eventstore.Subscription
// named SubscriptionName(prefix, group, topic): gap-safe reads in log
// order, a checkpoint per partition in Postgres, leases shared fairly
// among the group's processes, LISTEN/NOTIFY wake-ups with polling as the
// fallback. A group new to a topic starts at its first message.
//
// Delivery follows Watermill's Pub/Sub contract: one message at a time per
// partition, the next only after the current one is acked; a nacked
// message is delivered again (after NackResendSleep); each message's
// context is cancelled once it is acked or nacked. The checkpoint moves
// after each batch of acked messages (SubscriberConfig.BatchSize), so
// delivery is at-least-once: after a crash or Close, the acked messages of
// the unfinished batch come again, never a message before it, and nothing
// is skipped. The checkpoint transaction holds no connection while a
// consumer works (eventstore.SubscriptionConfig.HandleOutsideTx).
//
// A database error (the checkpoint cannot be stored after an ack, say) is
// not the message's fault: the message comes again, with the
// subscription's backoff (eventstore.SubscriptionConfig.MaxRetryBackoff,
// up to 30s), for as long as the database is away, and an outage parks
// nothing. A nacked message comes again as long as it is nacked (bound it
// with Watermill's Retry and PoisonQueue middleware). Only a stored event
// that cannot be turned back into a message (a corrupt base64 payload) is
// parked, after the subscription's default MaxAttempts (5), as an
// eventstore dead letter of the group's subscription.
//
// The status, lag, reset and replay of a group are the eventstore admin
// calls on its subscription name.
//
// # Performance
//
// BenchmarkPubSub measures publishing, consuming a 5k and a 50k backlog,
// publish-to-consume under load and publish-to-handler latency beside
// Watermill's own SQL Pub/Sub (watermill-sql, Postgres adapter) on the
// same database, alternating the two each round:
//
//	go test -run '^$' -bench BenchmarkPubSub -benchtime 1x ./pubsub/
//
// Consuming reads the log by keyset (transaction id, position), so its
// cost per message does not grow with the backlog. A subscription scans
// the log from its checkpoint and keeps its topic's category, so other
// topics' traffic behind the checkpoint is read past too.
//
// # Watermill's conformance suite
//
// TestUniversal runs Watermill's pubsub/tests suite with ConsumerGroups,
// GuaranteedOrder and Persistent. ExactlyOnceDelivery is not claimed
// (at-least-once, as above); NewSubscriberReceivesOldMessages is not
// claimed, since a new Subscriber of an existing group continues from the
// group's checkpoint (a new group does start at the first message).
package pubsub
