package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
)

// BenchmarkRelayThroughput relays 20,000 events (200 streams) to NATS
// JetStream and, in the same run, publishes the same messages directly
// with the same publisher: once as the relay does (64 streams at a time,
// each stream in order) and once from one goroutine. It runs once
// whatever b.N is:
//
//	go test -run '^$' -bench BenchmarkRelayThroughput -benchtime 1x ./outbox/
func BenchmarkRelayThroughput(b *testing.B) {
	const streams, perStream = 200, 100
	const total = streams * perStream
	ctx := context.Background()
	store, _ := newStore(b)
	appendAll(ctx, b, store, "bench", streams, perStream, 20)
	var events []eventstore.Event
	after := eventstore.Position{}
	for len(events) < total {
		page, err := store.ReadAll(ctx, after, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(page.Events) == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		events = append(events, page.Events...)
		after = page.Next
	}
	pub := newNATSPublisher(b)

	// Each variant gets its own JetStream stream, so Nats-Msg-Id
	// deduplication never turns one variant's messages into no-ops.
	direct := func(concurrency int) float64 {
		topic := uniqueTopic("bench")
		createJetStream(b, topic)
		byStream := map[string][]*message.Message{}
		var order []string
		for _, e := range events {
			if _, ok := byStream[e.StreamID]; !ok {
				order = append(order, e.StreamID)
			}
			byStream[e.StreamID] = append(byStream[e.StreamID], outbox.NewMessage(e))
		}
		start := time.Now()
		sem := make(chan struct{}, concurrency)
		var wg sync.WaitGroup
		for _, s := range order {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				for _, m := range byStream[s] {
					if err := pub.Publish(topic, m); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return total / time.Since(start).Seconds()
	}
	relayed := func() float64 {
		topic := uniqueTopic("bench")
		createJetStream(b, topic)
		relay := outbox.NewRelay(store, pub, &outbox.Config{Name: topic, Topic: func(eventstore.Event) string { return topic }})
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- relay.Run(rctx) }()
		for relay.Health().Published < total {
			time.Sleep(time.Millisecond)
		}
		rate := total / time.Since(start).Seconds()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		return rate
	}
	b.ResetTimer()
	parallel := direct(64)
	serial := direct(1)
	strata := relayed()
	b.ReportMetric(strata, "relay_msgs/s")
	b.ReportMetric(parallel, "direct64_msgs/s")
	b.ReportMetric(serial, "direct1_msgs/s")
	b.ReportMetric(strata/parallel, "x_baseline")
	b.Logf("relay %.0f msgs/s; same publisher directly, 64 streams at once: %.0f msgs/s (relay = %.2fx); one goroutine: %.0f msgs/s",
		strata, parallel, strata/parallel, serial)
}

// BenchmarkRelayLatency measures the time from Append returning to a
// NATS JetStream consumer receiving the message (500 events appended one
// at a time, 2 ms apart), beside the same consumer's latency for messages
// published directly with the same publisher. It runs once whatever b.N is:
//
//	go test -run '^$' -bench BenchmarkRelayLatency -benchtime 1x ./outbox/
func BenchmarkRelayLatency(b *testing.B) {
	const n = 500
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, _ := newStore(b)
	pub := newNATSPublisher(b)

	measure := func(send func(topic string, i int) string) (p50, p99 time.Duration) {
		topic := uniqueTopic("lat")
		createJetStream(b, topic)
		r := newReceived()
		consume(ctx, b, newNATSSubscriber(b, topic), topic, r, nil)
		sent := map[string]time.Time{}
		for i := range n {
			t0 := time.Now()
			sent[send(topic, i)] = t0
			time.Sleep(2 * time.Millisecond)
		}
		r.waitFor(b, n, 60*time.Second)
		r.mu.Lock()
		defer r.mu.Unlock()
		lat := make([]time.Duration, 0, n)
		for id, t0 := range sent {
			lat = append(lat, r.at[id].Sub(t0))
		}
		slices.Sort(lat)
		return lat[len(lat)/2], lat[len(lat)*99/100]
	}
	b.ResetTimer()
	var topic string
	setTopic := func(eventstore.Event) string { return topic }
	relayP50, relayP99 := func() (time.Duration, time.Duration) {
		topic = uniqueTopic("lat")
		relay := outbox.NewRelay(store, pub, &outbox.Config{Name: "lat", Topic: setTopic})
		createJetStream(b, topic)
		r := newReceived()
		consume(ctx, b, newNATSSubscriber(b, topic), topic, r, nil)
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- relay.Run(rctx) }()
		defer func() { stop(); <-done }()
		// Wait until the relay runs: a first event must come through.
		if _, err := store.Append(ctx, "warmup", eventstore.NoStream, eventstore.NewEvent{Type: "Ticked", Data: []byte(`{}`)}); err != nil {
			b.Fatal(err)
		}
		r.waitFor(b, 1, 30*time.Second)
		sent := map[string]time.Time{}
		for i := range n {
			res, err := store.Append(ctx, fmt.Sprintf("lat-%d", i%50), eventstore.Any, eventstore.NewEvent{Type: "Ticked", Data: []byte(`{}`)})
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			sent[fmt.Sprintf("lat-%d/%d", i%50, res.Version)] = t0
			time.Sleep(2 * time.Millisecond)
		}
		r.waitFor(b, n+1, 60*time.Second)
		r.mu.Lock()
		defer r.mu.Unlock()
		lat := make([]time.Duration, 0, n)
		for key, t0 := range sent {
			lat = append(lat, r.at[r.ids[key]].Sub(t0))
		}
		slices.Sort(lat)
		return lat[len(lat)/2], lat[len(lat)*99/100]
	}()
	directP50, directP99 := measure(func(topic string, i int) string {
		e := eventstore.Event{ID: uuid.New(), StreamID: fmt.Sprintf("lat-%d", i%50), Version: int64(i/50 + 1), Type: "Ticked", Data: []byte(`{}`)}
		msg := outbox.NewMessage(e)
		if err := pub.Publish(topic, msg); err != nil {
			b.Fatal(err)
		}
		return msg.UUID
	})
	b.ReportMetric(float64(relayP50.Microseconds())/1000, "relay_p50_ms")
	b.ReportMetric(float64(relayP99.Microseconds())/1000, "relay_p99_ms")
	b.ReportMetric(float64(directP50.Microseconds())/1000, "direct_p50_ms")
	b.ReportMetric(float64(directP99.Microseconds())/1000, "direct_p99_ms")
	b.Logf("Append → consumer via relay: p50 %v p99 %v; Publish → consumer directly: p50 %v p99 %v",
		relayP50, relayP99, directP50, directP99)
}
