package eventstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// listenerPID returns the backend of the store's LISTEN connection, or 0
// while there is none.
func listenerPID(t *testing.T, s *eventstore.Store, pool interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) int {
	t.Helper()
	var pid int
	err := pool.QueryRow(context.Background(), `SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE query = $1`,
		"LISTEN "+pgx.Identifier{s.Channel()}.Sanitize()).Scan(&pid)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestListenerReconnectsAfterItsBackendIsKilled: the wake-up connection is
// terminated on the server (pg_terminate_backend, as an administrator or a
// failover does); the listener must reconnect so that a later append wakes
// an idle subscriber at once, not after its (here very long) PollInterval.
func TestListenerReconnectsAfterItsBackendIsKilled(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx := context.Background()
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "wake", PollInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	stop := run(t, sub, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		handled.Add(int64(len(events)))
		return nil
	})
	defer stop()
	// The first append proves the set-up: the listener is up and wakes the
	// subscriber.
	var pid int
	waitFor(t, "the LISTEN connection", 30*time.Second, func() bool { pid = listenerPID(t, s, db.Pool); return pid != 0 })
	appendAndWait := func(want int64) time.Duration {
		t.Helper()
		// Wait until the subscriber is idle (its poll back-off grows to
		// PollInterval) so that only a wake-up can bring it back fast.
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		if _, err := s.Append(ctx, "w-1", eventstore.Any, ev("Tick", `{}`)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the event handled", 90*time.Second, func() bool { return handled.Load() >= want })
		return time.Since(start)
	}
	if d := appendAndWait(1); d > 10*time.Second {
		t.Fatalf("set-up: the first append took %s to reach the subscriber", d)
	}
	var killed bool
	if err := db.Pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d): %v %v", pid, killed, err)
	}
	// A new listener comes up (another backend).
	waitFor(t, "a new LISTEN connection", 30*time.Second, func() bool { p := listenerPID(t, s, db.Pool); return p != 0 && p != pid })
	if d := appendAndWait(2); d > 10*time.Second {
		t.Fatalf("after the listener's backend was killed, an append took %s to reach the subscriber (PollInterval 1m): the listener did not reconnect", d)
	}
}
