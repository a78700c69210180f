package telemetry

// ScopeName is the instrumentation scope of every Strata meter and tracer.
const ScopeName = "github.com/strata-go/strata"

// Metric names. Each is described, with its type, unit and attributes, in
// the package documentation and in Metrics.
const (
	// MetricAppendDuration is a histogram of the time an Append or AppendTx
	// call takes, in seconds, whatever its outcome. Attributes:
	// AttrStreamCategory, AttrOutcome.
	MetricAppendDuration = "strata.append.duration"
	// MetricAppendEvents counts the events appended by successful Append
	// and AppendTx calls (for AppendTx: written to the caller's
	// transaction, which may still roll back). Attributes:
	// AttrStreamCategory.
	MetricAppendEvents = "strata.append.events"
	// MetricSubscriptionEvents counts the events a subscription's handler
	// handled in committed batches. Attributes: AttrSubscription,
	// AttrPartition.
	MetricSubscriptionEvents = "strata.subscription.events"
	// MetricSubscriptionBatchDuration is a histogram of the time from
	// reading a batch to committing its checkpoint, in seconds. Attributes:
	// AttrSubscription, AttrPartition.
	MetricSubscriptionBatchDuration = "strata.subscription.batch.duration"
	// MetricSubscriptionLag is a gauge of the events (matching the
	// subscription's filter and partition) committed after the checkpoint,
	// observed at each collection for the partitions this process owns,
	// counted over at most 10,000 entries of the log after it (so that a
	// collection costs the same at any size of the log). Attributes:
	// AttrSubscription, AttrPartition.
	MetricSubscriptionLag = "strata.subscription.lag"
	// MetricSubscriptionLagSeconds is a gauge of how long ago the oldest of
	// those events was recorded, in seconds (0 when caught up). Attributes:
	// AttrSubscription, AttrPartition.
	MetricSubscriptionLagSeconds = "strata.subscription.lag.seconds"
	// MetricHorizonAge is a gauge of how long gap-safe readers have been
	// held back by the oldest open transaction on the server, in seconds (0
	// when nothing holds them back), as eventstore.Store.Horizon sees it:
	// observed at each collection while a subscription runs in this
	// process. No attributes.
	MetricHorizonAge = "strata.horizon.age"
	// MetricSubscriptionErrors counts failed handler attempts (each retry
	// that fails counts). Attributes: AttrSubscription, AttrPartition,
	// AttrTransient.
	MetricSubscriptionErrors = "strata.subscription.errors"
	// MetricSubscriptionDeadLetters counts events parked as dead letters:
	// the one the handler kept failing on and those of its stream parked
	// behind it. Attributes: AttrSubscription, AttrPartition.
	MetricSubscriptionDeadLetters = "strata.subscription.dead_letters"
	// MetricSubscriptionBreakerState is a gauge of a subscription's circuit
	// breaker in this process: 0 closed, 1 half-open, 2 open. Attributes:
	// AttrSubscription.
	MetricSubscriptionBreakerState = "strata.subscription.breaker.state"
	// MetricSubscriptionBreakerTransitions counts a subscription's circuit
	// breaker state changes. Attributes: AttrSubscription,
	// AttrBreakerState (the state entered).
	MetricSubscriptionBreakerTransitions = "strata.subscription.breaker.transitions"
	// MetricRelayPublished counts messages the broker acknowledged to the
	// relay (re-publications after a failure or a restart count again).
	// Attributes: AttrRelay, AttrTopic.
	MetricRelayPublished = "strata.relay.published"
	// MetricRelayErrors counts failed publish calls of the relay.
	// Attributes: AttrRelay, AttrTopic.
	MetricRelayErrors = "strata.relay.errors"
	// MetricConsumeMessages counts the messages a deduplicating consumer
	// (outbox.Deduplicator) received, by outcome. Attributes: AttrConsumer,
	// AttrOutcome (OutcomeOK, OutcomeDuplicate, OutcomeError).
	MetricConsumeMessages = "strata.consume.messages"
	// MetricConsumeDuration is a histogram of the time a deduplicating
	// consumer took per message, handler and commit included, in seconds.
	// Attributes: AttrConsumer, AttrOutcome.
	MetricConsumeDuration = "strata.consume.duration"
)

