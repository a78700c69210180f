package pubsub_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/pubsub"
)

// TestStoredCopyCausedByItsEvent: a message the outbox built from a Strata
// event is stored with that event's ID as its causation ID (and the
// event's correlation ID), so that `strata trace` hangs the copy under its
// event; a plain message has no causation ID.
func TestStoredCopyCausedByItsEvent(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	ctx := ctxT(t)
	res, err := store.Append(ctx, "order-7", eventstore.NoStream, eventstore.NewEvent{
		Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(`{"id":"7"}`),
		Metadata: eventstore.Metadata{CorrelationID: "req-7", CausationID: "cmd-7"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var e eventstore.Event
	for ev, err := range store.ReadStream(ctx, "order-7", 0) {
		if err != nil {
			t.Fatal(err)
		}
		e = ev
	}
	if e.Position != res.Position {
		t.Fatalf("read %v, appended at %v", e.Position, res.Position)
	}
	pub, err := pubsub.NewPublisher(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	plain := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	if err := pub.Publish("orders", outbox.NewMessage(e), plain); err != nil {
		t.Fatal(err)
	}
	var copies []eventstore.Event
	for c, err := range store.ReadStream(ctx, pubsub.StreamID(pubsub.DefaultPrefix, "orders", ""), 0) {
		if err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c)
	}
	if len(copies) != 2 {
		t.Fatalf("%d stored copies, want 2", len(copies))
	}
	if got := copies[0].Metadata; got.CausationID != e.ID.String() || got.CorrelationID != "req-7" {
		t.Fatalf("relayed event's copy: causation %q correlation %q, want %q and %q", got.CausationID, got.CorrelationID, e.ID, "req-7")
	}
	if got := copies[1].Metadata.CausationID; got != "" {
		t.Fatalf("plain message's copy has causation %q, want none", got)
	}
}
