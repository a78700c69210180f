package outbox_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/outbox"
)

// exampleStore gives one example a freshly migrated schema.
func exampleStore(schema string) (*eventstore.Store, *pgxpool.Pool, func()) {
	pool, cleanup := pgtest.Example(schema)
	return eventstore.New(pool, &eventstore.Config{Schema: schema}), pool, cleanup
}

// A relay to Watermill's in-process GoChannel, and a consumer that
// deduplicates: the second delivery of the same message has no effect.
func Example() {
	store, pool, cleanup := exampleStore("example_outbox")
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	defer pubsub.Close()
	messages, err := pubsub.Subscribe(ctx, "order")
	if err != nil {
		panic(err)
	}

	id := uuid.MustParse("0190f3a2-7c1e-7d4a-9b2e-3f5a6b7c8d9e")
	_, err = store.Append(ctx, "order-42", eventstore.NoStream, eventstore.NewEvent{ID: id, Type: "OrderPlaced", Data: []byte(`{"total_cents":2599}`),
		Metadata: eventstore.Metadata{CorrelationID: "req-7"}})
	if err != nil {
		panic(err)
	}

	relay := outbox.NewRelay(store, pubsub, nil)
	go func() { _ = relay.Run(ctx) }()

	effects := 0
	handle := outbox.Deduplicate(pool, "example_outbox", "billing")(func(msg *message.Message) ([]*message.Message, error) {
		effects++ // a real handler writes through outbox.TxFromContext(msg.Context())
		return nil, nil
	})
	msg := <-messages
	fmt.Println(msg.UUID, string(msg.Payload))
	fmt.Println(msg.Metadata.Get(outbox.MetaStream), msg.Metadata.Get(outbox.MetaVersion), msg.Metadata.Get(outbox.MetaType), msg.Metadata.Get(outbox.MetaCorrelationID))
	for range 2 { // delivered twice
		if _, err := handle(msg); err != nil {
			panic(err)
		}
	}
	msg.Ack()
	fmt.Println("effects:", effects)
	// Output:
	// 0190f3a2-7c1e-7d4a-9b2e-3f5a6b7c8d9e {"total_cents":2599}
	// order-42 1 OrderPlaced req-7
	// effects: 1
}
