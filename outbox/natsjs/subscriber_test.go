package natsjs_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/natsjs"
)

func natsURL() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// deleteStreamAtEnd removes the JetStream stream a test provisioned.
func deleteStreamAtEnd(t *testing.T, name string) {
	t.Cleanup(func() { deleteStream(name) })
}

// deleteStream removes a JetStream stream, if it can.
func deleteStream(name string) {
	nc, err := nats.Connect(natsURL())
	if err != nil {
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = js.DeleteStream(ctx, name)
}

// TestSubscriberKeepsStreamOrder relays 4 streams × 25 events, interleaved,
// through the real NATS server with one subject per stream, and consumes
// them with NewSubscriber (stream and consumer provisioned by the flag),
// nacking some deliveries: every message arrives, each stream in version
// order, a nacked message again before its stream's next one; a second
// subscriber of the same durable name resumes after the acknowledged ones.
func TestSubscriberKeepsStreamOrder(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topic := fmt.Sprintf("natsorder%d", rand.Uint32())
	deleteStreamAtEnd(t, topic)
	const streams, per = 4, 25
	for v := range per {
		for s := range streams {
			_, err := store.Append(ctx, fmt.Sprintf("%s-%d", topic, s), eventstore.Any, eventstore.NewEvent{Type: "Tick", Data: fmt.Appendf(nil, `{"v":%d}`, v+1)})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	pub, err := natsjs.NewPublisher(natsURL(), &natsjs.Config{SubjectPerStream: true, AutoProvision: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	relay := outbox.NewRelay(store, pub, &outbox.Config{Name: topic, Permanent: natsjs.Permanent})
	rctx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(rctx) }()
	defer func() { stopRelay(); <-relayDone }()

	if _, err := natsjs.NewSubscriber(natsURL(), nil); err == nil {
		t.Error("a subscriber without a durable name was made")
	}
	if _, err := natsjs.NewSubscriber(natsURL(), &natsjs.SubscriberConfig{Durable: "a.b"}); err == nil {
		t.Error("a durable name with '.' was accepted")
	}
	cfg := &natsjs.SubscriberConfig{Durable: "billing", SubjectPerStream: true, AutoProvision: true, AckWait: 5 * time.Second}
	last := map[string]int{}
	received, nacked := 0, 0
	consume := func(limit int) {
		sub, err := natsjs.NewSubscriber(natsURL(), cfg)
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
	consume(streams * per / 2) // a first process, stopped half-way
	consume(streams * per)     // the next one resumes from the durable's position
	if nacked == 0 {
		t.Error("no message was nacked")
	}
	for s := range streams {
		if got := last[fmt.Sprintf("%s-%d", topic, s)]; got != per {
			t.Errorf("stream %d: last version %d, want %d", s, got, per)
		}
	}
}
