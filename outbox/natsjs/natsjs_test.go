package natsjs_test

import (
	"fmt"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/natsjs"
)

// TestMarshaler checks the subject per stream, the headers and the round
// trip, and the classification of permanent errors.
func TestMarshaler(t *testing.T) {
	msg := message.NewMessage("id-1", []byte(`{}`))
	msg.Metadata.Set(outbox.MetaPartitionKey, "order 4.2*>")
	msg.Metadata.Set(outbox.MetaStream, "order 4.2*>")
	m := &natsjs.Marshaler{SubjectPerStream: true}
	nm, err := m.Marshal("order", msg)
	if err != nil {
		t.Fatal(err)
	}
	if nm.Subject != "order.order_4_2__" {
		t.Errorf("subject %q", nm.Subject)
	}
	back, err := m.Unmarshal(nm)
	if err != nil {
		t.Fatal(err)
	}
	if back.UUID != "id-1" || back.Metadata.Get(outbox.MetaStream) != "order 4.2*>" {
		t.Errorf("round trip: %s %v", back.UUID, back.Metadata)
	}
	if nm, _ := (&natsjs.Marshaler{}).Marshal("order", msg); nm.Subject != "order" {
		t.Errorf("subject without SubjectPerStream: %q", nm.Subject)
	}
	if !natsjs.Permanent(fmt.Errorf("publish: %w", nats.ErrMaxPayload)) || natsjs.Permanent(nats.ErrTimeout) || natsjs.Permanent(nats.ErrNoResponders) {
		t.Error("Permanent misclassifies errors")
	}
	if cfg := natsjs.PublisherConfig("nats://x", nil); !cfg.JetStream.TrackMsgId {
		t.Error("Nats-Msg-Id tracking is off")
	}
}
