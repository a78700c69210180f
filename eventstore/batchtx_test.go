package eventstore_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// The handler's tx begins when first used. Batches the handler writes
// nothing for still move the checkpoint; batches it writes for commit with
// it; savepoints work; ending the batch's transaction is refused.
func TestHandlerTxBeginsOnFirstUse(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 60
	for i := range n {
		stream := "keep-1"
		if i%3 != 0 {
			stream = "skip-1"
		}
		if _, err := s.Append(ctx, stream, eventstore.Any, ev("Tick", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "lazy", BatchSize: 4, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var seen, endRefused atomic.Int64
	h := func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		seen.Add(int64(len(events)))
		var keep []eventstore.Event
		for _, e := range events {
			if strings.HasPrefix(e.StreamID, "keep-") {
				keep = append(keep, e)
			}
		}
		if len(keep) == 0 {
			return nil // tx untouched: no transaction at all
		}
		if tx.Commit(ctx) != nil && tx.Rollback(ctx) != nil {
			endRefused.Add(1)
		}
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		if err := rm.handle(ctx, sp, keep); err != nil {
			return err
		}
		return sp.Commit(ctx)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, h) }()
	waitFor(t, "every event handled", 30*time.Second, func() bool { return seen.Load() >= n })
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the checkpoint at the head", 30*time.Second, func() bool {
		st, err := s.SubscriptionStatuses(ctx, "lazy")
		return err == nil && len(st) == 1 && st[0].Checkpoint == head.Position
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := rm.count(t); got != n/3 {
		t.Fatalf("read model has %d events, want %d", got, n/3)
	}
	if seen.Load() != n {
		t.Fatalf("handler saw %d events, want %d (a batch was repeated)", seen.Load(), n)
	}
	if endRefused.Load() == 0 {
		t.Fatal("the handler could end the batch's transaction")
	}
}
