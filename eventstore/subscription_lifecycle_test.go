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

// goroutinesIn counts the goroutines whose stack mentions fn.
func goroutinesIn(fn string) int {
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
		if strings.Contains(g, fn) {
			count++
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
	const fn = "eventstore.(*partitionHub).fanOut"
	before := goroutinesIn(fn)
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
	for goroutinesIn(fn) > before {
		if time.Now().After(deadline) {
			t.Fatalf("Run returned but left %d goroutine(s) in %s running", goroutinesIn(fn)-before, fn)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
