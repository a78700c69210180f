package eventstore_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// goroutinesIn counts the goroutines whose stack mentions one of fns.
func goroutinesIn(fns ...string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range fns {
			if strings.Contains(g, fn) {
				count++
				break
			}
		}
	}
	return count
}

// TestSubscriptionRunLeavesNoGoroutine runs a subscription that returns on
// its own (StopWhenCaughtUp) while its ctx stays live: every goroutine Run
// started must be gone once it returns. Not parallel, so that no other
// test's subscription runs meanwhile.
func TestSubscriptionRunLeavesNoGoroutine(t *testing.T) {
	s, _ := newStore(t, nil)
	appendN(t, s, 2, 3, "Tick")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // the ctx outlives Run; cancelled only when the test ends
	// Run's goroutines: the partition workers (started by the coordinator),
	// their reads ahead, and the wake-up listener.
	fns := []string{"eventstore.(*coordinator)", "eventstore.(*worker)", "eventstore.(*Store).listen"}
	before := goroutinesIn(fns...)
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "leak", Partitions: 2, StopWhenCaughtUp: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Run(ctx, func(context.Context, pgx.Tx, []eventstore.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// A leaked goroutine never ends, so the bound only has to outlast a
	// loaded machine's scheduling, not be tight.
	deadline := time.Now().Add(30 * time.Second)
	for goroutinesIn(fns...) > before {
		if time.Now().After(deadline) {
			t.Fatalf("Run returned but left %d goroutine(s) in %v running", goroutinesIn(fns...)-before, fns)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
