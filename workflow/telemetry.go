package workflow

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-go/strata/telemetry"
)

// Metric, span and attribute names of workflows, in the instrumentation
// scope telemetry.ScopeName.
const (
	// MetricReactions counts reactions (committed or not), by workflow,
	// input kind (AttrInputKind: "event" or "deadline") and outcome
	// (telemetry.AttrOutcome: "ok" or "error").
	MetricReactions = "strata.workflow.reactions"
	// MetricReactionDuration is a histogram of the time of one reaction's
	// decision and writes, in seconds (the commit is the batch's).
	MetricReactionDuration = "strata.workflow.reaction.duration"
	// MetricDeadlineLatency is a histogram of the time from a deadline's
	// due time to the commit of its reaction, in seconds, by the workflow's
	// clock.
	MetricDeadlineLatency = "strata.workflow.deadline.latency"
	// SpanReaction covers one reaction (kind internal): decision, appends,
	// deadline changes. For an event it is a child of the trace context
	// the event carries, so the events it appends carry the trace on.
	SpanReaction = "strata.workflow.react"
	// AttrWorkflow is the workflow's name.
	AttrWorkflow = "strata.workflow"
	// AttrInstance is the instance's key (spans only).
	AttrInstance = "strata.workflow.instance"
	// AttrInputKind is "event" or "deadline".
	AttrInputKind = "strata.workflow.input"
	// AttrInput is the input's ID (spans only).
	AttrInput = "strata.workflow.input.id"
)

// telemetryOf is a runner's tracer and instruments.
type telemetryOf struct {
	tracer    trace.Tracer
	reactions metric.Int64Counter
	duration  metric.Float64Histogram
	latency   metric.Float64Histogram
}

var buckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func newTelemetry(mp metric.MeterProvider, tp trace.TracerProvider) telemetryOf {
	m := telemetry.Meter(mp)
	t := telemetryOf{tracer: telemetry.Tracer(tp)}
	// Instrument constructors fail only on invalid names, which these are not.
	t.reactions, _ = m.Int64Counter(MetricReactions, metric.WithUnit("{reaction}"),
		metric.WithDescription("workflow reactions, by input kind and outcome"))
	t.duration, _ = m.Float64Histogram(MetricReactionDuration, metric.WithUnit("s"),
		metric.WithDescription("time of one workflow reaction"), metric.WithExplicitBucketBoundaries(buckets...))
	t.latency, _ = m.Float64Histogram(MetricDeadlineLatency, metric.WithUnit("s"),
		metric.WithDescription("from a deadline's due time to its reaction's commit"), metric.WithExplicitBucketBoundaries(buckets...))
	return t
}

func (t *telemetryOf) reaction(ctx context.Context, workflow, kind string, err error, d time.Duration) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	attrs := metric.WithAttributes(attribute.String(AttrWorkflow, workflow), attribute.String(AttrInputKind, kind),
		attribute.String(telemetry.AttrOutcome, outcome))
	t.reactions.Add(ctx, 1, attrs)
	t.duration.Record(ctx, d.Seconds(), attrs)
}

func (t *telemetryOf) fired(ctx context.Context, workflow string, late time.Duration) {
	t.latency.Record(ctx, max(late, 0).Seconds(), metric.WithAttributes(attribute.String(AttrWorkflow, workflow)))
}
