package pubsub_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

// onlyDomain is a validator that, like a *schema.Registry, knows the
// application's event types only.
type onlyDomain struct{}

func (onlyDomain) Validate(ev eventstore.NewEvent) error {
	if ev.Type != "OrderPlaced" {
		return fmt.Errorf("unknown event type %q", ev.Type)
	}
	return nil
}

// TestPublisherOnValidatedStore: the application's store, whose validator
// refuses any type it does not know, carries Pub/Sub messages too (JSON
// and raw payloads, with and without a tx) and still validates the
// application's own appends.
func TestPublisherOnValidatedStore(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, Validator: onlyDomain{}})
	ctx := ctxT(t)
	pub, sub := newPubSub(t, store, &pubsub.SubscriberConfig{ConsumerGroup: "g"})

	msgs, err := sub.Subscribe(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	sent := []*message.Message{
		message.NewMessage(watermill.NewUUID(), []byte(`{"id":"1"}`)),
		message.NewMessage(watermill.NewUUID(), []byte("not json")),
	}
	if err := pub.Publish("orders", sent...); err != nil {
		t.Fatalf("publish on a validated store: %v", err)
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inTx := message.NewMessage(watermill.NewUUID(), []byte(`{"id":"2"}`))
	inTx.SetContext(pubsub.ContextWithTx(ctx, tx))
	if err := pub.Publish("orders", inTx); err != nil {
		t.Fatalf("publish in a tx on a validated store: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range append(sent, inTx) {
		got := receive(t, msgs, 30*time.Second)
		if got.UUID != want.UUID || string(got.Payload) != string(want.Payload) {
			t.Fatalf("received %s %q, want %s %q", got.UUID, got.Payload, want.UUID, want.Payload)
		}
		got.Ack()
	}

	if _, err := store.Append(ctx, "order-1", eventstore.Any, eventstore.NewEvent{Type: "Unknown", Data: []byte(`{}`)}); !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("the store no longer validates the application's appends: %v", err)
	}
	if _, err := store.Append(ctx, "order-1", eventstore.Any, eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
}
