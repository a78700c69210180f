package outbox

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
)

// Metadata keys the relay sets on every message it builds with NewMessage.
// The event's own Metadata.Values (trace context such as "traceparent",
// the acting user, …) are copied first under their own names; these keys
// are set after them and win on a clash.
const (
	// MetaEventID holds the event's ID, which is also the message UUID
	// unless a Config.Mapper changes it. Strata's pubsub Publisher makes it
	// the causation ID of the message's stored copy (pubsub.EventIDKey), so
	// that the copy appears under its event in `strata trace`.
	MetaEventID = "event_id"
	// MetaStream holds the event's stream ID.
	MetaStream = "stream"
	// MetaVersion holds the event's version in its stream, in decimal.
	MetaVersion = "version"
	// MetaType holds the event's type name.
	MetaType = "event_type"
	// MetaSchemaVersion holds the version of the type's schema the payload
	// follows, in decimal.
	MetaSchemaVersion = "schema_version"
	// MetaPosition holds the event's place in the global log, as
	// eventstore.Position.String writes it.
	MetaPosition = "position"
	// MetaCorrelationID holds the event's correlation ID (absent when empty).
	MetaCorrelationID = "correlation_id"
	// MetaCausationID holds the event's causation ID (absent when empty).
	MetaCausationID = "causation_id"
	// MetaRecordedAt holds when the store recorded the event, in RFC 3339
	// with nanoseconds.
	MetaRecordedAt = "recorded_at"
	// MetaPartitionKey holds the key that partitioned brokers must route
	// by to keep a stream's order: the stream ID. The Kafka adapter uses it
	// as the message key; the NATS adapter can add it to the subject.
	MetaPartitionKey = "partition_key"
)

// NewMessage builds the Watermill message the relay publishes for e by
// default: UUID = e.ID (so consumers can deduplicate), payload = e.Data
// (the event's JSON, byte for byte), and the metadata listed under
// MetaEventID and the following constants, plus e.Metadata.Values. A
// Config.Mapper usually starts from it.
func NewMessage(e eventstore.Event) *message.Message {
	msg := message.NewMessage(e.ID.String(), e.Data)
	md := make(message.Metadata, len(e.Metadata.Values)+10)
	for k, v := range e.Metadata.Values {
		md[k] = v
	}
	md[MetaEventID] = e.ID.String()
	md[MetaStream] = e.StreamID
	md[MetaVersion] = strconv.FormatInt(e.Version, 10)
	md[MetaType] = e.Type
	md[MetaSchemaVersion] = strconv.Itoa(e.SchemaVersion)
	md[MetaPosition] = e.Position.String()
	if e.Metadata.CorrelationID != "" {
		md[MetaCorrelationID] = e.Metadata.CorrelationID
	}
	if e.Metadata.CausationID != "" {
		md[MetaCausationID] = e.Metadata.CausationID
	}
	if !e.RecordedAt.IsZero() {
		md[MetaRecordedAt] = e.RecordedAt.UTC().Format(time.RFC3339Nano)
	}
	md[MetaPartitionKey] = e.StreamID
	msg.Metadata = md
	return msg
}

// ErrNotEvent is returned (wrapped, naming what is missing or malformed) by
// EventFromMessage for a message that does not carry a Strata event.
var ErrNotEvent = errors.New("outbox: message does not carry a Strata event")

// metaKeys are the metadata keys NewMessage sets itself; every other key
// comes from the event's Metadata.Values.
var metaKeys = map[string]bool{
	MetaEventID: true, MetaStream: true, MetaVersion: true, MetaType: true, MetaSchemaVersion: true,
	MetaPosition: true, MetaCorrelationID: true, MetaCausationID: true, MetaRecordedAt: true, MetaPartitionKey: true,
}

// EventFromMessage is the inverse of NewMessage: it rebuilds the event a
// relayed message carries from its payload (Data) and metadata, so that a
// consumer can decode it with its schema registry, upcasting old versions,
// exactly like an event read from the store. The ID is MetaEventID (the
// message UUID when that is absent); stream, version, type and schema
// version must be present; position and recorded time are read when
// present. Every metadata key NewMessage does not set itself goes back to
// Metadata.Values (nil when there is none) — including any a broker or a
// middleware added on the way. A message missing or garbling what an
// event needs returns an error matching ErrNotEvent.
func EventFromMessage(msg *message.Message) (eventstore.Event, error) {
	md := msg.Metadata
	fail := func(format string, args ...any) (eventstore.Event, error) {
		return eventstore.Event{}, fmt.Errorf("%w: message %s: %s", ErrNotEvent, msg.UUID, fmt.Sprintf(format, args...))
	}
	idText := md.Get(MetaEventID)
	if idText == "" {
		idText = msg.UUID
	}
	id, err := uuid.Parse(idText)
	if err != nil {
		return fail("event ID %q: %v", idText, err)
	}
	stream, version, ok := StreamVersion(msg)
	if !ok {
		return fail("no stream and version (%s=%q, %s=%q)", MetaStream, md.Get(MetaStream), MetaVersion, md.Get(MetaVersion))
	}
	typ := md.Get(MetaType)
	if typ == "" {
		return fail("no %s", MetaType)
	}
	schemaVersion, err := strconv.Atoi(md.Get(MetaSchemaVersion))
	if err != nil {
		return fail("%s %q: %v", MetaSchemaVersion, md.Get(MetaSchemaVersion), err)
	}
	e := eventstore.Event{
		ID:            id,
		StreamID:      stream,
		Version:       version,
		Type:          typ,
		SchemaVersion: schemaVersion,
		Data:          msg.Payload,
		Metadata: eventstore.Metadata{
			CorrelationID: md.Get(MetaCorrelationID),
			CausationID:   md.Get(MetaCausationID),
		},
	}
	if p := md.Get(MetaPosition); p != "" {
		if e.Position, err = eventstore.ParsePosition(p); err != nil {
			return fail("%s %q: %v", MetaPosition, p, err)
		}
	}
	if t := md.Get(MetaRecordedAt); t != "" {
		if e.RecordedAt, err = time.Parse(time.RFC3339Nano, t); err != nil {
			return fail("%s %q: %v", MetaRecordedAt, t, err)
		}
	}
	for k, v := range md {
		if metaKeys[k] {
			continue
		}
		if e.Metadata.Values == nil {
			e.Metadata.Values = map[string]string{}
		}
		e.Metadata.Values[k] = v
	}
	return e, nil
}

// PartitionKey returns the message's partition key (MetaPartitionKey),
// falling back to its stream (MetaStream) and then to its UUID. Broker
// adapters route by it.
func PartitionKey(msg *message.Message) string {
	if k := msg.Metadata.Get(MetaPartitionKey); k != "" {
		return k
	}
	if k := msg.Metadata.Get(MetaStream); k != "" {
		return k
	}
	return msg.UUID
}

// StreamVersion reads the stream ID and version from a message built by
// NewMessage. ok is false when either is missing or malformed.
func StreamVersion(msg *message.Message) (stream string, version int64, ok bool) {
	stream = msg.Metadata.Get(MetaStream)
	v, err := strconv.ParseInt(msg.Metadata.Get(MetaVersion), 10, 64)
	if stream == "" || err != nil {
		return "", 0, false
	}
	return stream, v, true
}
