package eventstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// A process that joins a subscription gets its fair share well within
// the lease renewal period (LeaseTTL/3, 10s here): the process holding
// every partition hands half over as soon as it sees the newcomer (it
// looks every LeaseTTL/20, 1.5s), and the newcomer claims them as soon
// as they are free, instead of each waiting for its next renewal (the
// newcomer's comes 10s after the join). The bound, 7s, leaves a loaded
// machine room on both sides.
func TestJoiningProcessGetsItsShareBeforeTheRenewal(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	cfg := eventstore.SubscriptionConfig{Name: "rm", Partitions: 4, LeaseTTL: 30 * time.Second, PollInterval: 50 * time.Millisecond}
	idle := func(context.Context, pgx.Tx, []eventstore.Event) error { return nil }
	owners := func() map[string]int {
		st, err := s.SubscriptionStatuses(context.Background(), "rm")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int{}
		for _, p := range st {
			m[p.Owner]++
		}
		return m
	}
	cfg.Owner = "A"
	subA, _ := s.Subscription(cfg)
	run(t, subA, idle)
	waitFor(t, "A owning every partition", 30*time.Second, func() bool { return owners()["A"] == 4 })
	cfg.Owner = "B"
	subB, _ := s.Subscription(cfg)
	joined := time.Now()
	run(t, subB, idle)
	waitFor(t, "a fair split", 30*time.Second, func() bool { o := owners(); return o["A"] == 2 && o["B"] == 2 })
	if took := time.Since(joined); took > 7*time.Second {
		t.Fatalf("B got its share %v after joining; the renewal period is 10s", took)
	}
	t.Logf("B got its share %v after joining", time.Since(joined).Round(time.Millisecond))
}
