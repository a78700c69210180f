package workflow_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/workflow"
	"github.com/strata-go/strata/workflow/workflowtest"
)

// Each reaction is a span, a child of the trace its input event carries,
// and counts in the reaction metrics; a fired deadline records its
// latency.
func TestReactionTelemetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	store := eventstore.New(e.db.Pool, &eventstore.Config{Schema: e.db.Schema, Validator: e.reg, TracerProvider: tp, MeterProvider: mp})
	clock := workflowtest.NewClock(time.Now())
	r, err := workflow.New(store, e.reg, payWorkflow(), &workflow.Config{Clock: clock, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)

	ctx, root := tp.Tracer("test").Start(context.Background(), "request")
	ne, _ := e.reg.Encode(OrderPlaced{Order: "1", TTL: 1000})
	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, ne); err != nil {
		t.Fatal(err)
	}
	root.End()
	pgtest.WaitFor(t, "the order's reaction", 30*time.Second, func() bool { return e.deadlines(t) == 1 })
	clock.Advance(2 * time.Second)
	pgtest.WaitFor(t, "the deadline fired", 30*time.Second, func() bool { return e.finished(t) == 1 })

	var reactions []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == workflow.SpanReaction {
			reactions = append(reactions, s)
		}
	}
	if len(reactions) != 2 {
		t.Fatalf("%d reaction spans, want 2", len(reactions))
	}
	kinds := map[string]trace.SpanContext{}
	for _, s := range reactions {
		for _, a := range s.Attributes {
			if a.Key == workflow.AttrInputKind {
				kinds[a.Value.AsString()] = s.Parent
			}
		}
	}
	if p, ok := kinds["event"]; !ok || p.TraceID() != root.SpanContext().TraceID() {
		t.Errorf("the event's reaction is not in the request's trace: %v", kinds)
	}
	if _, ok := kinds["deadline"]; !ok {
		t.Errorf("no deadline reaction span: %v", kinds)
	}
	// The events the reaction appended carry the trace on.
	for ev, err := range store.ReadStream(context.Background(), "pay-1", 0) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Version == 1 && ev.Metadata.Values["traceparent"] == "" {
			t.Errorf("Started carries no trace context: %+v", ev.Metadata)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	var latencies uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case workflow.MetricReactions:
				for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
					kind, _ := p.Attributes.Value(attribute.Key(workflow.AttrInputKind))
					counts[kind.AsString()] += p.Value
				}
			case workflow.MetricDeadlineLatency:
				for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					latencies += p.Count
				}
			}
		}
	}
	if counts["event"] != 1 || counts["deadline"] != 1 || latencies != 1 {
		t.Errorf("reactions %v, deadline latencies %d; want one event, one deadline, one latency", counts, latencies)
	}
}
