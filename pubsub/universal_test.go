package pubsub_test

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/strata-go/strata/pubsub"
)

// TestUniversal runs Watermill's own conformance suite for Pub/Subs.
//
// Features, chosen honestly:
//   - ConsumerGroups: durable groups, each with its own checkpoint.
//   - GuaranteedOrder: a topic is one stream by default, read in log order,
//     one message at a time per partition, next only after an ack.
//   - Persistent: messages live in Postgres.
//   - ExactlyOnceDelivery is false: after a crash or Close, the acked
//     messages of an uncommitted batch come again (at-least-once).
//   - NewSubscriberReceivesOldMessages is false: a new Subscriber of the
//     same (default) group continues from the group's checkpoint; a new
//     group starts at the topic's first message (tested in
//     TestNewGroupStartsAtFirstMessage).
//   - RestartServiceCommand is nil here: restarting Postgres is a fault
//     test (TestPostgresRestart).
func TestUniversal(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	var mu sync.Mutex
	constructor := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		mu.Lock()
		defer mu.Unlock()
		pub, err := pubsub.NewPublisher(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := pubsub.NewSubscriber(s, &pubsub.SubscriberConfig{
			ConsumerGroup:   group,
			NackResendSleep: time.Millisecond,
			PollInterval:    200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		// Not every test of the suite closes what it was given: closing
		// at the test's end stops its subscriptions before the store's
		// schema is dropped (Close is idempotent).
		t.Cleanup(func() {
			_ = sub.Close()
			_ = pub.Close()
		})
		return pub, sub
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:  true,
		GuaranteedOrder: true,
		Persistent:      true,
		// The full sizes (10,000 messages from 20 publishers, …) take
		// about 20 s under -race: they run with the fault tests.
		ForceShort: testing.Short() || os.Getenv("STRATA_FAULT_TESTS") != "1",
	},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return constructor(t, "") },
		constructor,
	)
}
