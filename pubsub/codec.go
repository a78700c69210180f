package pubsub

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/failure"
)

const (
	// EventTypeJSON is the event type of a message whose payload is a JSON
	// document: the payload is stored as the event's data, byte for byte.
	EventTypeJSON = "watermill.message"
	// EventTypeBytes is the event type of a message whose payload is not
	// JSON (or not UTF-8): the data is the payload in base64, as a JSON
	// string, and is decoded back byte for byte.
	EventTypeBytes = "watermill.message.base64"
	// UUIDKey is the metadata key under which the message UUID is kept
	// with the event (the event ID is derived from topic and UUID, see
	// EventID). The key is reserved: Subscribe removes it from the
	// delivered message's metadata.
	UUIDKey = "_watermill_uuid"
	// CorrelationIDKey is the metadata key (Watermill's
	// middleware.CorrelationIDMetadataKey) copied to the event's
	// correlation ID, so the store's correlation queries find messages too.
	CorrelationIDKey = "correlation_id"
	// EventIDKey is the metadata key (outbox.MetaEventID) naming the
	// Strata event a message carries, as the outbox relay sets it. It is
	// copied to the stored copy's causation ID, so that `strata trace`
	// shows the copy under the event it carries.
	EventIDKey = "event_id"
)

// uuidNamespace derives event IDs from message UUIDs that are not UUIDs.
var uuidNamespace = uuid.MustParse("6f1d1c8e-5a0b-4a53-9a55-3c1e2f7b9d10")

// DefaultPrefix is the default PublisherConfig.Prefix and
// SubscriberConfig.Prefix.
const DefaultPrefix = "wm."

// Category returns the stream category that holds a topic's messages:
// prefix followed by the topic with '%' and '-' percent-encoded, so that a
// topic never spills into another's category ("a-b" and "a-c" stay apart,
// since a category ends at the first '-').
func Category(prefix, topic string) string {
	if !strings.ContainsAny(topic, "%-") {
		return prefix + topic
	}
	r := strings.NewReplacer("%", "%25", "-", "%2D")
	return prefix + r.Replace(topic)
}

// StreamID returns the stream a message of topic with partition key key is
// appended to: the topic's category, then "-" and the key when the key is
// not empty.
func StreamID(prefix, topic, key string) string {
	c := Category(prefix, topic)
	if key == "" {
		return c
	}
	return c + "-" + key
}

// EventID returns the event ID under which a message of topic is stored: a
// UUIDv5 of the topic and the message UUID. A republished message (same
// topic, same UUID) therefore maps to the same event and is stored once,
// while the same message published to several topics (fan-out, a poison
// queue) is stored once in each.
func EventID(topic, messageUUID string) uuid.UUID {
	b := make([]byte, 0, len(topic)+1+len(messageUUID))
	b = append(append(append(b, topic...), 0), messageUUID...)
	return uuid.NewSHA1(uuidNamespace, b)
}

// toEvent maps a Watermill message to the event that stores it.
func toEvent(topic string, msg *message.Message) (eventstore.NewEvent, error) {
	ev := eventstore.NewEvent{Type: EventTypeJSON, Data: msg.Payload}
	if len(msg.Payload) == 0 || !json.Valid(msg.Payload) || !utf8.Valid(msg.Payload) {
		ev.Type = EventTypeBytes
		ev.Data = make([]byte, 0, base64.StdEncoding.EncodedLen(len(msg.Payload))+2)
		ev.Data = append(ev.Data, '"')
		ev.Data = base64.StdEncoding.AppendEncode(ev.Data, msg.Payload)
		ev.Data = append(ev.Data, '"')
	}
	var values map[string]string
	if len(msg.Metadata) > 0 {
		if _, reserved := msg.Metadata[UUIDKey]; reserved {
			return ev, fmt.Errorf("pubsub: message %s: metadata key %q is reserved", msg.UUID, UUIDKey)
		}
		values = maps.Clone(map[string]string(msg.Metadata))
		ev.Metadata.CorrelationID = msg.Metadata[CorrelationIDKey]
		ev.Metadata.CausationID = msg.Metadata[EventIDKey]
	}
	id := EventID(topic, msg.UUID)
	if msg.UUID == "" {
		// No identity to keep: a fresh ID, never deduplicated.
		id = uuid.Must(uuid.NewV7())
	}
	if values == nil {
		values = make(map[string]string, 1)
	}
	values[UUIDKey] = msg.UUID
	ev.ID = id
	ev.Metadata.Values = values
	return ev, nil
}

// errBadPayload is the one failure of a delivery that retrying cannot
// cure; toMessage marks it permanent, so the subscription parks the
// message after MaxAttempts.
var errBadPayload = errors.New("pubsub: stored payload is not valid base64")

// toMessage maps a stored event back to the message that was published.
func toMessage(e eventstore.Event) (*message.Message, error) {
	payload := e.Data
	if e.Type == EventTypeBytes {
		if len(e.Data) < 2 || e.Data[0] != '"' || e.Data[len(e.Data)-1] != '"' {
			return nil, failure.Permanent(fmt.Errorf("%w: event %s", errBadPayload, e.ID))
		}
		var err error
		payload, err = base64.StdEncoding.AppendDecode(nil, e.Data[1:len(e.Data)-1])
		if err != nil {
			return nil, failure.Permanent(fmt.Errorf("%w: event %s: %v", errBadPayload, e.ID, err))
		}
	}
	id := e.ID.String() // events not written by a Publisher
	md := message.Metadata{}
	for k, v := range e.Metadata.Values {
		if k == UUIDKey {
			id = v
			continue
		}
		md[k] = v
	}
	msg := message.NewMessage(id, payload)
	msg.Metadata = md
	return msg, nil
}
