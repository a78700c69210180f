package rabbitmq_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/rabbitmq"
)

// Both sides of RabbitMQ: the topic's durable queue is declared before
// the relay publishes (RabbitMQ drops what no queue takes), the relay
// publishes with confirms, and a consumer reads the queue with
// NewSubscriber behind Watermill's router, deduplicating in Postgres.
func ExampleNewSubscriber() {
	const schema = "example_rabbitmq"
	pool, cleanup := pgtest.Example(schema)
	defer cleanup()
	store := eventstore.New(pool, &eventstore.Config{Schema: schema})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	category := fmt.Sprintf("invoice%d", rand.Uint32()) // the topic: the queue's name
	if err := rabbitmq.DeclareQueues(amqpURL(), category); err != nil {
		panic(err)
	}
	defer deleteQueue(category)

	for i, id := range []string{"0190f3a2-7c1e-7d4a-9b2e-3f5a6b7c8d01", "0190f3a2-7c1e-7d4a-9b2e-3f5a6b7c8d02"} {
		_, err := store.Append(ctx, category+"-7", eventstore.Any, eventstore.NewEvent{
			ID: uuid.MustParse(id), Type: "InvoiceIssued", Data: fmt.Appendf(nil, `{"n":%d}`, i+1)})
		if err != nil {
			panic(err)
		}
	}
	pub, err := rabbitmq.NewPublisher(amqpURL(), nil)
	if err != nil {
		panic(err)
	}
	defer pub.Close()
	relay := outbox.NewRelay(store, pub, &outbox.Config{Name: category})
	go func() { _ = relay.Run(ctx) }()

	sub, err := rabbitmq.NewSubscriber(amqpURL(), nil)
	if err != nil {
		panic(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		panic(err)
	}
	got := make(chan string)
	router.AddConsumerHandler("billing", category, sub, func(msg *message.Message) error {
		got <- fmt.Sprintf("v%s %s %s", msg.Metadata.Get(outbox.MetaVersion), msg.UUID, msg.Payload)
		return nil
	}).AddMiddleware(outbox.Deduplicate(pool, schema, "billing"))
	go func() { _ = router.Run(ctx) }()
	for range 2 {
		fmt.Println(<-got)
	}
	_ = router.Close()
	// Output:
	// v1 0190f3a2-7c1e-7d4a-9b2e-3f5a6b7c8d01 {"n":1}
	// v2 0190f3a2-7c1e-7d4a-9b2e-3f5a6b7c8d02 {"n":2}
}
