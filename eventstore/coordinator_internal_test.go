package eventstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/pgtest"
)

// When lease maintenance fails (the database is briefly unreachable), the
// coordinator tries again after a short backoff rather than a full tick
// (LeaseTTL/3) later: a subscription whose first three maintenance rounds
// fail handles its events well within one tick.
func TestCoordinatorRetriesFailedLeaseMaintenanceSoon(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	s := New(db.Pool, &Config{Schema: db.Schema})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Append(ctx, "item-1", Any, NewEvent{Type: "Tick", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	const ttl = 9 * time.Second // a tick every 3s
	sub, err := s.Subscription(SubscriptionConfig{Name: "retry", LeaseTTL: ttl, RetryBackoff: 20 * time.Millisecond, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.register(ctx); err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	h := func(ctx context.Context, tx pgx.Tx, events []Event) error {
		handled.Add(int64(len(events)))
		return nil
	}
	rctx, stop := context.WithCancelCause(ctx)
	c := newCoordinator(sub, h, stop)
	var calls atomic.Int64
	c.maintain = func(ctx context.Context, running int) (map[int]checkpoint, map[int]bool, []int, error) {
		if calls.Add(1) <= 3 {
			return nil, nil, nil, errors.New("connection refused (injected)")
		}
		return sub.maintain(ctx, running)
	}
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- c.run(rctx) }()
	defer func() { c.stop(ctx); <-done }()
	pgtest.WaitFor(t, "the event handled", 20*time.Second, func() bool { return handled.Load() == 1 })
	if took := time.Since(started); took > ttl/3 {
		t.Fatalf("handled %s after the start, after %d maintenance rounds: the failed rounds waited for the tick (%s)", took, calls.Load(), ttl/3)
	}
}
