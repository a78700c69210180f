package instrument_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/strata-go/strata/internal/instrument"
	"github.com/strata-go/strata/telemetry"
)

// TestInstruments: every instrument New makes reaches the SDK
// with the name, kind and unit Metrics documents.
func TestInstruments(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	in := instrument.New(mp)
	ctx := context.Background()
	attrs := metric.WithAttributes(attribute.String(telemetry.AttrSubscription, "s"))
	in.AppendDuration.Record(ctx, 0.001, attrs)
	in.AppendEvents.Add(ctx, 1, attrs)
	in.SubscriptionEvents.Add(ctx, 1, attrs)
	in.SubscriptionBatchDuration.Record(ctx, 0.001, attrs)
	in.SubscriptionErrors.Add(ctx, 1, attrs)
	in.SubscriptionBreakerTransitions.Add(ctx, 1, attrs)
	in.SubscriptionDeadLetters.Add(ctx, 1, attrs)
	in.RelayPublished.Add(ctx, 1, attrs)
	in.RelayErrors.Add(ctx, 1, attrs)
	in.ConsumeMessages.Add(ctx, 1, attrs)
	in.ConsumeDuration.Record(ctx, 0.001, attrs)
	reg, err := in.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(in.SubscriptionLag, 3, attrs)
		o.ObserveFloat64(in.SubscriptionLagSeconds, 1.5, attrs)
		o.ObserveFloat64(in.HorizonAge, 2.5)
		o.ObserveInt64(in.SubscriptionBreakerState, 0, attrs)
		return nil
	}, in.SubscriptionLag, in.SubscriptionLagSeconds, in.HorizonAge, in.SubscriptionBreakerState)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Unregister() }()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != telemetry.ScopeName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			got[m.Name] = m
		}
	}
	for _, d := range telemetry.Metrics() {
		m, ok := got[d.Name]
		if !ok {
			t.Errorf("%s not collected", d.Name)
			continue
		}
		if m.Unit != d.Unit || m.Description != d.Description {
			t.Errorf("%s: unit %q description %q, want %q %q", d.Name, m.Unit, m.Description, d.Unit, d.Description)
		}
		var kind telemetry.Kind
		switch m.Data.(type) {
		case metricdata.Sum[int64], metricdata.Sum[float64]:
			kind = telemetry.Counter
		case metricdata.Histogram[float64], metricdata.Histogram[int64]:
			kind = telemetry.Histogram
		case metricdata.Gauge[int64], metricdata.Gauge[float64]:
			kind = telemetry.Gauge
		}
		if kind != d.Kind {
			t.Errorf("%s is a %T, documented as a %s", d.Name, m.Data, d.Kind)
		}
	}
	if len(got) != len(telemetry.Metrics()) {
		t.Errorf("collected %d metrics, documented %d", len(got), len(telemetry.Metrics()))
	}
}
