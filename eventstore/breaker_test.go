package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// TestBreakerIgnoresPoisonEvents: a handler that fails for good on one
// event of each of 10 streams (a poison event: its error is not marked
// Unavailable, nor transient) while every other event succeeds. The
// failures are the events' own: each poison event is retried and parked,
// its stream's later events parked behind it, and the breaker never
// opens, however many such failures come in a row.
func TestBreakerIgnoresPoisonEvents(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	var handled atomic.Int64
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "poison", MaxAttempts: 2, RetryBackoff: time.Millisecond,
		Breaker: eventstore.BreakerConfig{Failures: 2, OpenFor: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	var opened atomic.Bool
	h := func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		if sub.BreakerState() != eventstore.BreakerClosed {
			opened.Store(true)
		}
		for _, e := range events {
			if e.Type == "Poison" {
				return fmt.Errorf("cannot decode %s", e.ID)
			}
		}
		handled.Add(int64(len(events)))
		return nil
	}
	for i := range 10 {
		stream := fmt.Sprintf("item-%d", i)
		if _, err := s.Append(t.Context(), stream, eventstore.NoStream, ev("Ok", `{}`), ev("Poison", `{}`), ev("Ok", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	run(t, sub, h)
	waitFor(t, "20 dead letters", 30*time.Second, func() bool {
		dl, err := s.DeadLetters(t.Context(), "poison")
		return err == nil && len(dl) == 20
	})
	if opened.Load() || sub.BreakerState() != eventstore.BreakerClosed {
		t.Errorf("the breaker opened on poison events (state %s)", sub.BreakerState())
	}
	if n := handled.Load(); n != 10 {
		t.Errorf("%d events handled, want the 10 before the poison ones", n)
	}
}

// TestBreakerOpensOnUnavailable: errors marked Unavailable open the
// breaker after Failures in a row, never count as attempts (no dead
// letter), and the breaker closes once a probe succeeds.
func TestBreakerOpensOnUnavailable(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "down", MaxAttempts: 2, RetryBackoff: time.Millisecond,
		MaxRetryBackoff: 10 * time.Millisecond, Breaker: eventstore.BreakerConfig{Failures: 3, OpenFor: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	var handled, calls atomic.Int64
	down.Store(true)
	h := func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		calls.Add(1)
		if down.Load() {
			return eventstore.Unavailable(errors.New("service down"))
		}
		handled.Add(int64(len(events)))
		return nil
	}
	appendN(t, s, 5, 4, "Ok")
	run(t, sub, h)
	waitFor(t, "the breaker open", 10*time.Second, func() bool { return sub.BreakerState() == eventstore.BreakerOpen })
	// The status row is written as the partition goes: while the breaker
	// opens and probes, it may say failing for a moment between two
	// reads, so it is read until it shows the breaker.
	var sts []eventstore.SubscriptionStatus
	waitFor(t, "the status to show the open breaker", 10*time.Second, func() bool {
		sts, err = s.SubscriptionStatuses(t.Context(), "down")
		if err != nil {
			t.Fatal(err)
		}
		return len(sts) == 1 && (sts[0].State == eventstore.BreakerOpen || sts[0].State == eventstore.BreakerHalfOpen)
	})
	if !strings.Contains(sts[0].LastError, "service down") {
		t.Errorf("status while open: %+v", sts)
	}
	time.Sleep(500 * time.Millisecond) // open 100ms at a time: a few probes, no storm
	if n := calls.Load(); n > 20 {
		t.Errorf("%d handler calls in 0.5s with the breaker open; want a probe per 100ms", n)
	}
	down.Store(false)
	waitFor(t, "every event handled", 10*time.Second, func() bool { return handled.Load() == 20 })
	if st := sub.BreakerState(); st != eventstore.BreakerClosed {
		t.Errorf("breaker %s after recovery", st)
	}
	if dl, err := s.DeadLetters(t.Context(), "down"); err != nil || len(dl) != 0 {
		t.Errorf("dead letters %v, %v; want none", dl, err)
	}
}

// Unavailable(nil) is nil; a marked error is ErrUnavailable and still its
// own error.
func TestUnavailableMark(t *testing.T) {
	base := errors.New("x")
	err := fmt.Errorf("wrapped: %w", eventstore.Unavailable(base))
	if eventstore.Unavailable(nil) != nil || !errors.Is(err, eventstore.ErrUnavailable) || !errors.Is(err, base) || err.Error() != "wrapped: x" {
		t.Errorf("Unavailable: %v", err)
	}
}
