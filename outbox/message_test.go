package outbox_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
)

// TestEventFromMessageRoundTrip: EventFromMessage(NewMessage(e)) is e,
// field for field, with and without metadata values, correlation,
// causation, position and recorded time, and whatever UUID a mapper gave
// the message.
func TestEventFromMessageRoundTrip(t *testing.T) {
	t.Parallel()
	recorded := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))
	full := eventstore.Event{
		ID:            uuid.Must(uuid.NewV7()),
		StreamID:      "order-42",
		Version:       7,
		Position:      eventstore.Position{TxID: 981234, Seq: 5521},
		Type:          "OrderPlaced",
		SchemaVersion: 2,
		Data:          []byte(`{"total_cents":2599,"currency":"EUR"}`),
		Metadata: eventstore.Metadata{
			CorrelationID: "req-7",
			CausationID:   "cmd-9",
			Values:        map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "user": "ann"},
		},
		RecordedAt: recorded,
	}
	bare := eventstore.Event{ID: uuid.New(), StreamID: "payment-1", Version: 1, Type: "PaymentCompleted", SchemaVersion: 1, Data: []byte(`{}`)}
	for _, e := range []eventstore.Event{full, bare} {
		msg := outbox.NewMessage(e)
		got, err := outbox.EventFromMessage(msg)
		if err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
		if !got.RecordedAt.Equal(e.RecordedAt) {
			t.Fatalf("%s: recorded at %v, want %v", e.Type, got.RecordedAt, e.RecordedAt)
		}
		got.RecordedAt = e.RecordedAt
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", got, e)
		}

		// A mapper may give the message another UUID: the event ID stays.
		msg.UUID = uuid.NewString()
		if got, err := outbox.EventFromMessage(msg); err != nil || got.ID != e.ID {
			t.Fatalf("%s with another message UUID: ID %v, %v; want %v", e.Type, got.ID, err, e.ID)
		}
	}
}

// TestEventFromMessageRefusesOtherMessages: messages without what an event
// needs return ErrNotEvent naming the field; a message from a relay that
// did not set MetaEventID falls back to the message UUID.
func TestEventFromMessageRefusesOtherMessages(t *testing.T) {
	t.Parallel()
	e := eventstore.Event{ID: uuid.New(), StreamID: "order-1", Version: 3, Position: eventstore.Position{TxID: 9, Seq: 4}, Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(`{}`)}
	legacy := outbox.NewMessage(e)
	delete(legacy.Metadata, outbox.MetaEventID)
	if got, err := outbox.EventFromMessage(legacy); err != nil || got.ID != e.ID {
		t.Fatalf("message without %s: ID %v, %v; want the UUID %v", outbox.MetaEventID, got.ID, err, e.ID)
	}
	cases := []struct {
		name  string
		field string
		edit  func(md map[string]string)
	}{
		{"no stream", outbox.MetaStream, func(md map[string]string) { delete(md, outbox.MetaStream) }},
		{"bad version", outbox.MetaVersion, func(md map[string]string) { md[outbox.MetaVersion] = "seven" }},
		{"no type", outbox.MetaType, func(md map[string]string) { delete(md, outbox.MetaType) }},
		{"bad schema version", outbox.MetaSchemaVersion, func(md map[string]string) { md[outbox.MetaSchemaVersion] = "" }},
		{"bad event ID", "event ID", func(md map[string]string) { md[outbox.MetaEventID] = "not-a-uuid" }},
		{"bad position", outbox.MetaPosition, func(md map[string]string) { md[outbox.MetaPosition] = "x/y" }},
		{"bad recorded time", outbox.MetaRecordedAt, func(md map[string]string) { md[outbox.MetaRecordedAt] = "yesterday" }},
	}
	for _, c := range cases {
		msg := outbox.NewMessage(e)
		c.edit(msg.Metadata)
		_, err := outbox.EventFromMessage(msg)
		if !errors.Is(err, outbox.ErrNotEvent) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want ErrNotEvent naming %q", c.name, err, c.field)
		}
	}
}

// A consumer rebuilds the event a relayed message carries, to decode it
// like an event read from the store.
func ExampleEventFromMessage() {
	e := eventstore.Event{
		ID:       uuid.MustParse("0190f3a2-7c1e-7d4a-9b2e-3f5a6b7c8d9e"),
		StreamID: "order-42", Version: 1, Type: "OrderPlaced", SchemaVersion: 2,
		Data:     []byte(`{"total_cents":2599}`),
		Metadata: eventstore.Metadata{CorrelationID: "req-7", Values: map[string]string{"user": "ann"}},
	}
	msg := outbox.NewMessage(e) // what the relay publishes
	back, err := outbox.EventFromMessage(msg)
	if err != nil {
		panic(err)
	}
	fmt.Println(back.ID, back.StreamID, back.Version, back.Type, back.SchemaVersion, string(back.Data))
	fmt.Println(back.Metadata.CorrelationID, back.Metadata.Values)
	// Output:
	// 0190f3a2-7c1e-7d4a-9b2e-3f5a6b7c8d9e order-42 1 OrderPlaced 2 {"total_cents":2599}
	// req-7 map[user:ann]
}
