package pubsub_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/migrations"
	"github.com/strata-go/strata/pubsub"
)

// exampleStore connects to DATABASE_URL (or the local test server) and
// migrates a fresh schema, returning a cleanup function.
func exampleStore() (*eventstore.Store, func()) {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test"
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		panic(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema := "example_pubsub_" + hex.EncodeToString(b[:])
	if err := migrations.Apply(ctx, pool, schema); err != nil {
		panic(err)
	}
	return eventstore.New(pool, &eventstore.Config{Schema: schema}), func() {
		_, _ = pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
		pool.Close()
	}
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
