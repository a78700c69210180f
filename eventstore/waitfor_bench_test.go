package eventstore_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// What the checkpoint NOTIFY of migration 0030 costs a subscription: a
// subscription handling live appends one at a time (a batch, a
// checkpoint commit, per event), with the trigger enabled and disabled,
// in interleaved rounds of the same run.
//
//	STRATA_LIFECYCLE_BENCH=1 go test -run TestCheckpointNotifyCost -v ./eventstore/
func TestCheckpointNotifyCost(t *testing.T) {
	if os.Getenv("STRATA_LIFECYCLE_BENCH") != "1" {
		t.Skip("set STRATA_LIFECYCLE_BENCH=1 to measure")
	}
	db := pgtest.New(t)
	ctx := context.Background()
	s := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "live"})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, sub, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		_, err := tx.Exec(ctx, `SELECT 1`) // a write-less handler still opens the batch's transaction
		return err
	})
	defer func() { _ = stop() }()
	table := pgx.Identifier{db.Schema, "subscriptions"}.Sanitize()
	round := func(notify bool, n int) time.Duration {
		verb := "DISABLE"
		if notify {
			verb = "ENABLE"
		}
		if _, err := db.Pool.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s %s TRIGGER strata_notify_checkpoint`, table, verb)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var last eventstore.AppendResult
		for i := range n {
			last, err = s.Append(ctx, fmt.Sprintf("acct-%d", i%10), eventstore.Any, ev("Tick", `{}`))
			if err != nil {
				t.Fatal(err)
			}
		}
		pgtest.WaitFor(t, "the subscription to catch up", time.Minute, func() bool {
			st, err := s.SubscriptionStatuses(ctx, "live")
			return err == nil && len(st) == 1 && !st[0].Checkpoint.Less(last.Position)
		})
		return time.Since(start) / time.Duration(n)
	}
	var on, off []time.Duration
	for range 5 {
		off = append(off, round(false, 400))
		on = append(on, round(true, 400))
	}
	slices.Sort(on)
	slices.Sort(off)
	t.Logf("live appends handled one batch each, per event, median of 5 interleaved rounds (shared, loaded machine): with the checkpoint NOTIFY %v, without %v (%.2fx)",
		on[2], off[2], float64(on[2])/float64(off[2]))
}
