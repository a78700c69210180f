package pubsub_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

// Payloads of every kind come back byte for byte, with their metadata and
// UUID (canonical or not); a republished message is stored once per topic,
// and the same message in two topics is stored in each.
func TestRoundTripAndDeduplication(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	pub, sub := newPubSub(t, s, nil)
	payloads := [][]byte{
		[]byte(`{"a": 1,  "b":[true,null]}`), // JSON, odd spacing kept
		{0xff, 0x00, 0x01, '{'},              // binary
		nil,                                  // empty
		[]byte("plain text"),
		[]byte(`"\u0000"`),
	}
	var sent []*message.Message
	for i, p := range payloads {
		id := watermill.NewUUID()
		if i == 1 {
			id = "not-a-uuid-" + fmt.Sprint(i)
		}
		msg := message.NewMessage(id, p)
		msg.Metadata.Set("k", fmt.Sprint(i))
		msg.Metadata.Set(middleware.CorrelationIDMetadataKey, "corr-1")
		sent = append(sent, msg)
	}
	const topic = "round-trip-topic"
	if err := pub.Publish(topic, sent...); err != nil {
		t.Fatal(err)
	}
	// Republished (one at a time and all together): stored once.
	if err := pub.Publish(topic, sent[0]); err != nil {
		t.Fatalf("republish: %v", err)
	}
	if err := pub.Publish(topic, sent...); err != nil {
		t.Fatalf("republish all: %v", err)
	}
	// The same messages to another topic: stored there too.
	if err := pub.Publish(topic+"-2", sent[0], sent[1]); err != nil {
		t.Fatal(err)
	}
	ch, err := sub.Subscribe(ctxT(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range sent {
		got := receive(t, ch, 30*time.Second)
		if got.UUID != want.UUID || !bytes.Equal(got.Payload, want.Payload) || got.Metadata.Get("k") != fmt.Sprint(i) ||
			got.Metadata.Get(middleware.CorrelationIDMetadataKey) != "corr-1" || len(got.Metadata) != 2 {
			t.Fatalf("message %d: got %s %q %v, want %s %q", i, got.UUID, got.Payload, got.Metadata, want.UUID, want.Payload)
		}
		got.Ack()
	}
	var n int
	for e, err := range s.ReadStream(ctxT(t), pubsub.StreamID(pubsub.DefaultPrefix, topic, ""), 0) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Metadata.CorrelationID != "corr-1" {
			t.Fatalf("correlation id %q", e.Metadata.CorrelationID)
		}
		n++
	}
	if n != len(sent) {
		t.Fatalf("%d events stored, want %d (republished messages stored again)", n, len(sent))
	}
	v, err := s.StreamVersion(ctxT(t), pubsub.StreamID(pubsub.DefaultPrefix, topic+"-2", ""))
	if err != nil || v != 2 {
		t.Fatalf("second topic has %d events (%v), want 2", v, err)
	}
}

// Topics that share a prefix up to a dash are different categories.
func TestTopicsWithDashesStayApart(t *testing.T) {
	t.Parallel()
	if a, b := pubsub.Category("wm.", "a-b"), pubsub.Category("wm.", "a-c"); eventstore.Category(pubsub.StreamID("wm.", "a-b", "k")) != a || a == b {
		t.Fatalf("categories %q %q", a, b)
	}
	s, _ := newStore(t)
	pub, sub := newPubSub(t, s, nil)
	for _, topic := range []string{"orders-eu", "orders-us", "orders"} {
		if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte(`"`+topic+`"`))); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := sub.Subscribe(ctxT(t), "orders-eu")
	if err != nil {
		t.Fatal(err)
	}
	msg := receive(t, ch, 30*time.Second)
	if string(msg.Payload) != `"orders-eu"` {
		t.Fatalf("got %s", msg.Payload)
	}
	msg.Ack()
	// Nothing else comes: another topic's message would arrive at once.
	if err := pub.Publish("orders-eu", message.NewMessage(watermill.NewUUID(), []byte(`"last"`))); err != nil {
		t.Fatal(err)
	}
	if msg := receive(t, ch, 30*time.Second); string(msg.Payload) != `"last"` {
		t.Fatalf("got %s from another topic", msg.Payload)
	}
}

