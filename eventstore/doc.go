// Package eventstore is Strata's PostgreSQL event store: streams of
// versioned events with optimistic concurrency, one global log that readers
// consume in order without ever skipping an event, snapshots, and the one
// subscription mechanism (checkpoints, leases, wake-ups, dead letters) on
// which projections, the outbox relay and the Postgres Pub/Sub are built.
//
// The tables are created by the migrations package; New never changes the
// database.
//
// # Appending
//
// Append writes one or more events to a stream, atomically, if the stream's
// version matches what the caller expects:
//
//	res, err := store.Append(ctx, "order-42", eventstore.Exactly(2), ev)
//	var conflict *eventstore.ConflictError
//	if errors.As(err, &conflict) { … conflict.Actual … }
//
// The expectation is checked in the same statement that inserts the events
// (the stream's row in the streams table is updated with a WHERE clause on
// its version, and the events are inserted by joining on the result), so an
// append is a single round trip and a single implicit transaction. Two
// writers racing with the same expected version: exactly one wins, the
// other gets ErrConflict. Versions are gapless, also for Any.
//
// AppendTx does the same inside the caller's transaction, so events commit
// together with read-model rows, processed-command markers or anything else.
//
// Concurrent Appends (to different streams, of one event or many) are
// combined: those that arrive while the store's statements are on their
// way to the database wait and go together, as one statement, one round
// trip and one commit, each keeping its own expected-version check,
// errors, result and span. An Append that finds nothing on its way goes at
// once, alone. Appends to one stream go one after the other, in the order
// they arrived. Config.DisableCombiner turns it off; AppendTx never
// combines (see combiner.go).
//
// A stream's versions also follow the log's order (below). Append takes an
// advisory lock on the stream before its transaction gets an ID, so it
// always comes after the stream's previous append; AppendTx cannot (the
// caller's transaction may have its ID already), so when a transaction
// that got its ID later has appended to the stream since, AppendTx writes
// nothing and returns an *OutOfOrderError: roll back and retry, as after a
// serialization failure.
//
// Events are checked before anything is sent: type and stream names, valid
// JSON data, sizes (Config.MaxEventSize, Config.MaxAppendEvents), and
// Config.Validator (a *schema.Registry). A refused append returns an error
// matching ErrInvalidEvent that names the event and the field, and writes
// nothing. Event IDs are UUIDv7 unless given; a stored ID is refused with
// ErrDuplicateEvent, so a retried command cannot store its events twice.
//
// Append returns nil exactly when its events are stored, once. When its
// connection is lost after the statement may have reached the server, it
// learns the outcome on another connection before returning (see Append
// and resolve.go): nil when the events are stored, the error when they are
// not, and an *AmbiguousError (ErrAmbiguous) only when the database stays
// unreachable for Config.ResolveTimeout.
//
// # Reading
//
// ReadStream yields a stream's events as an iter.Seq2, streaming rows from
// the server. ReadAll reads the global log by Position.
//
// # Why the global log never skips an event
//
// A sequence (BIGSERIAL) value is taken when a row is inserted but becomes
// visible when its transaction commits, so commits appear out of sequence
// order; a reader that checkpoints "the highest position seen" skips the
// late ones. Every event therefore also stores the ID of its transaction
// (xid8), and the log is ordered by (transaction ID, sequence). A read
// returns only events whose transaction ID is below the xmin of the read's
// own snapshot: every such transaction has committed or rolled back, and
// any transaction that writes later gets a higher ID. Nothing can ever
// appear before a position already read, with no locks, no timeouts and no
// gap bookkeeping.
//
// The price: an open transaction that holds an ID (anywhere on the server,
// even in another database) holds back every reader until it ends. Keep
// transactions short, set idle_in_transaction_session_timeout, and use
// Store.Horizon (or `strata status`) to see who is holding readers back.
//
// # Subscriptions
//
// A Subscription is a named, durable reader of the log: the mechanism that
// projections, the outbox relay and Pub/Sub consumer groups share.
//
//	sub, err := store.Subscription(eventstore.SubscriptionConfig{Name: "order_summary", Partitions: 4})
//	err = sub.Run(ctx, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
//		// write the read model through tx: it commits with the checkpoint
//	})
//
// Its checkpoint advances in the handler's transaction, fenced on the
// lease owner, on the previous checkpoint and on the count of resets, so
// effects written through
// the transaction happen exactly once even across crashes and takeovers.
// Partitions split the log by stream so several processes share the work,
// each stream in order; leases expire when a process dies and another takes
// over. Appends wake subscribers through LISTEN/NOTIFY, coalesced to at most
// one notification per Config.NotifyInterval (a NOTIFY in every append would
// serialise commits); subscribers also poll briefly after each wake-up and
// slowly when idle, so a lost notification only delays. A handler that keeps
// failing parks the event as a dead letter, with the stream's later events
// parked behind it, and the rest of the log goes on (or, with Stop, Run
// returns). SubscriptionStatuses, ResetSubscription, DeadLetters and
// RetryDeadLetters are the operator's controls.
//
// # Personal data
//
// Config.Sealer encrypts events' personal fields before an append writes
// them, and Config.Opener decrypts them, or gives their erased value, in
// every read and subscription: package shred's Shredder is both.
// Subscriptions open each batch inside its transaction with the keys
// share-locked, so forgetting a subject waits for a batch holding its
// plaintext; SubscriptionConfig.Sealed hands a handler the events as
// stored (the outbox relay copies them so).
//
// # Telemetry
//
// Every Append and AppendTx is a strata.append span and records
// strata.append.duration and strata.append.events; when ctx carries a span
// context, the events' Metadata.Values get its W3C "traceparent" (and
// "tracestate") so that the relay and consumers continue the trace. Every
// subscription records its handled events, batch durations, handler
// errors and dead letters, and observes its lag in events and seconds
// (the same figures as SubscriptionStatuses) for the partitions this
// process owns. Config.MeterProvider and TracerProvider choose the
// providers (default: the global ones); package telemetry lists every
// name.
package eventstore