// Span names.
const (
	// SpanAppend covers one Append or AppendTx call (kind client). Its
	// context is what the appended events carry in their metadata.
	// Attributes: AttrStreamID, AttrStreamCategory, AttrEventCount,
	// AttrDBSystem; on success AttrStreamVersion.
	SpanAppend = "strata.append"
	// SpanRelayPublish covers the relay's publication of one message until
	// the broker acknowledged it (kind producer), as a child of the trace
	// context the event carries; the message carries this span's context.
	// Only events that carry a trace context get one. Attributes:
	// AttrRelay, AttrStreamID, AttrEventType, AttrEventID,
	// AttrMessagingDestination, AttrMessagingMessageID.
	SpanRelayPublish = "strata.relay.publish"
	// SpanConsume covers a deduplicating consumer's handling of one
	// message (kind consumer), as a child of the trace context the message
	// carries; the handler's context holds it, so the events the handler
	// appends with that context continue the trace. Attributes:
	// AttrConsumer, AttrMessagingMessageID, AttrEventType, AttrStreamID,
	// AttrDuplicate.
	SpanConsume = "strata.consume"
)

// Attribute keys.
const (
	// AttrSubscription is the name of an eventstore subscription, as in
	// "projection:order_summary" or "outbox:relay".
	AttrSubscription = "strata.subscription"
	// AttrBreakerState is the circuit breaker state entered: "closed",
	// "half-open" or "open".
	AttrBreakerState = "strata.breaker.state"
	// AttrPartition is a subscription partition, from 0.
	AttrPartition = "strata.partition"
	// AttrStreamCategory is the category of a stream: the part of its ID
	// before the first '-' ("order" for "order-42").
	AttrStreamCategory = "strata.stream.category"
	// AttrStreamID is a stream ID (spans only: too many values for metrics).
	AttrStreamID = "strata.stream.id"
	// AttrStreamVersion is a stream's version after an append.
	AttrStreamVersion = "strata.stream.version"
	// AttrEventType is an event's type name.
	AttrEventType = "strata.event.type"
	// AttrEventID is an event's ID (spans only).
	AttrEventID = "strata.event.id"
	// AttrEventCount is how many events an append carried.
	AttrEventCount = "strata.event.count"
	// AttrOutcome is how an operation ended: one of the Outcome constants.
	AttrOutcome = "strata.outcome"
	// AttrTransient is true for a handler error the subscription's
	// Transient classifies as saying nothing about the event.
	AttrTransient = "strata.error.transient"
	// AttrRelay is a relay's name (outbox.Config.Name).
	AttrRelay = "strata.relay"
	// AttrTopic is the topic a relay published to.
	AttrTopic = "strata.topic"
	// AttrConsumer is a deduplicating consumer's name.
	AttrConsumer = "strata.consumer"
	// AttrDuplicate is true on a consume span whose message had been
	// handled before (the handler did not run).
	AttrDuplicate = "strata.duplicate"
	// AttrDBSystem is the OpenTelemetry semantic-convention key for the
	// database product; Strata sets it to "postgresql".
	AttrDBSystem = "db.system.name"
	// AttrMessagingDestination is the semantic-convention key for a
	// message's topic.
	AttrMessagingDestination = "messaging.destination.name"
	// AttrMessagingMessageID is the semantic-convention key for a message's
	// ID (the event ID for messages the relay publishes).
	AttrMessagingMessageID = "messaging.message.id"
)

// Values of AttrOutcome.
const (
	// OutcomeOK: the operation succeeded.
	OutcomeOK = "ok"
	// OutcomeConflict: an append's expected version did not hold.
	OutcomeConflict = "conflict"
	// OutcomeInvalid: an append was refused before anything was sent (a
	// malformed event, or one the Validator refused).
	OutcomeInvalid = "invalid"
	// OutcomeDuplicate: a consumer had handled the message before.
	OutcomeDuplicate = "duplicate"
	// OutcomeError: any other failure.
	OutcomeError = "error"
)

// Keys of the W3C trace context in event metadata (eventstore
// Metadata.Values) and in message metadata.
const (
	// KeyTraceparent holds the W3C traceparent header's value.
	KeyTraceparent = "traceparent"
	// KeyTracestate holds the W3C tracestate header's value, when there is
	// one.
	KeyTracestate = "tracestate"
)

// Kind is the kind of a metric instrument.
type Kind string