// A nacked message comes again, before any later message; the message's
// context ends with the nack.
func TestNackRedelivers(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	pub, sub := newPubSub(t, s, &pubsub.SubscriberConfig{NackResendSleep: 10 * time.Millisecond})
	var ids []string
	for i := range 3 {
		msg := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprint(i)))
		ids = append(ids, msg.UUID)
		if err := pub.Publish("nack", msg); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := sub.Subscribe(ctxT(t), "nack")
	if err != nil {
		t.Fatal(err)
	}
	first := receive(t, ch, 30*time.Second)
	first.Ack()
	for range 3 {
		m := receive(t, ch, 30*time.Second)
		if m.UUID != ids[1] {
			t.Fatalf("after nack got %s, want %s again", m.UUID, ids[1])
		}
		m.Nack()
		select {
		case <-m.Context().Done():
		case <-time.After(10 * time.Second):
			t.Fatal("message context not cancelled after nack")
		}
	}
	m := receive(t, ch, 30*time.Second)
	if m.UUID != ids[1] {
		t.Fatalf("got %s, want %s", m.UUID, ids[1])
	}
	m.Ack()
	if m := receive(t, ch, 30*time.Second); m.UUID != ids[2] {
		t.Fatalf("got %s, want %s", m.UUID, ids[2])
	}
}

// Close while a message is out (never acked) returns promptly, closes the
// channel, and loses nothing: the same group gets every message not acked.
func TestCloseDuringDelivery(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	pub, _ := newPubSub(t, s, nil)
	const n = 50
	var all []string
	for i := range n {
		msg := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprint(i)))
		all = append(all, msg.UUID)
		if err := pub.Publish("close", msg); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := pubsub.NewSubscriber(s, &pubsub.SubscriberConfig{BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := sub.Subscribe(ctxT(t), "close")
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	for range 20 {
		m := receive(t, ch, 30*time.Second)
		m.Ack()
		acked[m.UUID] = true
	}
	out := receive(t, ch, 30*time.Second) // held, never acked
	start := time.Now()
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %s with a message out", d)
	}
	select {
	case <-out.Context().Done():
	default:
		t.Fatal("outstanding message's context not cancelled by Close")
	}
	if _, open := <-ch; open {
		t.Fatal("channel still open after Close")
	}
	if _, err := sub.Subscribe(ctxT(t), "close"); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	sub2, err := pubsub.NewSubscriber(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	ch2, err := sub2.Subscribe(ctxT(t), "close")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	first := ""
	for len(got) < n-len(acked) {
		m := receive(t, ch2, 30*time.Second)
		if first == "" {
			first = m.UUID
		}
		if !acked[m.UUID] {
			got[m.UUID] = true
		}
		m.Ack()
	}
	for _, id := range all {
		if !acked[id] && !got[id] {
			t.Fatalf("message %s lost", id)
		}
	}
	// Resumed at a batch boundary after the last commit: at most one
	// batch of acked messages again.
	if i := indexOf(all, first); i < 20-7 || i > 20 {
		t.Fatalf("resumed at message %d, want within the last batch before 20", i)
	}
}

func indexOf(xs []string, x string) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}

