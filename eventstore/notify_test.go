package eventstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/internal/storeview"
)

// TestFailedAppendDoesNotSwallowWakeUp: an append that conflicts sends no
// notification, so it must not count as the one that did: the append that
// follows it at once (an aggregate's retry after a conflict) wakes the
// subscribers. With a NotifyInterval of an hour, a swallowed wake-up would
// leave idle subscribers to their PollInterval.
func TestFailedAppendDoesNotSwallowWakeUp(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, &eventstore.Config{NotifyInterval: time.Hour})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{storeview.Of(s).Channel}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "order-1", eventstore.Exactly(3), ev("Placed", `{}`)); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("want a conflict, got %v", err)
	}
	if _, err := s.Append(ctx, "order-1", eventstore.NoStream, ev("Placed", `{}`)); err != nil {
		t.Fatal(err)
	}
	// A swallowed wake-up never comes (the NotifyInterval is an hour): the
	// bound only has to outlast a loaded server.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := conn.WaitForNotification(wctx); err != nil {
		t.Fatalf("no wake-up for the append that followed a conflict: %v", err)
	}
}
