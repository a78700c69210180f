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
// nothing for still move the checkpoint (while catching up, with a later
// batch: here six such batches, then one that writes, then five more,
// stored when the reader reaches the end); batches it writes for commit
// with it; savepoints work; ending the batch's transaction is refused. No
// batch is handled twice and the handled count is exact.
func TestHandlerTxBeginsOnFirstUse(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n, keep = 1200, 50
	batch := make([]eventstore.NewEvent, 50)
	for i := range batch {
		batch[i] = ev("Tick", `{}`)
	}
	for i := 0; i < n; i += len(batch) {
		stream := "skip-1"
		if i == 600 {
			stream = "keep-1"
		}
		if _, err := s.Append(ctx, stream, eventstore.Any, batch...); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "lazy", BatchSize: 100, PollInterval: 20 * time.Millisecond})
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
	var handled int64
	waitFor(t, "the checkpoint at the head", 30*time.Second, func() bool {
		st, err := s.SubscriptionStatuses(ctx, "lazy")
		if err == nil && len(st) == 1 {
			handled = st[0].EventsHandled
		}
		return err == nil && len(st) == 1 && st[0].Checkpoint == head.Position
	})
	if handled != n {
		t.Fatalf("events handled %d, want %d", handled, n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := rm.count(t); got != keep {
		t.Fatalf("read model has %d events, want %d", got, keep)
	}
	if seen.Load() != n {
		t.Fatalf("handler saw %d events, want %d (a batch was repeated)", seen.Load(), n)
	}
	if endRefused.Load() == 0 {
		t.Fatal("the handler could end the batch's transaction")
	}
}

// A subscription stopped while batches without writes have left their
// checkpoint behind resumes from the stored checkpoint: those batches are
// handled again, the batch that wrote is not, and the read model is exact.
func TestDeferredCheckpointResumesWithoutDoubling(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	ctx := context.Background()
	batch := make([]eventstore.NewEvent, 100)
	for i := range batch {
		batch[i] = ev("Tick", `{}`)
	}
	// 100 events to keep, then 1,000 to skip.
	if _, err := s.Append(ctx, "keep-1", eventstore.NoStream, batch...); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := s.Append(ctx, "skip-1", eventstore.Any, batch...); err != nil {
			t.Fatal(err)
		}
	}
	var seen atomic.Int64
	stopAt := make(chan struct{})
	h := func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		if seen.Add(int64(len(events))) == 600 {
			close(stopAt) // five skipped batches deferred: stop here
			<-ctx.Done()
			return ctx.Err()
		}
		var keep []eventstore.Event
		for _, e := range events {
			if strings.HasPrefix(e.StreamID, "keep-") {
				keep = append(keep, e)
			}
		}
		if len(keep) == 0 {
			return nil
		}
		return rm.handle(ctx, tx, keep)
	}
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "resume", BatchSize: 100, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sub.Run(runCtx, h) }()
	<-stopAt
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err := s.SubscriptionStatuses(ctx, "resume")
	if err != nil || len(st) != 1 {
		t.Fatal(st, err)
	}
	if st[0].EventsHandled >= 600 {
		t.Fatalf("checkpoint stored past the batches it deferred (%d handled)", st[0].EventsHandled)
	}
	// Run again to the end.
	runCtx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() { done <- sub.Run(runCtx, h) }()
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the checkpoint at the head", 30*time.Second, func() bool {
		st, err := s.SubscriptionStatuses(ctx, "resume")
		return err == nil && len(st) == 1 && st[0].Checkpoint == head.Position
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := rm.count(t); got != 100 {
		t.Fatalf("read model has %d events, want 100", got)
	}
	if seen.Load() <= 1100 {
		t.Fatalf("handler saw %d events: the deferred batches were not handled again", seen.Load())
	}
}
