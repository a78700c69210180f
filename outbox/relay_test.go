package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/natsjs"
)

// runRelay runs relay until the test ends, failing the test if Run
// returns an error.
func runRelay(t *testing.T, relay *outbox.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
}

func newGoChannel(t *testing.T) *gochannel.GoChannel {
	// BlockPublishUntilSubscriberAck makes Publish return only once the
	// subscriber acked, as a broker's acknowledgement would; without it
	// GoChannel delivers each message from its own goroutine, in any order.
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubsub.Close() })
	return pubsub
}

// TestRelayMessages checks what the relay publishes: UUID = event ID, the
// payload byte for byte, every metadata field, topics by category, and a
// Mapper that filters and transforms.
func TestRelayMessages(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, _ := newStore(t)
	pubsub := newGoChannel(t)
	orders, invoices := newReceived(), newReceived()
	consume(ctx, t, pubsub, "order", orders, nil)
	consume(ctx, t, pubsub, "invoice", invoices, nil)

	id := uuid.New()
	placed := eventstore.NewEvent{ID: id, Type: "OrderPlaced", SchemaVersion: 2, Data: []byte(`{"total": 12.5}`),
		Metadata: eventstore.Metadata{CorrelationID: "req-1", CausationID: "cmd-9", Values: map[string]string{"traceparent": testTraceparent, "stream": "spoof"}}}
	res, err := store.Append(ctx, "order-42", eventstore.NoStream, placed, eventstore.NewEvent{Type: "OrderAudited", Data: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "invoice-7", eventstore.NoStream, eventstore.NewEvent{Type: "InvoiceSent", Data: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	relay := outbox.NewRelay(store, pubsub, &outbox.Config{Mapper: func(e eventstore.Event) (*message.Message, error) {
		switch e.Type {
		case "OrderAudited":
			return nil, nil // internal: not published
		case "InvoiceSent":
			msg := outbox.NewMessage(e)
			msg.Payload = []byte(`{"integration":true}`)
			return msg, nil
		}
		return outbox.NewMessage(e), nil
	}})
	runRelay(t, relay)
	orders.waitFor(t, 1, 30*time.Second)
	invoices.waitFor(t, 1, 30*time.Second)

	orders.mu.Lock()
	md := orders.meta[id.String()]
	orders.mu.Unlock()
	if md == nil {
		t.Fatalf("message UUID is not the event ID %s: got %v", id, orders.ids)
	}
	want := map[string]string{
		outbox.MetaEventID: id.String(), outbox.MetaStream: "order-42", outbox.MetaVersion: "1", outbox.MetaType: "OrderPlaced", outbox.MetaSchemaVersion: "2",
		outbox.MetaCorrelationID: "req-1", outbox.MetaCausationID: "cmd-9", outbox.MetaPartitionKey: "order-42", "traceparent": testTraceparent,
	}
	for k, v := range want {
		if md.Get(k) != v {
			t.Errorf("metadata %s = %q, want %q", k, md.Get(k), v)
		}
	}
	if p, err := eventstore.ParsePosition(md.Get(outbox.MetaPosition)); err != nil || p.IsZero() || res.Position.Less(p) {
		t.Errorf("metadata position %q (%v), want at most %v", md.Get(outbox.MetaPosition), err, res.Position)
	}
	if _, err := time.Parse(time.RFC3339Nano, md.Get(outbox.MetaRecordedAt)); err != nil {
		t.Errorf("recorded_at: %v", err)
	}
	// The filtered event moved the checkpoint but was not published.
	if d := orders.distinct(); d != 1 {
		t.Errorf("topic order got %d messages, want 1 (OrderAudited is filtered)", d)
	}
	invoices.mu.Lock()
	defer invoices.mu.Unlock()
	for _, m := range invoices.meta {
		if m.Get(outbox.MetaType) != "InvoiceSent" {
			t.Errorf("invoice topic got %v", m)
		}
	}
}

// TestRelayPayloadByteForByte checks that the payload is the stored JSON.
func TestRelayPayloadByteForByte(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, _ := newStore(t)
	pubsub := newGoChannel(t)
	ch, err := pubsub.Subscribe(ctx, "doc")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{ "b": 2,  "a": [1, 2.50] }`)
	if _, err := store.Append(ctx, "doc-1", eventstore.NoStream, eventstore.NewEvent{Type: "Written", Data: data}); err != nil {
		t.Fatal(err)
	}
	runRelay(t, outbox.NewRelay(store, pubsub, nil))
	select {
	case msg := <-ch:
		msg.Ack()
		if string(msg.Payload) != string(data) || !json.Valid(msg.Payload) {
			t.Errorf("payload %q, want %q", msg.Payload, data)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no message")
	}
}

// TestRelayProcessesSharePartitions runs two relay processes (two owners)
// on one relay split in 4 partitions: each must own some partitions, and
// together they publish every event, each stream in order.
func TestRelayProcessesSharePartitions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, _ := newStore(t)
	pubsub := newGoChannel(t)
	r := newReceived()
	consume(ctx, t, pubsub, "shard", r, nil)
	for _, owner := range []string{"a", "b"} {
		runRelay(t, outbox.NewRelay(store, pubsub, &outbox.Config{Name: "shared", Partitions: 4, Owner: owner, LeaseTTL: time.Second}))
	}
	appendAll(ctx, t, store, "shard", 40, 10, 2)
	r.waitFor(t, 400, 60*time.Second)
	r.check(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := store.SubscriptionStatuses(ctx, outbox.SubscriptionPrefix+"shared")
		if err != nil {
			t.Fatal(err)
		}
		owners := map[string]int{}
		for _, s := range st {
			owners[s.Owner]++
		}
		if owners["a"] == 2 && owners["b"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition owners %v, want 2 each for a and b", owners)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRelayDeadLettersPermanentRejection appends an event larger than the
// NATS server accepts: the real broker refuses it, natsjs.Permanent calls
// that permanent, and after MaxAttempts it becomes a dead letter with its
// stream's later event parked behind it, while the other streams flow on.
func TestRelayDeadLettersPermanentRejection(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, _ := newStore(t)
	topic := uniqueTopic("poison")
	createJetStream(t, topic)
	r := newReceived()
	consume(ctx, t, newNATSSubscriber(t, topic), topic, r, nil)

	big := `{"blob":"` + strings.Repeat("x", 1<<20-200) + `"}`
	small := func() eventstore.NewEvent { return eventstore.NewEvent{Type: "Small", Data: []byte(`{}`)} }
	if _, err := store.Append(ctx, "big-1", eventstore.NoStream, small()); err != nil {
		t.Fatal(err)
	}
	bigRes, err := store.Append(ctx, "big-1", eventstore.Exactly(1), eventstore.NewEvent{Type: "Huge", Data: []byte(big)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "big-1", eventstore.Exactly(2), small()); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := store.Append(ctx, fmt.Sprintf("other-%d", i), eventstore.NoStream, small(), small()); err != nil {
			t.Fatal(err)
		}
	}
	relay := outbox.NewRelay(store, newNATSPublisher(t), &outbox.Config{
		Topic: func(eventstore.Event) string { return topic }, Permanent: natsjs.Permanent, MaxAttempts: 3, RetryBackoff: 10 * time.Millisecond,
	})
	runRelay(t, relay)
	// Through a gap-safe reader and a broker on a loaded machine: 60s.
	r.waitFor(t, 11, 60*time.Second) // big-1 v1 and 5×2 others

	var dl []eventstore.DeadLetter
	deadline := time.Now().Add(60 * time.Second)
	for len(dl) < 2 && time.Now().Before(deadline) {
		if dl, err = store.DeadLetters(ctx, relay.SubscriptionName()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(dl) != 2 {
		t.Fatalf("dead letters %+v, want the huge event and the one parked behind it", dl)
	}
	if dl[0].StreamID != "big-1" || dl[0].Position.Less(bigRes.Position) || bigRes.Position.Less(dl[0].Position) || !strings.Contains(dl[0].Error, "maximum payload") || dl[0].Attempts != 3 {
		t.Errorf("first dead letter %+v, want big-1 v2 refused for its payload after 3 attempts", dl[0])
	}
	if dl[1].StreamID != "big-1" {
		t.Errorf("second dead letter %+v, want big-1 v3 parked behind the first", dl[1])
	}
	// The parked stream's v3 never overtook v2.
	r.mu.Lock()
	if r.max["big-1"] != 1 {
		t.Errorf("big-1 reached version %d on the broker, want 1", r.max["big-1"])
	}
	r.mu.Unlock()
	r.check(t)
}

// TestDeduplicateFailsTwiceThenSucceeds relays one event through NATS to a
// consumer whose handler writes its effect and then fails twice: the
// broker redelivers, the failed attempts roll back, and one effect stays.
// A further delivery of the same message has no effect either.
func TestDeduplicateFailsTwiceThenSucceeds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, db := newStore(t)
	topic := uniqueTopic("flaky")
	createJetStream(t, topic)
	fx := newEffects(t, db)
	dedup, err := outbox.NewDeduplicator(db.Pool, &outbox.DeduplicatorConfig{Consumer: "flaky", Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	attempts := 0
	handler := dedup.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		if _, err := fx.handler(msg); err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts <= 2 {
			return nil, errors.New("flaky failure after the effect was written")
		}
		return nil, nil
	})
	r := newReceived()
	consume(ctx, t, newNATSSubscriber(t, topic), topic, r, handler)
	eventID := uuid.New()
	if _, err := store.Append(ctx, "pay-1", eventstore.NoStream, eventstore.NewEvent{ID: eventID, Type: "Paid", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	runRelay(t, outbox.NewRelay(store, newNATSPublisher(t), &outbox.Config{Topic: func(eventstore.Event) string { return topic }}))

	// Wait for what is asserted: the third attempt's transaction committed
	// (the message is recorded as processed), not for the handler to have
	// counted the attempt, which happens before that commit.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := dedup.Processed(ctx, eventID.String())
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			n := attempts
			mu.Unlock()
			t.Fatalf("message not processed after %d handler attempts", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	if attempts != 3 {
		t.Errorf("handler ran %d times, want 3", attempts)
	}
	mu.Unlock()
	fx.check(t, 1)
	r.mu.Lock()
	var msg *message.Message
	for key, id := range r.ids {
		msg = message.NewMessage(id, nil)
		msg.Metadata = r.meta[id]
		_ = key
	}
	r.mu.Unlock()
	if _, err := handler(msg); err != nil { // a late redelivery
		t.Fatal(err)
	}
	fx.check(t, 1)
	if ok, err := dedup.Processed(ctx, msg.UUID); err != nil || !ok {
		t.Errorf("Processed(%s) = %v, %v", msg.UUID, ok, err)
	}
}

// TestDeduplicateConcurrentDeliveries delivers one message from 8
// goroutines at once, as a broker redelivering during a slow handler may:
// exactly one effect commits.
func TestDeduplicateConcurrentDeliveries(t *testing.T) {
	t.Parallel()
	_, db := newStore(t)
	fx := newEffects(t, db)
	h := outbox.Deduplicate(db.Pool, db.Schema, "race")(fx.handler)
	id := uuid.NewString()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			<-start
			msg := message.NewMessage(id, nil)
			msg.Metadata.Set(outbox.MetaStream, "s-1")
			msg.Metadata.Set(outbox.MetaVersion, "1")
			if _, err := h(msg); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	fx.check(t, 1)
}

// TestDeduplicateExpire forgets old message IDs and only those; an expired
// ID is handled again (which is why olderThan must exceed the broker's
// redelivery window).
func TestDeduplicateExpire(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, db := newStore(t)
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	d, err := outbox.NewDeduplicator(db.Pool, &outbox.DeduplicatorConfig{Consumer: "exp", Schema: db.Schema, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	h := d.Middleware(func(*message.Message) ([]*message.Message, error) { runs++; return nil, nil })
	for _, id := range []string{"old-1", "old-2"} {
		if _, err := h(message.NewMessage(id, nil)); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(48 * time.Hour)
	if _, err := h(message.NewMessage("new-1", nil)); err != nil {
		t.Fatal(err)
	}
	n, err := d.Expire(ctx, 24*time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("Expire = %d, %v; want 2", n, err)
	}
	if ok, _ := d.Processed(ctx, "new-1"); !ok {
		t.Error("new-1 expired too early")
	}
	if ok, _ := d.Processed(ctx, "old-1"); ok {
		t.Error("old-1 not expired")
	}
	if _, err := h(message.NewMessage("new-1", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := h(message.NewMessage("old-1", nil)); err != nil {
		t.Fatal(err)
	}
	if runs != 4 {
		t.Errorf("handler ran %d times, want 4 (3 first deliveries + the expired old-1)", runs)
	}
	if _, err := outbox.NewDeduplicator(db.Pool, nil); err == nil {
		t.Error("a deduplicator without a consumer name was accepted")
	}
}

// cancelOnPublish cancels the relay's context from inside Publish, the
// moment a shutdown arrives while a batch is being published.
type cancelOnPublish struct {
	message.Publisher
	cancel context.CancelFunc
}

func (p cancelOnPublish) Publish(topic string, msgs ...*message.Message) error {
	p.cancel()
	return p.Publisher.Publish(topic, msgs...)
}

// A relay stopped while it publishes a batch reports no broker failure:
// the abandoned batch is republished by the next run, and Health stays
// healthy.
func TestRelayShutdownIsNotAFailure(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	for i := range 3 {
		if _, err := store.Append(t.Context(), fmt.Sprintf("s-%d", i), eventstore.NoStream, eventstore.NewEvent{Type: "E", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubsub.Close() })
	relay := outbox.NewRelay(store, cancelOnPublish{pubsub, cancel}, nil)
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the relay published nothing in 30s")
	}
	if h := relay.Health(); !h.Healthy || h.LastError != nil {
		t.Fatalf("health after a shutdown mid-batch: %+v", h)
	}
}

// failingPublisher refuses every message, as a broker that is down.
type failingPublisher struct{}

func (failingPublisher) Publish(string, ...*message.Message) error { return errors.New("broker down") }
func (failingPublisher) Close() error                              { return nil }

// A failed publish names the event's stream even when the Mapper builds
// messages without the relay's metadata.
func TestRelayPublishErrorNamesStream(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	if _, err := store.Append(t.Context(), "plain-7", eventstore.NoStream, eventstore.NewEvent{Type: "E", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	relay := outbox.NewRelay(store, failingPublisher{}, &outbox.Config{
		Mapper: func(e eventstore.Event) (*message.Message, error) {
			return message.NewMessage(e.ID.String(), e.Data), nil
		},
	})
	runRelay(t, relay)
	deadline := time.Now().Add(30 * time.Second)
	for relay.Health().Healthy && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	h := relay.Health()
	if h.LastError == nil || !strings.Contains(h.LastError.Error(), `stream "plain-7"`) {
		t.Fatalf("health while the broker refuses: %+v", h)
	}
}
