package projection_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/telemetry"
)

// As the least-privilege role, which cannot see other roles' sessions in
// pg_stat_activity, a transaction another role holds open is still
// reported: Store.Horizon says readers are held back (by which transaction
// ID, how far, for how long), the horizon gauge shows its age, and a
// projection held back past Config.HealthMaxHorizonAge is Failing.
func TestHorizonAsTheApplicationRole(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	store := eventstore.New(db.AppPool(t), &eventstore.Config{Schema: db.Schema, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	r := projection.NewRunner(store, []projection.Projection{{Name: "held", Handler: projection.HandlerFunc(func(context.Context, pgx.Tx, eventstore.Event) error { return nil })}},
		&projection.Config{PollInterval: 50 * time.Millisecond, HorizonAge: 100 * time.Millisecond, HealthMaxHorizonAge: time.Second})
	runRunner(t, r)
	pgtest.WaitFor(t, "the projection ready", 30*time.Second, func() bool { return r.Check(ctx, "held").State == telemetry.Ready })

	// Another role (the superuser of the tests) holds a transaction ID.
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var held uint64
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&held); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "held-1", eventstore.NoStream, eventstore.NewEvent{Type: "Tick", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	var h *eventstore.HorizonHolder
	pgtest.WaitFor(t, "the horizon reported", 30*time.Second, func() bool {
		h, err = store.Horizon(ctx, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		// (A session of this role that is itself slow may be named
		// meanwhile: it is visible.)
		return h != nil && h.Hidden
	})
	if !h.Hidden || h.Xmin == 0 || h.Xmin > held || h.Behind < 1 || h.Age < 300*time.Millisecond {
		t.Fatalf("horizon as the application role: %+v (transaction %d held)", h, held)
	}
	var hl telemetry.Health
	pgtest.WaitFor(t, "the projection failing", 30*time.Second, func() bool {
		hl = r.Check(ctx, "held")
		return hl.State == telemetry.Failing
	})
	if !strings.Contains(hl.Reason, "held back") {
		t.Fatalf("failing for another reason: %+v", hl)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	age := -1.0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[float64]); ok && m.Name == telemetry.MetricHorizonAge && len(g.DataPoints) == 1 {
				age = g.DataPoints[0].Value
			}
		}
	}
	if age < 0.3 {
		t.Fatalf("%s = %v, want the horizon's age", telemetry.MetricHorizonAge, age)
	}
	// The transaction ends: the projection catches up and is ready again.
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "the projection ready again (other tests' transactions on the server may hold it back)", 2*time.Minute, func() bool { hl = r.Check(ctx, "held"); return hl.State == telemetry.Ready })
}
