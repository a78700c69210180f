package rabbitmq_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/rabbitmq"
)

func amqpURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

func deleteQueueAtEnd(t *testing.T, name string) {
	t.Cleanup(func() { deleteQueue(name) })
}

// deleteQueue removes a queue, if it can.
func deleteQueue(name string) {
	conn, err := amqp091.Dial(amqpURL())
	if err != nil {
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		_, _ = ch.QueueDelete(name, false, false, false)
		ch.Close()
	}
}

// TestSubscriberKeepsStreamOrder relays 4 streams × 25 events, interleaved,
// through the real RabbitMQ server and consumes them with NewSubscriber,
// nacking some deliveries: every message arrives, each stream in version
// order, a nacked message again before its stream's next one; a second
// subscriber resumes with what the first did not acknowledge.
func TestSubscriberKeepsStreamOrder(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topic := fmt.Sprintf("rmqorder%d", rand.Uint32())
	deleteQueueAtEnd(t, topic)

	// Without provisioning, a missing queue is an error naming it.
	strict, err := rabbitmq.NewSubscriber(amqpURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Subscribe(ctx, topic); err == nil {
		t.Error("Subscribe to a missing queue without AutoProvision succeeded")
	}
	_ = strict.Close()
	if err := rabbitmq.DeclareQueues(amqpURL(), topic); err != nil {
		t.Fatal(err)
	}

	const streams, per = 4, 25
	for v := range per {
		for s := range streams {
			_, err := store.Append(ctx, fmt.Sprintf("%s-%d", topic, s), eventstore.Any, eventstore.NewEvent{Type: "Tick", Data: fmt.Appendf(nil, `{"v":%d}`, v+1)})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	pub, err := rabbitmq.NewPublisher(amqpURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	relay := outbox.NewRelay(store, pub, &outbox.Config{Name: topic})
	rctx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(rctx) }()
	defer func() { stopRelay(); <-relayDone }()

	last := map[string]int{}
	received, nacked := 0, 0
	consume := func(limit int) {
		sub, err := rabbitmq.NewSubscriber(amqpURL(), &rabbitmq.SubscriberConfig{AutoProvision: true})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		msgs, err := sub.Subscribe(sctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		seenOnce := map[string]bool{}
		for received < limit {
			select {
			case <-ctx.Done():
				t.Fatalf("%d of %d messages after %v", received, streams*per, ctx.Err())
			case msg := <-msgs:
				stream := msg.Metadata.Get(outbox.MetaStream)
				v, _ := strconv.Atoi(msg.Metadata.Get(outbox.MetaVersion))
				if v <= last[stream] { // a redelivery of one handled before (at least once)
					msg.Ack()
					continue
				}
				if v != last[stream]+1 {
					t.Fatalf("stream %s: version %d after %d", stream, v, last[stream])
				}
				if v%7 == 0 && !seenOnce[msg.UUID] { // refuse the first delivery
					seenOnce[msg.UUID] = true
					nacked++
					msg.Nack()
					continue
				}
				last[stream] = v
				received++
				msg.Ack()
			}
		}
	}
	consume(streams * per / 2)
	consume(streams * per)
	if nacked == 0 {
		t.Error("no message was nacked")
	}
	for s := range streams {
		if got := last[fmt.Sprintf("%s-%d", topic, s)]; got != per {
			t.Errorf("stream %d: last version %d, want %d", s, got, per)
		}
	}
}
