package outbox_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/strata-go/strata/outbox"
)

// A consumer behind Watermill's router: the handler writes its effect
// through the Deduplicator's transaction, and a message delivered twice
// (here: published twice with the same UUID) has one effect.
func ExampleDeduplicate() {
	_, pool, cleanup := exampleStore("example_outbox_dedup")
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := pool.Exec(ctx, `CREATE TABLE example_outbox_dedup.invoices (order_id text PRIMARY KEY, payments int NOT NULL)`); err != nil {
		panic(err)
	}

	broker := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		panic(err)
	}
	router.AddConsumerHandler("billing", "order", broker, func(msg *message.Message) error {
		tx, _ := outbox.TxFromContext(msg.Context())
		_, err := tx.Exec(msg.Context(), `INSERT INTO example_outbox_dedup.invoices VALUES ($1, 1)
			ON CONFLICT (order_id) DO UPDATE SET payments = invoices.payments + 1`, msg.Metadata.Get(outbox.MetaStream))
		return err
	}).AddMiddleware(outbox.Deduplicate(pool, "example_outbox_dedup", "billing"))
	go func() { _ = router.Run(ctx) }()
	<-router.Running()

	for range 2 { // the same message twice: a redelivery
		msg := message.NewMessage("0190f3a2-7c1e-7d4a-9b2e-3f5a6b7c8d9e", []byte(`{"total_cents":2599}`))
		msg.Metadata.Set(outbox.MetaStream, "order-42")
		if err := broker.Publish("order", msg); err != nil { // returns once handled and acked
			panic(err)
		}
	}
	var payments int
	if err := pool.QueryRow(ctx, `SELECT payments FROM example_outbox_dedup.invoices WHERE order_id = 'order-42'`).Scan(&payments); err != nil {
		panic(err)
	}
	fmt.Println("payments recorded:", payments)
	_ = router.Close()
	_ = broker.Close()
	// Output:
	// payments recorded: 1
}
