package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/outbox"
)

// The relay and a deduplicating consumer run as the least-privilege
// application role of migrations.GrantApplication.
func TestRelayAsApplicationRole(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	app := db.AppPool(t)
	store := eventstore.New(app, &eventstore.Config{Schema: db.Schema})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bus := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	defer bus.Close()
	messages, err := bus.Subscribe(ctx, "order")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := store.Append(ctx, fmt.Sprintf("order-%d", i), eventstore.NoStream, eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	relay := outbox.NewRelay(store, bus, &outbox.Config{PollInterval: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	effects := 0
	handle := outbox.Deduplicate(app, db.Schema, "billing")(func(msg *message.Message) ([]*message.Message, error) {
		effects++
		return nil, nil
	})
	for range 5 {
		select {
		case msg := <-messages:
			for range 2 {
				if _, err := handle(msg); err != nil {
					t.Fatalf("deduplicating consumer as the application role: %v", err)
				}
			}
			msg.Ack()
		case <-ctx.Done():
			t.Fatal("relay as the application role delivered nothing")
		}
	}
	if effects != 5 {
		t.Fatalf("%d effects, want 5", effects)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
