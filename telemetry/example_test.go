package telemetry_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"go.opentelemetry.io/otel/trace"

	"github.com/strata-go/strata/telemetry"
)

// A service serves its workers' health on one endpoint. Here two fixed
// checks stand in for runner.HealthChecks() and relay.Check.
func ExampleNewHealthHandler() {
	h := telemetry.NewHealthHandler(map[string]telemetry.HealthFunc{
		"projection:order_summary": func(context.Context) telemetry.Health {
			return telemetry.Health{State: telemetry.Lagging, Reason: "12000 events behind"}
		},
		"outbox:relay": func(context.Context) telemetry.Health { return telemetry.Health{State: telemetry.Ready} },
	}, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	fmt.Println(rec.Code)
	fmt.Print(rec.Body.String())
	// Output:
	// 200
	// {"state":"lagging","checks":{"outbox:relay":{"state":"ready"},"projection:order_summary":{"state":"lagging","reason":"12000 events behind"}}}
}

// The trace context of a context, added to event or message metadata
// without touching the caller's map.
func ExampleWithTraceContext() {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
		SpanID:     trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	values := map[string]string{"user": "ann"}
	withTrace := telemetry.WithTraceContext(ctx, values)
	fmt.Println(withTrace[telemetry.KeyTraceparent])
	fmt.Println(len(values))

	// A consumer continues the trace from the metadata.
	remote := trace.SpanContextFromContext(telemetry.Extract(context.Background(), withTrace))
	fmt.Println(remote.TraceID(), remote.IsRemote())
	// Output:
	// 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
	// 1
	// 0af7651916cd43dd8448eb211c80319c true
}
