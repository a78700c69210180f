package eventstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// TestReadLog reads a log of more than two pages whole, in order, from a
// position, filtered, and stops when the loop breaks.
func TestReadLog(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 1203 // three pages of 500 and a bit
	for i := range n {
		stream := fmt.Sprintf("acct-%d", i%7)
		if i%3 == 0 {
			stream = fmt.Sprintf("other-%d", i%5)
		}
		if _, err := s.Append(ctx, stream, eventstore.Any, ev("T", fmt.Sprintf(`{"i":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	var all []eventstore.Event
	pgtest.WaitFor(t, "the whole log", 30*time.Second, func() bool { // wait out other tests' open transactions
		all = all[:0]
		for e, err := range s.ReadLog(ctx, eventstore.Position{}, eventstore.Filter{}) {
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, e)
		}
		return len(all) == n
	})
	for i, e := range all {
		if want := fmt.Sprintf(`{"i":%d}`, i); string(e.Data) != want {
			t.Fatalf("event %d: %s, want %s", i, e.Data, want)
		}
	}
	from := 0
	for range s.ReadLog(ctx, all[599].Position, eventstore.Filter{}) {
		from++
	}
	if from != n-600 {
		t.Errorf("after event 600: %d events, want %d", from, n-600)
	}
	acct := 0
	for e, err := range s.ReadLog(ctx, eventstore.Position{}, eventstore.Filter{Categories: []string{"acct"}}) {
		if err != nil || e.StreamID[:4] != "acct" {
			t.Fatalf("filtered: %v %q", err, e.StreamID)
		}
		acct++
	}
	if acct != n-(n+2)/3 {
		t.Errorf("filtered: %d events, want %d", acct, n-(n+2)/3)
	}
	seen := 0
	for range s.ReadLog(ctx, eventstore.Position{}, eventstore.Filter{}) {
		if seen++; seen == 3 {
			break
		}
	}
	var errs int
	for _, err := range s.ReadLog(ctx, eventstore.Position{}, eventstore.Filter{Partitions: 4, Partition: 9}) {
		if err == nil {
			t.Fatal("a bad filter yielded an event")
		}
		errs++
	}
	if errs != 1 {
		t.Errorf("a bad filter yielded %d errors, want 1", errs)
	}
}
