package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/kafka"
	"github.com/strata-go/strata/outbox/kafka/kafkatest"
)

// TestRoundTrip publishes events of several streams through NewPublisher
// to an in-process cluster and reads them back through NewSubscriber:
// every message once, each stream in version order, its metadata intact.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	c := kafkatest.Start(t, nil)
	pub, err := kafka.NewPublisher(c.Addrs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const streams, perStream = 10, 20
	for v := 1; v <= perStream; v++ {
		for s := range streams {
			e := eventstore.Event{ID: uuid.New(), StreamID: fmt.Sprintf("order-%d", s), Version: int64(v), Type: "Placed", Data: []byte(`{"n":1}`)}
			if err := pub.Publish("order", outbox.NewMessage(e)); err != nil {
				t.Fatal(err)
			}
		}
	}
	sub, err := kafka.NewSubscriber(c.Addrs(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, "order")
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]int64{}
	for n := 0; n < streams*perStream; n++ {
		select {
		case m := <-msgs:
			stream, v, ok := outbox.StreamVersion(m)
			if !ok || v != last[stream]+1 {
				t.Fatalf("stream %q: version %d after %d", stream, v, last[stream])
			}
			last[stream] = v
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("%d of %d messages", n, streams*perStream)
		}
	}
}
