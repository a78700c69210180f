package eventstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// A reset to the very checkpoint a batch in flight started from (here: a
// reset to the start while the first batch is being handled) must still
// fence that batch: its transaction rolls back and the events are handled
// again after the reset. The checkpoint alone cannot tell the two apart;
// the fence counts resets too.
func TestResetToTheInFlightCheckpointFencesTheBatch(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 3 {
		if _, err := s.Append(ctx, "r-1", eventstore.Any, ev("Tick", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "reset-race", PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	inFlight, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		if calls.Add(1) == 1 {
			// Write, then hold the first batch until the reset committed.
			if err := rm.handle(ctx, tx, events); err != nil {
				return err
			}
			close(inFlight)
			<-release
			return nil
		}
		return rm.handle(ctx, tx, events)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, h) }()
	<-inFlight
	// Wipe the read model and go back to the start, where the batch in
	// flight started from.
	err = s.ResetSubscription(ctx, "reset-race", eventstore.Position{}, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM `+rm.table+`; DELETE FROM `+pgx.Identifier{db.Schema, "rm_streams"}.Sanitize())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	waitFor(t, "the events handled again after the reset", 30*time.Second, func() bool { return calls.Load() >= 2 && rm.count(t) == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := rm.count(t); n != 3 {
		t.Fatalf("read model has %d events, want 3", n)
	}
}