// Each consumer group gets every message; a group new to a topic starts at
// the topic's first message, published before the group existed.
func TestNewGroupStartsAtFirstMessage(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	pub, _ := newPubSub(t, s, nil)
	for i := range 5 {
		if err := pub.Publish("groups", message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
	for _, group := range []string{"", "billing", "shipping/eu"} {
		sub, err := pubsub.NewSubscriber(s, &pubsub.SubscriberConfig{ConsumerGroup: group})
		if err != nil {
			t.Fatal(err)
		}
		ch, err := sub.Subscribe(ctxT(t), "groups")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			m := receive(t, ch, 30*time.Second)
			if string(m.Payload) != fmt.Sprint(i) {
				t.Fatalf("group %q: message %d is %s", group, i, m.Payload)
			}
			m.Ack()
		}
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.SubscriptionStatuses(ctxT(t), pubsub.SubscriptionName(pubsub.DefaultPrefix, "billing", "groups"))
	if err != nil || len(st) != 1 || st[0].EventsHandled != 5 {
		t.Fatalf("billing status %+v %v", st, err)
	}
}

// Messages published in a caller's tx appear only if it commits, together
// with the tx's other writes; a duplicate inside the tx does not abort it.
func TestPublishInTx(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	pub, sub := newPubSub(t, s, nil)
	ctx := ctxT(t)
	table := pgx.Identifier{db.Schema, "read_model"}.Sanitize()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE `+table+` (v text)`); err != nil {
		t.Fatal(err)
	}
	publishIn := func(commit bool, payload string) {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `INSERT INTO `+table+` VALUES ($1)`, payload); err != nil {
			t.Fatal(err)
		}
		msg := message.NewMessage(watermill.NewUUID(), []byte(payload))
		msg.SetContext(pubsub.ContextWithTx(ctx, tx))
		if err := pub.Publish("tx", msg); err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish("tx", msg); err != nil { // duplicate: skipped, tx intact
			t.Fatal(err)
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	publishIn(false, `"rolled back"`)
	publishIn(true, `"committed"`)
	ch, err := sub.Subscribe(ctx, "tx")
	if err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch, 30*time.Second)
	if string(m.Payload) != `"committed"` {
		t.Fatalf("got %s", m.Payload)
	}
	m.Ack()
	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("read model rows %d %v", rows, err)
	}
	if v, err := s.StreamVersion(ctx, pubsub.StreamID(pubsub.DefaultPrefix, "tx", "")); err != nil || v != 1 {
		t.Fatalf("stream version %d %v", v, err)
	}
}

// Watermill's router with Retry and PoisonQueue consumes from the
// Subscriber: a message that fails once is retried and handled; one that
// always fails goes to the poison topic (published through our Publisher)
// and the rest go on, in order.
func TestRouterRetryPoisonQueue(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	pub, sub := newPubSub(t, s, nil)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	poison, err := middleware.PoisonQueue(pub, "poison")
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(poison, middleware.Retry{MaxRetries: 2, InitialInterval: time.Millisecond}.Middleware)
	var attempts [5]atomic.Int32
	handled := make(chan string, 100)
	router.AddNoPublisherHandler("h", "work", sub, func(msg *message.Message) error {
		i := int(msg.Payload[0] - '0')
		n := attempts[i].Add(1)
		switch {
		case i == 1 && n == 1:
			return errors.New("flaky")
		case i == 3:
			return errors.New("always fails")
		}
		handled <- string(msg.Payload)
		return nil
	})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	<-router.Running()
	for i := range 5 {
		if err := pub.Publish("work", message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	for len(order) < 4 {
		select {
		case p := <-handled:
			order = append(order, p)
		case <-time.After(30 * time.Second):
			t.Fatalf("handled only %v", order)
		}
	}
	if strings.Join(order, ",") != "0,1,2,4" {
		t.Fatalf("handled %v, want 0,1,2,4", order)
	}
	if a := attempts[3].Load(); a != 3 {
		t.Fatalf("poisoned message tried %d times, want 3", a)
	}
	psub, err := pubsub.NewSubscriber(s, &pubsub.SubscriberConfig{ConsumerGroup: "inspect"})
	if err != nil {
		t.Fatal(err)
	}
	defer psub.Close()
	pch, err := psub.Subscribe(ctx, "poison")
	if err != nil {
		t.Fatal(err)
	}
	p := receive(t, pch, 30*time.Second)
	if string(p.Payload) != "3" || p.Metadata.Get(middleware.PoisonedTopicKey) != "work" || !strings.Contains(p.Metadata.Get(middleware.ReasonForPoisonedKey), "always fails") {
		t.Fatalf("poison message %s %v", p.Payload, p.Metadata)
	}
	p.Ack()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The router acked the poisoned message: the group's checkpoint is past
	// all five.
	pgtest.WaitFor(t, "checkpoint past all messages", 30*time.Second, func() bool {
		st, err := s.SubscriptionStatuses(context.Background(), pubsub.SubscriptionName(pubsub.DefaultPrefix, "", "work"))
		return err == nil && len(st) == 1 && st[0].EventsHandled == 5
	})
}

// TestAckThenCloseRecordsTheAck: a message acked right before Close is
// recorded as handled (a clean stop does not deliver it again), however the
// ack and the end of the subscription race in the Subscriber.
func TestAckThenCloseRecordsTheAck(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	pub, _ := newPubSub(t, s, nil)
	if err := pub.Publish("ack-close", message.NewMessage(watermill.NewUUID(), []byte(`1`))); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		group := fmt.Sprint("g", i)
		sub, err := pubsub.NewSubscriber(s, &pubsub.SubscriberConfig{ConsumerGroup: group})
		if err != nil {
			t.Fatal(err)
		}
		ch, err := sub.Subscribe(ctxT(t), "ack-close")
		if err != nil {
			t.Fatal(err)
		}
		receive(t, ch, 30*time.Second).Ack()
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		st, err := s.SubscriptionStatuses(ctxT(t), pubsub.SubscriptionName(pubsub.DefaultPrefix, group, "ack-close"))
		if err != nil || len(st) != 1 || st[0].EventsHandled != 1 {
			t.Fatalf("round %d: status %+v %v; want the acked message handled", i, st, err)
		}
	}
}
