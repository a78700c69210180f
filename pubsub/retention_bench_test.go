package pubsub_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/pubsub"
)

// Append throughput with an Expirer deleting a consumed topic's messages
// every 20ms beside it, against none, in interleaved rounds of the same
// run: 4 appenders of domain events for 2s per round, while a publisher
// (a message every 2ms) and a consumer group keep the topic moving.
//
//	STRATA_LIFECYCLE_BENCH=1 go test -run TestExpiryAppendCost -v ./pubsub/
func TestExpiryAppendCost(t *testing.T) {
	if os.Getenv("STRATA_LIFECYCLE_BENCH") != "1" {
		t.Skip("set STRATA_LIFECYCLE_BENCH=1 to measure")
	}
	s, _ := newStore(t)
	ctx := ctxT(t)
	pub, sub := newPubSub(t, s, &pubsub.SubscriberConfig{ConsumerGroup: "g"})
	ch, err := sub.Subscribe(ctx, "load")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for m := range ch {
			m.Ack()
		}
	}()
	pctx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	go func() {
		for pctx.Err() == nil {
			_ = pub.Publish("load", message.NewMessage(watermill.NewUUID(), []byte(`{}`)))
			time.Sleep(2 * time.Millisecond) // a steady rate
		}
	}()
	round := func(expire bool) float64 {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		if expire {
			x, err := pubsub.NewExpirer(s, &pubsub.ExpirerConfig{Topics: []pubsub.TopicRetention{{Topic: "load"}}, Interval: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() { _ = x.Run(rctx) })
		}
		var n atomic.Int64
		for w := range 4 {
			wg.Go(func() {
				for i := 0; rctx.Err() == nil; i++ {
					if _, err := s.Append(rctx, fmt.Sprintf("acct-%d-%d", w, i%50), eventstore.Any, eventstore.NewEvent{Type: "Tick", Data: []byte(`{}`)}); err == nil {
						n.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return float64(n.Load()) / 2
	}
	var with, without []float64
	for range 5 {
		without = append(without, round(false))
		with = append(with, round(true))
	}
	slices.Sort(with)
	slices.Sort(without)
	t.Logf("appends/s, 4 writers, median of 5 interleaved rounds (shared, loaded machine): with the Expirer %.0f, without %.0f (%.2fx)",
		with[2], without[2], with[2]/without[2])
}
