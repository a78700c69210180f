package pubsub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
	"github.com/strata-go/strata/telemetry"
)

// TestCoalescedPublishKeepsEachTrace: Publish calls from many traces to
// one topic, coalesced into shared appends, store each message with the
// trace context of its own caller, not the batch leader's. The appends
// are held back by a lock on the events table until every caller is under
// way, so the later callers are coalesced behind the first one.
func TestCoalescedPublishKeepsEachTrace(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, TracerProvider: tp})
	pub, err := pubsub.NewPublisher(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	ctx := ctxT(t)

	lock, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	if _, err := lock.Exec(ctx, `LOCK TABLE `+store.Table("events")+` IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	const callers = 20
	var (
		mu       sync.Mutex
		spanOf   = map[string]trace.SpanContext{} // message UUID → publisher's span
		started  sync.WaitGroup
		finished sync.WaitGroup
		errs     = make(chan error, callers)
	)
	publish := func(i int) {
		defer finished.Done()
		sctx, span := tp.Tracer("test").Start(context.Background(), fmt.Sprintf("caller-%d", i))
		defer span.End()
		msg := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"caller":%d}`, i))
		msg.SetContext(sctx)
		mu.Lock()
		spanOf[msg.UUID] = span.SpanContext()
		mu.Unlock()
		started.Done()
		errs <- pub.Publish("traced", msg)
	}
	// The first caller leads and waits on the lock; the others queue.
	started.Add(1)
	finished.Add(callers)
	go publish(0)
	pgtest.WaitFor(t, "the first append to wait on the lock", 30*time.Second, func() bool {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'`, db.Schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	started.Add(callers - 1)
	for i := 1; i < callers; i++ {
		go publish(i)
	}
	started.Wait()
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	finished.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	perTx := map[uint64]int{}
	var n int
	for e, err := range store.ReadStream(ctx, pubsub.StreamID(pubsub.DefaultPrefix, "traced", ""), 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		perTx[e.Position.TxID]++
		want := spanOf[e.Metadata.Values[pubsub.UUIDKey]]
		got := trace.SpanContextFromContext(telemetry.Extract(context.Background(), e.Metadata.Values))
		if !want.IsValid() || got.TraceID() != want.TraceID() || got.SpanID() != want.SpanID() {
			t.Fatalf("event %d carries trace %s span %s, want its publisher's trace %s span %s",
				e.Version, got.TraceID(), got.SpanID(), want.TraceID(), want.SpanID())
		}
	}
	if n != callers {
		t.Fatalf("%d messages stored, want %d", n, callers)
	}
	coalesced := 0
	for _, c := range perTx {
		coalesced = max(coalesced, c)
	}
	if coalesced < 2 {
		t.Fatalf("no append carried more than one caller's message (%d appends): the test did not exercise coalescing", len(perTx))
	}
	t.Logf("%d messages in %d appends, up to %d in one", n, len(perTx), coalesced)
}
