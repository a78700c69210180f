package eventstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// With HandleOutsideTx the handler gets no tx and holds no connection while
// it runs (a slow consumer pins nothing), and the checkpoint still advances
// only after it returns.
func TestSubscriptionHandleOutsideTx(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	// One append, so that the three events become visible together (a
	// gap-safe reader may see separate appends in separate reads).
	if _, err := s.Append(context.Background(), "item-0", eventstore.NoStream, ev("Tick", `{}`), ev("Tick", `{}`), ev("Tick", `{}`)); err != nil {
		t.Fatal(err)
	}
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "out", HandleOutsideTx: true, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan int, 10)
	release := make(chan struct{})
	h := func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		if tx != nil {
			return errors.New("got a tx")
		}
		entered <- len(events)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	stop := run(t, sub, h)
	select {
	case n := <-entered:
		if n != 3 {
			t.Fatalf("batch of %d, want 3", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("handler not called")
	}
	// While the handler runs, every connection goes back to the pool: only
	// lease maintenance borrows one now and then.
	waitFor(t, "no connection held during the handler", 10*time.Second, func() bool {
		return db.Pool.Stat().AcquiredConns() == 0
	})
	st, err := s.SubscriptionStatuses(context.Background(), "out")
	if err != nil || st[0].EventsHandled != 0 {
		t.Fatalf("checkpoint moved before the handler returned: %+v %v", st, err)
	}
	close(release)
	waitFor(t, "checkpoint after the handler", 30*time.Second, func() bool {
		st, err := s.SubscriptionStatuses(context.Background(), "out")
		return err == nil && st[0].EventsHandled == 3
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
