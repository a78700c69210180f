package eventstore

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// fakeQuerier answers an append's statement at once, so that the cost of
// the code around the database can be measured alone.
type fakeQuerier struct{}

func (fakeQuerier) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, nil
}
func (fakeQuerier) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, nil }
func (fakeQuerier) QueryRow(context.Context, string, ...any) pgx.Row        { return fakeRow{} }

type fakeRow struct{}

func (fakeRow) Scan(dest ...any) error {
	for _, d := range dest {
		*d.(*int64) = 1
	}
	return nil
}

var benchEvents = []NewEvent{{Type: "OrderPlaced", Data: []byte(`{"id":"42","total":12.5}`), Metadata: Metadata{Values: map[string]string{"user": "ann"}}}}

// BenchmarkAppendTelemetry measures what the telemetry adds to an append
// apart from the database (which a fake stands in for): "strata" is
// Append's path with the global no-op providers (no SDK installed),
// "baseline" the same append without telemetry, "sdk" with an SDK
// recording spans and metrics. The ratio is of operations per second; an
// append to the real database costs ~1 ms here, against the few hundred
// nanoseconds measured.
func BenchmarkAppendTelemetry(b *testing.B) {
	plain := New(nil, &Config{Schema: "bench", NotifyInterval: -1})
	sdk := New(nil, &Config{Schema: "bench", NotifyInterval: -1,
		TracerProvider: sdktrace.NewTracerProvider(), MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))})
	ctx := context.Background()
	var base float64
	b.Run("baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := plain.appendTo(ctx, fakeQuerier{}, "order-42", Any, benchEvents); err != nil {
				b.Fatal(err)
			}
		}
		base = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	for _, v := range []struct {
		name  string
		store *Store
	}{{"strata", plain}, {"sdk", sdk}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.store.tracedAppend(ctx, fakeQuerier{}, "order-42", Any, benchEvents); err != nil {
					b.Fatal(err)
				}
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if base > 0 {
				b.ReportMetric(base/ns, "x_baseline")
				b.ReportMetric(ns-base, "added_ns/op")
			}
		})
	}
}

// TestAppendTelemetryAllocations: without an SDK and without a span in the
// context, the telemetry adds a few allocations to an append (the no-op
// span and its context), however many events it carries: no event or
// metadata map is copied.
func TestAppendTelemetryAllocations(t *testing.T) {
	s := New(nil, &Config{Schema: "allocs", NotifyInterval: -1})
	ctx := context.Background()
	many := make([]NewEvent, 100)
	for i := range many {
		many[i] = benchEvents[0]
	}
	for _, events := range [][]NewEvent{benchEvents, many} {
		base := testing.AllocsPerRun(100, func() { _, _ = s.appendTo(ctx, fakeQuerier{}, "order-42", Any, events) })
		traced := testing.AllocsPerRun(100, func() { _, _ = s.tracedAppend(ctx, fakeQuerier{}, "order-42", Any, events) })
		if traced-base > 3 {
			t.Errorf("%d events: telemetry adds %.0f allocations to an append (%.0f → %.0f)", len(events), traced-base, base, traced)
		}
	}
}
