package eventstore_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/storeview"
)

// TestStoreView: what the packages built on a store read of it through
// internal/storeview is the store's configuration, its defaults filled
// in, and a recovered panic becomes a *PanicError.
func TestStoreView(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	mp, tp := metricnoop.NewMeterProvider(), tracenoop.NewTracerProvider()
	s, db := newStore(t, &eventstore.Config{Logger: log, MeterProvider: mp, TracerProvider: tp})
	got := storeview.Of(s)
	if got.Schema != db.Schema || got.Logger != log || got.MeterProvider != mp || got.TracerProvider != tp {
		t.Errorf("Of = %+v, want the configured schema %q, logger and providers", got, db.Schema)
	}
	if got.Channel != "strata_events_"+db.Schema {
		t.Errorf("Channel = %q", got.Channel)
	}

	d := storeview.Of(eventstore.New(db.Pool, nil))
	if d.Schema != "strata" || d.Logger != slog.Default() || d.MeterProvider != otel.GetMeterProvider() || d.TracerProvider != otel.GetTracerProvider() {
		t.Errorf("defaults: Of = %+v", d)
	}

	var pe *eventstore.PanicError
	if err := storeview.Recovered(log, "test", "boom"); !errors.As(err, &pe) || pe.Value != "boom" || !strings.Contains(string(pe.Stack), "TestStoreView") {
		t.Errorf("Recovered = %v, want a *PanicError with the value and stack", err)
	}
}
