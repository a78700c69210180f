package pubsub_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

// By default a consumer group reads up to 1000 messages at once and moves
// its checkpoint once they are all acked: with 250 messages published in
// one call (one transaction, so read in one page), 150 acks store no
// checkpoint (in batches of 100 they would have stored 100), and the
// 250th stores 250.
func TestDefaultBatchIsAThousandMessages(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	pub, sub := newPubSub(t, s, nil)
	msgs := make([]*message.Message, 250)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	}
	if err := pub.Publish("batch", msgs...); err != nil {
		t.Fatal(err)
	}
	ch, err := sub.Subscribe(ctxT(t), "batch")
	if err != nil {
		t.Fatal(err)
	}
	handled := func() int64 {
		st, err := s.SubscriptionStatuses(ctxT(t), pubsub.SubscriptionName(pubsub.DefaultPrefix, "", "batch"))
		if err != nil || len(st) != 1 {
			t.Fatalf("statuses %+v, %v", st, err)
		}
		return st[0].EventsHandled
	}
	for range 150 {
		receive(t, ch, time.Minute).Ack()
	}
	held := receive(t, ch, time.Minute) // the 151st, not acked yet
	time.Sleep(300 * time.Millisecond)  // time for a checkpoint to be stored, if one were due
	if n := handled(); n != 0 {
		t.Fatalf("checkpoint moved past %d messages after 150 acks; want it to wait for the batch of 250", n)
	}
	held.Ack()
	for range 99 {
		receive(t, ch, time.Minute).Ack()
	}
	pgtest.WaitFor(t, "the checkpoint after the batch", time.Minute, func() bool { return handled() == 250 })
}
