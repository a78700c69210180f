// Package telemetry holds the names of every metric, span and attribute
// Strata records through OpenTelemetry, the W3C trace-context helpers that
// carry a trace from an append through the relay to consumers, and a
// health type and HTTP handler for Strata's workers.
//
// It imports only OpenTelemetry and the standard library, so every Strata
// package can use it.
//
// # Providers
//
// Strata records through the global providers (otel.GetMeterProvider,
// otel.GetTracerProvider) unless a Config gives others:
// eventstore.Config.MeterProvider and TracerProvider (which the store's
// subscriptions, projection.Runner and outbox.Relay default to), and
// outbox.DeduplicatorConfig. Install an SDK once at start-up and every
// Strata worker reports through it:
//
//	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
//	otel.SetMeterProvider(mp)
//	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(spanExporter))
//	otel.SetTracerProvider(tp)
//
// With no SDK installed the instruments and spans are no-ops: an append
// then costs one context allocation more and copies no metadata.
//
// # Metrics
//
// All in the instrumentation scope ScopeName. Durations are histograms in
// seconds with buckets from 0.5 ms to 10 s.
//
// | name | type | unit | attributes | meaning |
// |---|---|---|---|---|
// | `strata.append.duration` | histogram | `s` | `strata.stream.category`, `strata.outcome` (`ok`, `conflict`, `invalid`, `error`) | time of each Append / AppendTx call, whatever its outcome |
// | `strata.append.events` | counter | `{event}` | `strata.stream.category` | events appended by successful calls |
// | `strata.subscription.events` | counter | `{event}` | `strata.subscription`, `strata.partition` | events handled in committed batches (projections, relays, Pub/Sub consumer groups: every eventstore subscription) — the throughput |
// | `strata.subscription.batch.duration` | histogram | `s` | `strata.subscription`, `strata.partition` | from reading a batch to committing its checkpoint |
// | `strata.subscription.lag` | gauge | `{event}` | `strata.subscription`, `strata.partition` | events matching the subscription committed after its checkpoint, counted by the database at each collection (capped at 1,000,000), for the partitions this process owns |
// | `strata.subscription.lag.seconds` | gauge | `s` | `strata.subscription`, `strata.partition` | age of the oldest of those events; 0 when caught up |
// | `strata.horizon.age` | gauge | `s` | — | how long gap-safe readers have been held back by the oldest open transaction, as the store's role sees it; 0 when none is |
// | `strata.subscription.errors` | counter | `{error}` | `strata.subscription`, `strata.partition`, `strata.error.transient` | failed handler attempts (every failed retry counts) |
// | `strata.subscription.dead_letters` | counter | `{event}` | `strata.subscription`, `strata.partition` | events parked as dead letters (the failing one and those of its stream parked behind it) |
// | `strata.subscription.breaker.state` | gauge | `1` | `strata.subscription` | the circuit breaker in this process: 0 closed, 1 half-open, 2 open |
// | `strata.subscription.breaker.transitions` | counter | `{transition}` | `strata.subscription`, `strata.breaker.state` | circuit breaker state changes, by the state entered |
// | `strata.relay.published` | counter | `{message}` | `strata.relay`, `strata.topic` | messages the broker acknowledged to the relay |
// | `strata.relay.errors` | counter | `{error}` | `strata.relay`, `strata.topic` | failed publish calls of the relay |
// | `strata.consume.messages` | counter | `{message}` | `strata.consumer`, `strata.outcome` (`ok`, `duplicate`, `error`) | messages received by an outbox.Deduplicator |
// | `strata.consume.duration` | histogram | `s` | `strata.consumer`, `strata.outcome` | time per message in an outbox.Deduplicator, handler and commit included |
//
// A projection's subscription is named "projection:NAME" (or
// "projection:NAME@vN"), a relay's "outbox:NAME"; the relay's lag is
// therefore `strata.subscription.lag{strata.subscription="outbox:relay"}`.
// A stream's category is the part of its ID before the first '-': keep
// stream IDs in the CATEGORY-ID form so that the category attribute stays
// a short list.
//
// # Spans
//
// | name | kind | attributes | covers |
// |---|---|---|---|
// | `strata.append` | client | `strata.stream.id`, `strata.stream.category`, `strata.event.count`, `db.system.name`, `strata.stream.version` | one Append / AppendTx call; the appended events carry its context |
// | `strata.relay.publish` | producer | `strata.relay`, `strata.stream.id`, `strata.event.type`, `strata.event.id`, `messaging.destination.name`, `messaging.message.id` | publishing one event until the broker acknowledged it; a child of the event's trace context, and the message carries its own |
// | `strata.consume` | consumer | `strata.consumer`, `messaging.message.id`, `strata.event.type`, `strata.stream.id`, `strata.duplicate` | one delivery through outbox.Deduplicator; a child of the message's trace context, held by the handler's context |
//
// # Trace context
//
// When the context given to Append or AppendTx carries a valid span
// context, each event's Metadata.Values gets "traceparent" (and
// "tracestate") of the strata.append span, unless it holds a traceparent
// already. The relay starts strata.relay.publish as a child of it for each
// such event and writes the publish span's context into the message
// metadata (events appended without a trace context are published without
// a span: the metrics still count them). outbox.Deduplicator's middleware
// starts strata.consume from the message metadata and puts it in the
// message's context, so an event the handler appends with msg.Context()
// carries the same trace on. One request therefore shows as one trace:
//
//	request ─ strata.append ─ strata.relay.publish ─ strata.consume ─ strata.append ─ …
//
// The W3C Trace Context format is always used (Inject, Extract,
// WithTraceContext), whatever the global propagator, so that stored events
// read the same in every program.
//
// # Health
//
// A Health is Ready, Lagging or Failing, with a reason. projection.Runner
// (Check, HealthChecks) and outbox.Relay (Check) report theirs, and a
// HealthHandler serves a set of named checks as JSON: 200 while none is
// Failing, 503 otherwise (Lagging too with LaggingUnavailable):
//
//	checks := runner.HealthChecks()
//	checks["outbox:relay"] = relay.Check
//	http.Handle("/healthz", telemetry.NewHealthHandler(checks, nil))
//
//	{"state":"lagging","checks":{"outbox:relay":{"state":"ready"},
//	 "projection:order_summary":{"state":"lagging","reason":"12000 events behind, the oldest recorded 41s ago","since":"…"}}}
//
// # Logs
//
// Strata's workers log through the *slog.Logger of their Config (default
// slog.Default()), with the subscription, partition, relay or projection
// as attributes.
package telemetry
