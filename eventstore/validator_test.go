package eventstore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/storeview"
)

// TestWithValidator: a Store made by WithValidator validates with its own
// validator (nil: none) while the original keeps refusing what its
// validator refuses; both write and read the same log; and subscriptions
// run on both share one LISTEN connection that wakes them all.
func TestWithValidator(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, &eventstore.Config{Validator: refuseType("Bad")})
	ctx := context.Background()
	open := storeview.WithValidator(s, nil)
	other := storeview.WithValidator(s, refuseType("Other"))

	if _, err := s.Append(ctx, "v-1", eventstore.Any, ev("Bad", `{}`)); !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("original store accepted a refused type: %v", err)
	}
	if _, err := open.Append(ctx, "v-1", eventstore.Any, ev("Bad", `{}`)); err != nil {
		t.Fatalf("store without validator: %v", err)
	}
	if _, err := other.Append(ctx, "v-1", eventstore.Any, ev("Other", `{}`)); !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("derived validator not used: %v", err)
	}
	if _, err := other.Append(ctx, "v-1", eventstore.Any, ev("Bad", `{}`)); err != nil {
		t.Fatalf("derived store used the original's validator: %v", err)
	}
	if _, err := s.Append(ctx, "v-1", eventstore.Any, ev("Bad", `{}`)); !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("original store's validator changed by WithValidator: %v", err)
	}
	if got := readStream(t, s, "v-1"); len(got) != 2 || got[0].Version != 1 || got[1].Version != 2 {
		t.Fatalf("original store reads %d events of the derived stores' appends, want 2", len(got))
	}

	// Two subscriptions, one on each store: one LISTEN connection serves
	// both (separate wake-up state would open one per store).
	var seen [2]atomic.Int64
	for i, st := range []*eventstore.Store{s, open} {
		sub, err := st.Subscription(eventstore.SubscriptionConfig{Name: []string{"orig", "derived"}[i], PollInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		run(t, sub, func(_ context.Context, _ pgx.Tx, events []eventstore.Event) error {
			seen[i].Add(int64(len(events)))
			return nil
		})
	}
	listeners := func() int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`,
			eventstore.ListenerName(s)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, "the wake-up listener to connect", 30*time.Second, func() bool { return listeners() >= 1 })
	// Gap-safe reads: another test's open transaction may hold them back.
	waitFor(t, "both subscriptions to catch up", 60*time.Second, func() bool { return seen[0].Load() == 2 && seen[1].Load() == 2 })
	if _, err := open.Append(ctx, "v-2", eventstore.Any, ev("Bad", `{}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both subscriptions to see the new event", 60*time.Second, func() bool { return seen[0].Load() == 3 && seen[1].Load() == 3 })
	if n := listeners(); n != 1 {
		t.Fatalf("%d LISTEN connections on %s, want the one both stores share", n, storeview.Of(s).Channel)
	}
}