// Instrument kinds, as in Metric.Kind.
const (
	// Counter only goes up; it is summed over time.
	Counter Kind = "counter"
	// Histogram records a distribution of values.
	Histogram Kind = "histogram"
	// Gauge is a current value, observed when metrics are collected.
	Gauge Kind = "gauge"
)

// Metric describes one of Strata's metrics.
type Metric struct {
	// Name is the metric's name, one of the Metric constants.
	Name string
	// Kind is its instrument kind.
	Kind Kind
	// Unit is its UCUM unit: "s" for seconds, "{event}" for a count of
	// events, and so on.
	Unit string
	// Attributes are the attribute keys its measurements carry.
	Attributes []string
	// Description says what it measures.
	Description string
}

// Metrics returns the description of every metric Strata records, in the
// order of the package documentation's table.
func Metrics() []Metric {
	sub := []string{AttrSubscription, AttrPartition}
	return []Metric{
		{MetricAppendDuration, Histogram, "s", []string{AttrStreamCategory, AttrOutcome},
			"Duration of Append and AppendTx calls, whatever their outcome."},
		{MetricAppendEvents, Counter, "{event}", []string{AttrStreamCategory},
			"Events appended by successful Append and AppendTx calls."},
		{MetricSubscriptionEvents, Counter, "{event}", sub,
			"Events handled in committed subscription batches."},
		{MetricSubscriptionBatchDuration, Histogram, "s", sub,
			"Time from reading a subscription batch to committing its checkpoint."},
		{MetricSubscriptionLag, Gauge, "{event}", sub,
			"Events matching the subscription committed after its checkpoint, among at most 10,000 entries of the log (partitions owned by this process)."},
		{MetricSubscriptionLagSeconds, Gauge, "s", sub,
			"Age of the oldest event the subscription has not handled yet; 0 when caught up."},
		{MetricHorizonAge, Gauge, "s", nil,
			"How long gap-safe readers have been held back by the oldest open transaction; 0 when none is."},
		{MetricSubscriptionErrors, Counter, "{error}", []string{AttrSubscription, AttrPartition, AttrTransient},
			"Failed handler attempts."},
		{MetricSubscriptionDeadLetters, Counter, "{event}", sub,
			"Events parked as dead letters."},
		{MetricSubscriptionBreakerState, Gauge, "1", []string{AttrSubscription},
			"Circuit breaker state: 0 closed, 1 half-open, 2 open."},
		{MetricSubscriptionBreakerTransitions, Counter, "{transition}", []string{AttrSubscription, AttrBreakerState},
			"Circuit breaker state changes, by the state entered."},
		{MetricRelayPublished, Counter, "{message}", []string{AttrRelay, AttrTopic},
			"Messages the broker acknowledged to the relay."},
		{MetricRelayErrors, Counter, "{error}", []string{AttrRelay, AttrTopic},
			"Failed publish calls of the relay."},
		{MetricConsumeMessages, Counter, "{message}", []string{AttrConsumer, AttrOutcome},
			"Messages received by a deduplicating consumer, by outcome (ok, duplicate, error)."},
		{MetricConsumeDuration, Histogram, "s", []string{AttrConsumer, AttrOutcome},
			"Time a deduplicating consumer took per message, handler and commit included."},
	}
}

// Span describes one of Strata's spans.
type Span struct {
	// Name is the span's name, one of the Span constants.
	Name string
	// Kind is its OpenTelemetry span kind.
	Kind string
	// Attributes are the attribute keys it carries.
	Attributes []string
	// Description says what it covers.
	Description string
}

// Spans returns the description of every span Strata starts.
func Spans() []Span {
	return []Span{
		{SpanAppend, "client", []string{AttrStreamID, AttrStreamCategory, AttrEventCount, AttrDBSystem, AttrStreamVersion},
			"One Append or AppendTx call. The appended events carry its context in their metadata."},
		{SpanRelayPublish, "producer", []string{AttrRelay, AttrStreamID, AttrEventType, AttrEventID, AttrMessagingDestination, AttrMessagingMessageID},
			"The relay's publication of one traced event, until the broker acknowledged it; a child of the event's trace context, carried on in the message's metadata."},
		{SpanConsume, "consumer", []string{AttrConsumer, AttrMessagingMessageID, AttrEventType, AttrStreamID, AttrDuplicate},
			"A deduplicating consumer's handling of one message; a child of the message's trace context, held by the handler's context."},
	}
}
