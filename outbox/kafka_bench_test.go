package outbox_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/kafka/kafkatest"
)

// TestKafkaRelayThroughput compares the relay publishing 4,000 committed
// events (200 streams of 20) to an in-process Kafka-protocol cluster with
// the same Sarama publisher driven directly with the same messages (the
// same 64 streams at once, each stream's messages in one Publish call, as
// the relay does), in interleaved rounds against one cluster. The relay's
// extra work is reading the log and moving its checkpoint. kfake is a test
// broker, not a production one: the ratio says what the relay costs
// beside its publisher, not what Kafka can take.
//
//	STRATA_KAFKA_BENCH=1 go test -run TestKafkaRelayThroughput -v ./outbox/
func TestKafkaRelayThroughput(t *testing.T) {
	if os.Getenv("STRATA_KAFKA_BENCH") != "1" {
		t.Skip("benchmark: set STRATA_KAFKA_BENCH=1")
	}
	c := kafkatest.Start(t, nil)
	pub := newKafkaPublisher(t, c.Addrs())
	const streams, perStream, rounds = 200, 20, 3
	total := streams * perStream
	var relayRates, directRates []float64
	for round := range rounds {
		topic := uniqueTopic("bench")
		createKafkaTopic(t, c, topic, nil)

		// Direct: the same messages through the same publisher.
		events := make([][]eventstore.Event, streams)
		for s := range streams {
			for v := 1; v <= perStream; v++ {
				events[s] = append(events[s], eventstore.Event{ID: uuid.New(), StreamID: streamName("bench", s), Version: int64(v),
					Type: "Ticked", Data: fmt.Appendf(nil, `{"n":%d}`, v), RecordedAt: time.Now()})
			}
		}
		start := time.Now()
		sem := make(chan struct{}, 64)
		var wg sync.WaitGroup
		for s := range streams {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				msgs := make([]*message.Message, len(events[s]))
				for i, e := range events[s] {
					msgs[i] = outbox.NewMessage(e)
				}
				if err := pub.Publish(topic, msgs...); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		direct := time.Since(start)

		// The relay: the events committed first, then relayed.
		store, _ := newStore(t)
		appendAll(t.Context(), t, store, "bench", streams, perStream, perStream)
		relay := outbox.NewRelay(store, pub, &outbox.Config{Topic: func(eventstore.Event) string { return topic }})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		start = time.Now()
		go func() { done <- relay.Run(ctx) }()
		deadline := time.Now().Add(2 * time.Minute)
		for relay.Health().Published < int64(total) {
			if time.Now().After(deadline) {
				t.Fatalf("relay published %d of %d in 2 minutes", relay.Health().Published, total)
			}
			time.Sleep(time.Millisecond)
		}
		relayed := time.Since(start)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		relayRates = append(relayRates, float64(total)/relayed.Seconds())
		directRates = append(directRates, float64(total)/direct.Seconds())
		t.Logf("round %d: relay %.0f events/s, direct Sarama publisher %.0f messages/s, ratio %.2f",
			round+1, relayRates[round], directRates[round], relayRates[round]/directRates[round])
	}
	var r, d float64
	for i := range relayRates {
		r += relayRates[i]
		d += directRates[i]
	}
	t.Logf("mean over %d rounds: relay %.0f events/s, direct %.0f messages/s, ratio %.2f (kfake in process, 3 brokers; a shared 2-core machine)",
		rounds, r/rounds, d/rounds, r/d)
}
