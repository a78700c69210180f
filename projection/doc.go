// Package projection builds Postgres read models from the global event log
// with checkpoints that commit in the same transaction as the read model,
// so that a process killed at any instant neither loses nor doubles an
// effect; shares the work among processes; and rebuilds any projection on
// demand.
//
// # Projections and handlers
//
// A Projection is a name, a Handler, an optional filter (event Types,
// stream Categories) and a Reset that clears its read model:
//
//	h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
//		_, err := tx.Exec(ctx, `INSERT INTO order_summary ...`, ...)
//		return err
//	})
//	reset := func(ctx context.Context, tx pgx.Tx) error {
//		_, err := tx.Exec(ctx, "TRUNCATE order_summary")
//		return err
//	}
//	runner := projection.NewRunner(store, []projection.Projection{
//		{Name: "order_summary", Handler: h, Reset: reset, Categories: []string{"order"}},
//	}, nil)
//	err := runner.Run(ctx) // until ctx ends; run it in as many processes as you like
//
// The runner reads events in batches (Config.BatchSize, default 500) and
// applies each batch in one transaction, calling Handle once per event in
// log order, then advances the checkpoint in that same transaction. A
// handler that also implements BatchHandler gets the whole batch at once,
// for set-based writes.
//
// A TypedHandler decodes each event with a schema registry and calls the
// function registered with On for its Go type, with the aggregate ID taken
// off the stream ID:
//
//	h := projection.NewTypedHandler(reg, nil)
//	err := projection.On(h, func(ctx context.Context, tx pgx.Tx, e projection.Decoded[OrderPlaced]) error {
//		_, err := tx.Exec(ctx, `INSERT INTO order_summary VALUES ($1, $2)`, e.AggregateID, e.Value.Total)
//		return err
//	})
//	p := projection.Projection{Name: "order_summary", Handler: h, Types: h.Types()}
//
// # How it reads the log
//
// Each projection is one eventstore.Subscription, named by
// SubscriptionName ("projection:NAME", "projection:NAME@v2" for version 2).
// The subscription reads the log in the gap-safe order of
// eventstore.Position, so no event is ever skipped, even one whose
// transaction commits after later ones; it catches up from the checkpoint,
// then follows the log, woken by the store's notification, with a slow poll
// (Config.PollInterval) for lost notifications.
//
// # Many processes, partitions
//
// Each projection partition has a lease in Postgres: one process owns it
// at a time, and when the owner dies (SIGKILL, a lost connection) another
// takes over after at most Config.LeaseTTL, from the last committed
// checkpoint. Every checkpoint update is fenced on the owner and on the
// checkpoint it read, so a process that lost its lease cannot commit.
// Projection.Partitions splits a projection by a hash of the stream ID so
// that several processes work on it at once; each stream's events stay in
// order in one partition.
//
// # Failures
//
// A handler error rolls back the batch; the events are then retried one per
// transaction with exponential backoff (Config.MaxAttempts,
// Config.RetryBackoff). After the last attempt, under eventstore.Park (the
// default) the event becomes a dead letter (with its error, attempts and
// time) and the projection goes on; later events of the same stream are
// parked behind it, so one stream's order is never broken, while other
// streams continue. Runner.DeadLetters lists them; Runner.RetryDeadLetters
// runs them again in order. Under eventstore.Stop the projection stops in
// this process (Status shows it failing) while the others keep running.
// Errors from a lost database connection never count as attempts: they are
// retried until the database is back, and a projection whose subscription
// fails altogether is restarted with backoff. A cancelled context stops
// Run between batches; a batch in flight rolls back.
//
// # Forgetting a data subject
//
// A projection whose read model keeps personal data (see package shred)
// gives a Forget that scrubs a subject from its tables. Runner.Forget
// deletes the subject's key and runs every projection's Forget in one
// transaction; a batch that was writing the subject's plaintext finishes
// first and is scrubbed too. A projection without Forget keeps what it
// wrote until a Rebuild, which reads the fields erased.
//
// # Rebuilds and resets
//
// Runner.Rebuild runs the projection's Reset and moves its checkpoints to
// the start of the log in one transaction, then replays the log, reporting
// Progress (events done, total, rate). Memory stays flat: one batch at a
// time. A rebuild that is killed resumes from its last committed batch: the
// next Rebuild call continues it (the rebuild is recorded in the table
// projection_rebuilds, migration 0005), and so does any Runner running the
// projection. Runner.Reset moves the checkpoints to any position.
//
// Rebuild without downtime: give the projection a new Version and have
// the handler write to a table per version (VersionOf(ctx) tells it which).
// Deploy the new version beside the old one: it has its own checkpoints
// and starts from the beginning of the log while the old version keeps
// serving and following the log. When Status shows the new version caught
// up, switch the readers to its table, stop the old version and remove its
// checkpoints with eventstore.Store.DeleteSubscription of the old
// SubscriptionName.
//
// # Status and metrics
//
// Runner.Status reports, per projection and partition, the checkpoint,
// the head of the log, the lag in events and time, the state (running,
// failing, stopped, idle, rebuilding), the owners, the last error and the
// dead letters. When a projection lags because an open transaction holds
// back every gap-safe reader (the price of never skipping an event),
// Status.HeldBy names it: backend pid, age, application name, state.
// Config.Metrics receives events handled, batch latency and lag per batch,
// parked events and handler errors.
//
// Each projection's subscription also records the OpenTelemetry metrics of
// package telemetry (strata.subscription.* with strata.subscription =
// "projection:NAME"), through Config.MeterProvider or the store's.
//
// # Health
//
// Runner.Check reports a projection as Ready, Lagging (rebuilding, more
// than Config.HealthMaxLag events or HealthMaxLagTime behind, or with dead
// letters) or Failing (stopped, not running in this process, handler
// failing), with the reason; Runner.HealthChecks gives them all to a
// telemetry.HealthHandler:
//
//	http.Handle("/healthz", telemetry.NewHealthHandler(runner.HealthChecks(), nil))
package projection
