package pubsub_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

func newStore(t testing.TB) (*eventstore.Store, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	return eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema}), db
}

func newPubSub(t testing.TB, s *eventstore.Store, cfg *pubsub.SubscriberConfig) (*pubsub.Publisher, *pubsub.Subscriber) {
	t.Helper()
	pub, err := pubsub.NewPublisher(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := pubsub.NewSubscriber(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pub.Close()
		_ = sub.Close()
	})
	return pub, sub
}

// receive waits for the next message on ch, failing after d.
func receive(t testing.TB, ch <-chan *message.Message, d time.Duration) *message.Message {
	t.Helper()
	select {
	case msg, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return msg
	case <-time.After(d):
		t.Fatalf("no message within %s", d)
	}
	return nil
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
