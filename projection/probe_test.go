package projection_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/telemetry"
)

// fastest runs f n times and returns its fastest run.
func fastest(n int, f func()) time.Duration {
	var ds []time.Duration
	for range n {
		start := time.Now()
		f()
		ds = append(ds, time.Since(start))
	}
	return slices.Min(ds)
}

// A health probe and the head cost a bounded amount at any size of the
// log: on a log of 200,000 events that a projection has not started on,
// Check and Head take a few milliseconds, where counting the whole lag (as
// SubscriptionStatuses does, for operators) takes far longer. Check still
// says Lagging, and why.
func TestProbesAreBoundedOnABigLog(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := context.Background()
	const n = 200_000
	evs := make([]eventstore.NewEvent, 10_000)
	for i := range evs {
		evs[i] = eventstore.NewEvent{Type: "Tick", Data: []byte(`{"n":1}`)}
	}
	err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		for k := range n / len(evs) {
			if _, err := s.AppendTx(ctx, tx, fmt.Sprintf("big-%d", k), eventstore.NoStream, evs...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE `+pgx.Identifier{db.Schema, "events"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	// The projection has never handled an event; it runs (so that Check
	// asks the database) but stops at once on its first event.
	block := make(chan struct{})
	defer close(block)
	r := projection.NewRunner(s, []projection.Projection{{Name: "big", Handler: projection.HandlerFunc(func(ctx context.Context, _ pgx.Tx, _ eventstore.Event) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return ctx.Err()
	})}}, &projection.Config{HealthMaxLag: 100})
	runRunner(t, r)
	name := projection.SubscriptionName("big", 1)
	pgtest.WaitFor(t, "the projection running", 30*time.Second, func() bool {
		st, err := s.SubscriptionStatuses(ctx, name)
		return err == nil && len(st) == 1 && st[0].Owner != ""
	})

	var h telemetry.Health
	probe := fastest(5, func() { h = r.Check(ctx, "big") })
	if h.State != telemetry.Lagging {
		t.Fatalf("Check: %+v, want Lagging", h)
	}
	full := fastest(3, func() {
		if _, err := s.SubscriptionStatuses(ctx, name); err != nil {
			t.Fatal(err)
		}
	})
	var head eventstore.Head
	headTook := fastest(5, func() {
		if head, err = s.Head(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("Check %s (%s); Head %s (%+v); counting the whole lag %s", probe, h.Reason, headTook, head, full)
	if !head.Estimated || head.Events < eventstore.HeadCountLimit || head.Streams != 20 {
		t.Fatalf("head %+v: want an estimated count of events and 20 streams counted", head)
	}
	st, err := s.ProbeSubscription(ctx, name, eventstore.ProbeOptions{MaxLag: 100})
	if err != nil || len(st) != 1 || st[0].Lag != 100 || !st[0].LagCapped {
		t.Fatalf("probe: %+v %v, want a lag of 100, capped", st, err)
	}
	// Bounds a loaded two-core machine keeps, well below a count of the
	// whole lag (hundreds of milliseconds for 200,000 events).
	if probe > 30*time.Millisecond {
		t.Errorf("Check took %s on a log of %d events (counting the whole lag: %s)", probe, n, full)
	}
	if headTook > 30*time.Millisecond {
		t.Errorf("Head took %s on a log of %d events", headTook, n)
	}
}
