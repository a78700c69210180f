package telemetry

import (
	"context"
	"maps"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceContext is the W3C Trace Context propagator. Strata always uses it,
// whatever the global propagator is, so that the keys in stored events are
// the same in every program that reads them.
var traceContext propagation.TraceContext

// Inject writes the span context of ctx into carrier as KeyTraceparent and,
// when it has one, KeyTracestate. It writes nothing when ctx carries no
// valid span context. Event metadata (eventstore Metadata.Values) and
// Watermill message metadata are both such maps; carrier must not be nil
// when ctx carries a span context.
func Inject(ctx context.Context, carrier map[string]string) {
	traceContext.Inject(ctx, propagation.MapCarrier(carrier))
}

// Extract returns ctx with the remote span context read from carrier, so
// that spans started from it are its children. It returns ctx unchanged
// when carrier holds no valid traceparent.
func Extract(ctx context.Context, carrier map[string]string) context.Context {
	if carrier[KeyTraceparent] == "" {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.MapCarrier(carrier))
}

// HasTraceContext reports whether carrier holds a valid traceparent.
func HasTraceContext(carrier map[string]string) bool {
	if carrier[KeyTraceparent] == "" {
		return false
	}
	return trace.SpanContextFromContext(traceContext.Extract(context.Background(), propagation.MapCarrier(carrier))).IsValid()
}

// WithTraceContext returns m with the trace context of ctx added (Inject),
// never modifying m: it copies m first. It returns m itself, without
// allocating, when ctx carries no valid span context or m already holds a
// traceparent (a trace context set by the caller is kept).
func WithTraceContext(ctx context.Context, m map[string]string) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() || m[KeyTraceparent] != "" {
		return m
	}
	out := make(map[string]string, len(m)+2)
	maps.Copy(out, m)
	Inject(ctx, out)
	return out
}
