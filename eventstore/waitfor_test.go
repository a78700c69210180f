package eventstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// WaitFor waits only for what the subscription selects: an append of a
// type it filters out needs no wait, an append with one selected event
// among others does, and the wait ends at the commit of the checkpoint
// that passes it (here in a subscription of 3 partitions, the stream's
// partition). Bad arguments and unknown names are typed errors.
func TestWaitForSelectsAndWakes(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := context.Background()
	sub, err := s.Subscription(eventstore.SubscriptionConfig{Name: "ticks", Types: []string{"Tick"}, Partitions: 3, PollInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Register(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := s.Append(ctx, "c-1", eventstore.Any, ev("Other", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFor(ctx, "ticks", other.Position); err != nil {
		t.Fatalf("an event the subscription does not select: %v", err)
	}
	if err := s.WaitFor(ctx, "ticks", eventstore.Position{}); err != nil {
		t.Fatalf("the zero position: %v", err)
	}
	mixed, err := s.Append(ctx, "c-2", eventstore.Any, ev("Tick", `{}`), ev("Other", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = s.WaitFor(short, "ticks", mixed.Position)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an append with a selected event, nothing running: %v, want the deadline", err)
	}
	for _, bad := range []struct {
		name string
		pos  eventstore.Position
	}{{"", mixed.Position}, {"a\x00b", mixed.Position}, {"ticks", eventstore.Position{TxID: 1 << 63}}, {"ticks", eventstore.Position{TxID: 1, Seq: -1}}} {
		if err := s.WaitFor(ctx, bad.name, bad.pos); !errors.Is(err, eventstore.ErrInvalidArgument) {
			t.Fatalf("WaitFor(%q, %v): %v, want ErrInvalidArgument", bad.name, bad.pos, err)
		}
	}
	if err := s.WaitFor(ctx, "unknown", mixed.Position); !errors.Is(err, eventstore.ErrSubscriptionNotFound) {
		t.Fatalf("unknown subscription: %v", err)
	}

	waited := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		waited <- s.WaitFor(wctx, "ticks", mixed.Position)
	}()
	handled := make(chan struct{})
	var seen bool
	rctx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() {
		ran <- sub.Run(rctx, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
			for _, e := range events {
				if e.StreamID == "c-2" && !seen {
					seen = true
					close(handled)
				}
			}
			return nil
		})
	}()
	defer func() {
		stop()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	}()
	if err := <-waited; err != nil {
		t.Fatalf("WaitFor while the subscription runs: %v", err)
	}
	select {
	case <-handled:
	default:
		t.Fatal("WaitFor returned before the handler saw the event")
	}
}
