package pubsub_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

// exampleStore gives one example a freshly migrated schema of its own.
func exampleStore() (*eventstore.Store, func()) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema := "example_pubsub_" + hex.EncodeToString(b[:])
	pool, cleanup := pgtest.Example(schema)
	return eventstore.New(pool, &eventstore.Config{Schema: schema}), cleanup
}

func Example() {
	store, cleanup := exampleStore()
	defer cleanup()

	pub, err := pubsub.NewPublisher(store, nil)
	if err != nil {
		panic(err)
	}
	defer pub.Close()
	// Published before anyone subscribes: a new consumer group still gets it.
	if err := pub.Publish("orders-placed", message.NewMessage(watermill.NewUUID(), []byte(`{"order":"42"}`))); err != nil {
		panic(err)
	}

	sub, err := pubsub.NewSubscriber(store, &pubsub.SubscriberConfig{ConsumerGroup: "billing"})
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	msgs, err := sub.Subscribe(context.Background(), "orders-placed")
	if err != nil {
		panic(err)
	}
	msg := <-msgs
	fmt.Println(string(msg.Payload))
	msg.Ack()
	// Output: {"order":"42"}
}
