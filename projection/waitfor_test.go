package projection_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// Read your own writes across processes: the projection runs in a child
// process; this one appends, waits with WaitFor and reads the read model
// row, which must show the append every time. WaitFor does not poll: were
// it not woken by the child's checkpoint commits it would time out. The
// child is then killed: a wait for a new append runs into its deadline,
// and a new child ends the next wait. Prints p50/p99 from Append returning
// to WaitFor returning beside the projection's own live latency (the
// checkpoint's commit time minus the event's recording time, both on the
// server's clock).
func TestWaitForAcrossProcesses(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	tt := newTotals(t, db.Pool, db.Schema, "totals")
	r := projection.NewRunner(s, []projection.Projection{{Name: "totals", Handler: tt, Partitions: 2}}, nil)
	ctx := context.Background()
	// Keep this process's LISTEN connection open between waits, as a
	// request-serving process would.
	lctx, stopListen := context.WithCancel(ctx)
	listening := make(chan error, 1)
	go func() { listening <- s.Listen(lctx) }()
	defer func() { stopListen(); <-listening }()

	res, err := s.Append(ctx, "acct-0", eventstore.Any, event("Tick", 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitFor(ctx, "totals", res.Position); !errors.Is(err, eventstore.ErrSubscriptionNotFound) {
		t.Fatalf("WaitFor before any process registered the projection: %v, want ErrSubscriptionNotFound", err)
	}
	if err := r.WaitFor(ctx, "nope", res.Position); !errors.Is(err, projection.ErrUnknownProjection) {
		t.Fatalf("WaitFor of an unknown projection: %v", err)
	}
	cfg := childConfig{URL: db.URL, Schema: db.Schema, Name: "totals", Table: "totals", Owner: "A", Partitions: 2, BatchSize: 100, LeaseTTL: time.Second}
	c := startChild(t, cfg)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	pgtest.WaitFor(t, "the child to register", 30*time.Second, func() bool {
		err := r.WaitFor(wctx, "totals", res.Position)
		return !errors.Is(err, eventstore.ErrSubscriptionNotFound)
	})
	cancel()
	if err := r.WaitFor(ctx, "totals", eventstore.Position{TxID: res.Position.TxID, Seq: res.Position.Seq + 1_000_000}); !errors.Is(err, eventstore.ErrPositionNotFound) {
		t.Fatalf("WaitFor of a position that names no event: %v, want ErrPositionNotFound", err)
	}

	const rounds = 200
	var waits, lives []time.Duration
	for i := range rounds {
		stream := fmt.Sprintf("acct-%d", i%7)
		res, err := s.Append(ctx, stream, eventstore.Any, event("Tick", int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second) // a transaction left open on the shared server holds every gap-safe reader back
		err = r.WaitFor(wctx, "totals", res.Position)
		cancel()
		waited := time.Since(start)
		if err != nil {
			var cps string
			_ = db.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT string_agg(partition || ':' || position_tx || '/' || position_seq, ' ') FROM %s.subscriptions`, db.Schema)).Scan(&cps)
			h, herr := s.Horizon(ctx, 0)
			t.Fatalf("round %d: %v (checkpoints %s; horizon %+v %v)", i, err, cps, h, herr)
		}
		var last int64
		if err := db.Pool.QueryRow(ctx, `SELECT last_version FROM `+tt.name()+` WHERE stream_id = $1`, stream).Scan(&last); err != nil {
			t.Fatalf("round %d: read model row of %s: %v", i, stream, err)
		}
		if last != res.Version {
			t.Fatalf("round %d: WaitFor returned with the read model at version %d of %s, appended %d", i, last, stream, res.Version)
		}
		var live time.Duration
		if err := db.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT max(s.updated_at) - (SELECT recorded_at FROM %s.events WHERE position = $1)
			FROM %[1]s.subscriptions s WHERE s.name = $2`, db.Schema), res.Position.Seq, projection.SubscriptionName("totals", 1)).Scan(&live); err != nil {
			t.Fatal(err)
		}
		waits, lives = append(waits, waited), append(lives, live)
	}
	p := func(d []time.Duration, q float64) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[min(len(d)-1, int(float64(len(d))*q))]
	}
	t.Logf("WaitFor across processes, %d rounds (shared, loaded machine): Append returned -> WaitFor returned p50 %v p99 %v; "+
		"the projection's own live latency (checkpoint batch time - event recorded, server clock) p50 %v p99 %v",
		rounds, p(waits, 0.5), p(waits, 0.99), p(lives, 0.5), p(lives, 0.99))

	// The projection's process dies: a wait runs into its deadline.
	c.kill()
	res, err = s.Append(ctx, "acct-1", eventstore.Any, event("Tick", 1))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	err = r.WaitFor(wctx, "totals", res.Position)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor with no process running the projection: %v, want the deadline", err)
	}
	// A waiter started now is woken by the new process's commit.
	done := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		done <- r.WaitFor(wctx, "totals", res.Position)
	}()
	startChild(t, childConfig{URL: db.URL, Schema: db.Schema, Name: "totals", Table: "totals", Owner: "B", Partitions: 2, BatchSize: 100, LeaseTTL: time.Second})
	if err := <-done; err != nil {
		t.Fatalf("WaitFor after a new process took over: %v", err)
	}
	var last int64
	if err := db.Pool.QueryRow(ctx, `SELECT last_version FROM `+tt.name()+` WHERE stream_id = 'acct-1'`).Scan(&last); err != nil || last != res.Version {
		t.Fatalf("after WaitFor: acct-1 at %d (%v), appended %d", last, err, res.Version)
	}
}
