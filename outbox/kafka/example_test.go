package kafka_test

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/kafka"
	"github.com/strata-go/strata/outbox/kafka/kafkatest"
)

// A publisher and a subscriber of one consumer group, against an
// in-process cluster (use your brokers' addresses instead). The relay
// publishes with the stream ID as the key, so a stream's events share a
// partition and the group's member that owns it gets them in order.
func ExampleNewSubscriber() {
	cluster, err := kafkatest.New(nil)
	if err != nil {
		panic(err)
	}
	defer cluster.Close()

	pub, err := kafka.NewPublisher(cluster.Addrs(), nil)
	if err != nil {
		panic(err)
	}
	defer pub.Close()
	for v := int64(1); v <= 3; v++ {
		e := eventstore.Event{ID: uuid.New(), StreamID: "order-42", Version: v, Type: "OrderPlaced", Data: []byte(`{}`)}
		if err := pub.Publish("order", outbox.NewMessage(e)); err != nil {
			panic(err)
		}
	}

	sub, err := kafka.NewSubscriber(cluster.Addrs(), "billing", nil)
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, "order")
	if err != nil {
		panic(err)
	}
	for range 3 {
		msg := <-msgs
		stream, version, _ := outbox.StreamVersion(msg)
		fmt.Println(stream, version)
		msg.Ack() // after the handler's work; wrap it in outbox.Deduplicate
	}
	// Output:
	// order-42 1
	// order-42 2
	// order-42 3
}
