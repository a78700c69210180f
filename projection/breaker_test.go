package projection_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/telemetry"
)

// TestBreakerPausesThroughDownstreamOutage: a projection whose handler
// writes through to a downstream service (here a flag) that is down for
// 3 s while 1,000 events of 50 streams arrive. The handler says so with
// eventstore.Unavailable. The circuit breaker, shared by the projection's
// four partitions, opens after a run of such failures, half-opens to probe
// with one event, opens again while the probe fails, and closes once it
// succeeds: Status shows "open" and "half-open", the transitions metric
// counts them, nothing is dead-lettered, and afterwards every event is
// applied exactly once, each stream in order.
func TestBreakerPausesThroughDownstreamOutage(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	table := pgx.Identifier{db.Schema, "applied"}.Sanitize()
	if _, err := db.Pool.Exec(t.Context(), `CREATE TABLE `+table+` (id bigint GENERATED ALWAYS AS IDENTITY, event_id uuid, stream_id text, version bigint)`); err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	var refused atomic.Int64
	down.Store(true)
	h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		if down.Load() {
			refused.Add(1)
			time.Sleep(20 * time.Millisecond) // a call that times out
			return eventstore.Unavailable(errors.New("inventory service: connection refused"))
		}
		_, err := tx.Exec(ctx, `INSERT INTO `+table+` (event_id, stream_id, version) VALUES ($1, $2, $3)`, e.ID, e.StreamID, e.Version)
		return err
	})
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	r := projection.NewRunner(s, []projection.Projection{{Name: "inventory", Handler: h, Partitions: 4}},
		&projection.Config{RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 300 * time.Millisecond, MeterProvider: mp})
	runRunner(t, r)

	// Watch Status while the outage lasts.
	seen := map[string]int{}
	var mu sync.Mutex
	watch, stopWatch := context.WithCancel(t.Context())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watch.Err() == nil {
			if sts, err := s.SubscriptionStatuses(watch, projection.SubscriptionName("inventory", 0)); err == nil {
				mu.Lock()
				for _, st := range sts {
					seen[st.State]++
				}
				mu.Unlock()
			}
			if ps, err := r.Status(watch); err == nil && len(ps) == 1 && ps[0].State == projection.StateFailing && strings.Contains(ps[0].LastError, "circuit breaker") {
				mu.Lock()
				seen["projection failing: circuit breaker"]++
				mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	// The downstream comes back 3 s after the first append (10 s, the
	// full size, with STRATA_FAULT_TESTS set); four writers append 1,000
	// events of 50 streams meanwhile (and after, if the machine is slow).
	const streams, perStream = 50, 20
	outage := 3 * time.Second
	if os.Getenv("STRATA_FAULT_TESTS") != "" {
		outage = 10 * time.Second
	}
	pause := outage / perStream // the appends spread over the outage
	start := time.Now()
	recoveredAt := make(chan time.Time, 1)
	go func() {
		time.Sleep(outage)
		down.Store(false)
		recoveredAt <- time.Now()
	}()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for v := 1; v <= perStream; v++ {
				for i := w; i < streams; i += 4 {
					if _, err := s.Append(t.Context(), fmt.Sprintf("stock-%02d", i), eventstore.Exactly(int64(v-1)),
						eventstore.NewEvent{Type: "Reserved", Data: []byte(`{}`)}); err != nil {
						t.Error(err)
						return
					}
				}
				time.Sleep(pause)
			}
		})
	}
	wg.Wait()
	appended := time.Since(start)
	recovered := <-recoveredAt
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int
		if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= streams*perStream {
			break
		}
		if time.Now().After(deadline) {
			sts, _ := s.SubscriptionStatuses(t.Context(), "")
			t.Fatalf("%d of %d events applied 60s after the downstream came back; statuses %+v", n, streams*perStream, sts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopWatch()
	<-watched
	t.Logf("1,000 events appended in %v; downstream down for %v (%d calls refused); all applied %v after it came back; Status states seen: %v",
		appended.Round(time.Millisecond), recovered.Sub(start).Round(time.Millisecond), refused.Load(), time.Since(recovered).Round(time.Millisecond), seen)

	var total, distinct, disorder int
	if err := db.Pool.QueryRow(t.Context(), `SELECT count(*), count(DISTINCT event_id) FROM `+table).Scan(&total, &distinct); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM (SELECT version - lag(version, 1, 0::bigint) OVER (PARTITION BY stream_id ORDER BY id) AS step FROM `+table+`) s WHERE step <> 1`).Scan(&disorder); err != nil {
		t.Fatal(err)
	}
	if total != streams*perStream || distinct != total || disorder != 0 {
		t.Errorf("applied %d rows for %d distinct events (%d out of order), want %d each once in order", total, distinct, disorder, streams*perStream)
	}
	if dl, err := s.DeadLetters(t.Context(), ""); err != nil || len(dl) != 0 {
		t.Errorf("dead letters: %d, %v; want none", len(dl), err)
	}
	if seen["projection failing: circuit breaker"] == 0 {
		t.Errorf("the projection's Status never said failing because of the circuit breaker: %v", seen)
	}
	if seen[eventstore.BreakerOpen] == 0 || seen[eventstore.BreakerHalfOpen] == 0 {
		t.Errorf("Status never showed the breaker open and half-open: %v", seen)
	}
	if st := statusOf(t, r, "inventory"); st.State != "running" {
		t.Errorf("projection state after recovery %q, want running", st.State)
	}
	entered := breakerTransitions(t, reader)
	t.Logf("breaker transitions (metric): %v", entered)
	if entered[eventstore.BreakerOpen] == 0 || entered[eventstore.BreakerHalfOpen] == 0 || entered[eventstore.BreakerClosed] == 0 {
		t.Errorf("the transitions metric did not count open, half-open and closed: %v", entered)
	}
	// Paused, the partitions did not hammer the downstream: without the
	// breaker each of the four would retry every 300ms or sooner.
	if n := refused.Load(); n > 200 {
		t.Errorf("%d calls to the downstream while it was down; the breaker should have paused them", n)
	}
}

// breakerTransitions returns the breaker transitions metric's counts by
// state entered.
func breakerTransitions(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != telemetry.MetricSubscriptionBreakerTransitions {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T", m.Name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				v, _ := dp.Attributes.Value(telemetry.AttrBreakerState)
				out[v.AsString()] += dp.Value
			}
		}
	}
	return out
}
