package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
)

// Writers racing on one stream: a subscription must see the stream's
// events in version order, whatever the kind of append. The log is ordered
// by (transaction ID, position), so the stream's versions must follow that
// order; an append that took its transaction ID before waiting for the
// stream (the race to create a stream with Any, a StreamExists update
// queued behind another writer) used to land before the version it
// follows. TestSIGKILLAtRandomMomentsExactlyOnce (projection) caught it as
// a version 2 handled before version 1 of a new stream, then parked.
func TestRacingAppendersKeepStreamOrderInTheLog(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	ctx := context.Background()
	const rounds, racers = 150, 6
	// Each round: racers appends at once to a new stream with Any, then
	// racers appends at once with StreamExists.
	for round := range rounds {
		stream := fmt.Sprintf("race-%d", round)
		for _, expected := range []eventstore.ExpectedVersion{eventstore.Any, eventstore.StreamExists} {
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range racers {
				wg.Go(func() {
					<-start
					if _, err := s.Append(ctx, stream, expected, ev("Tick", `{}`)); err != nil {
						t.Error(err)
					}
				})
			}
			close(start)
			wg.Wait()
		}
	}
	if t.Failed() {
		return
	}
	total := rounds * racers * 2

	// The log itself: each stream's versions 1, 2, 3, … in log order.
	if n := checkLogOrder(t, s, total); n != total {
		t.Fatalf("%d events in the log, want %d", n, total)
	}

	// A subscription of two partitions, whose handler refuses versions out
	// of order, handles every event without failing.
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "race", Partitions: 2, BatchSize: 25,
		MaxAttempts: 1, OnFailure: eventstore.Stop, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sub.Run(runCtx, rm.handle) }()
	deadline := time.After(60 * time.Second)
	for rm.count(t) < total {
		select {
		case err := <-done:
			var he *eventstore.HandlerError
			if errors.As(err, &he) {
				t.Fatalf("handler refused %s v%d at %s: %v", he.Event.StreamID, he.Event.Version, he.Event.Position, he.Err)
			}
			t.Fatalf("Run returned %v with %d of %d events handled", err, rm.count(t), total)
		case <-deadline:
			t.Fatalf("%d of %d events handled after 60s", rm.count(t), total)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
