package outbox

import (
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

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
