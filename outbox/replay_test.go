package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/outbox"
)

// Promise 6 for the relay: reset to the start of the log, a running relay
// publishes every event again, in stream order.
func TestRelayResetReplays(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bus := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	defer bus.Close()
	messages, err := bus.Subscribe(ctx, "order")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := store.Append(ctx, "order-1", eventstore.Exactly(int64(i)), eventstore.NewEvent{Type: "Step", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	relay := outbox.NewRelay(store, bus, &outbox.Config{PollInterval: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	receive := func(pass int) {
		for want := 1; want <= 3; want++ {
			select {
			case msg := <-messages:
				if _, v, _ := outbox.StreamVersion(msg); v != int64(want) {
					t.Fatalf("pass %d: version %d, want %d", pass, v, want)
				}
				msg.Ack()
			case <-ctx.Done():
				t.Fatalf("pass %d: got %d of 3 messages", pass, want-1)
			}
		}
	}
	receive(1)
	if err := store.ResetSubscription(ctx, relay.SubscriptionName(), eventstore.Position{}, nil); err != nil {
		t.Fatal(err)
	}
	receive(2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
