package eventstore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// The store and its subscriptions work under the least-privilege role of
// migrations.GrantApplication: no DDL, no UPDATE or DELETE on events.
func TestLeastPrivilegeRole(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	s := eventstore.New(db.AppPool(t), &eventstore.Config{Schema: db.Schema})
	if _, err := s.Append(ctx, "order-1", eventstore.NoStream, ev("Placed", `{}`), ev("Paid", `{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "order-1", eventstore.NoStream, ev("Placed", `{}`)); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("conflict as app role: %v", err)
	}
	if err := s.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: "order-1", Version: 2, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	var seen atomic.Int64
	sub, _ := s.Subscription(eventstore.SubscriptionConfig{Name: "p", PollInterval: 20 * time.Millisecond})
	run(t, sub, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		seen.Add(int64(len(events)))
		return nil
	})
	waitFor(t, "subscription as app role", 60*time.Second, func() bool { return seen.Load() == 2 })
	if _, err := s.SubscriptionStatuses(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.ResetSubscription(ctx, "p", eventstore.Position{}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replay as app role", 60*time.Second, func() bool { return seen.Load() == 4 })
}
