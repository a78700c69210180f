package natsjs_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/outbox/natsjs"
)

// TestSubscriberGroupShares: two subscribers of one durable name share
// the topic's messages (a queue group): every message is handled by one
// of them, and with one message in flight at a time the versions of a
// stream are still handled in order across the two.
func TestSubscriberGroupShares(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := fmt.Sprintf("natsgroup%d", rand.Uint32())
	deleteStreamAtEnd(t, topic)
	pub, err := natsjs.NewPublisher(natsURL(), &natsjs.Config{AutoProvision: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const n = 40
	var mu sync.Mutex
	var order []int
	by := map[int]int{}
	done := make(chan struct{})
	for w := range 2 {
		sub, err := natsjs.NewSubscriber(natsURL(), &natsjs.SubscriberConfig{Durable: "group", AutoProvision: true})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		msgs, err := sub.Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for msg := range msgs {
				v, _ := strconv.Atoi(msg.Metadata.Get("v"))
				mu.Lock()
				order = append(order, v)
				by[w]++
				full := len(order) == n
				mu.Unlock()
				msg.Ack()
				if full {
					close(done)
				}
			}
		}()
	}
	for v := 1; v <= n; v++ {
		msg := message.NewMessage(fmt.Sprintf("m-%d", v), []byte(`{}`))
		msg.Metadata.Set("v", strconv.Itoa(v))
		if err := pub.Publish(topic, msg); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("%d of %d messages handled", len(order), n)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, v := range order {
		if v != i+1 {
			t.Fatalf("message %d handled at place %d: %v", v, i+1, order)
		}
	}
	t.Logf("handled by subscriber: %v", by)
}
