package eventstore

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// NewEvent is an event to append. Only Type and Data are required.
type NewEvent struct {
	// ID identifies the event across the whole store. The zero value means
	// "make one": the store assigns a UUIDv7. A caller that retries a command
	// with the same IDs cannot store the same event twice: the second append
	// fails with ErrDuplicateEvent.
	ID uuid.UUID
	// Type names the event, for example "OrderPlaced". Required.
	Type string
	// SchemaVersion is the version of Type's schema that Data follows.
	// Zero means 1.
	SchemaVersion int
	// Data is the event's payload as JSON. It must be valid JSON and is
	// stored and returned byte for byte as given.
	Data []byte
	// Metadata carries correlation, causation and free string pairs.
	Metadata Metadata
}

// Metadata describes where an event came from. It is stored beside the
// event and returned with it.
type Metadata struct {
	// CorrelationID ties together every event caused by one request.
	CorrelationID string
	// CausationID names what directly caused this event: usually the ID of
	// the command or event that was being handled.
	CausationID string
	// Values holds free string pairs such as the W3C trace context
	// ("traceparent", "tracestate") or the acting user.
	Values map[string]string
}

// Event is a stored event, as read back from the store.
type Event struct {
	// ID is the event's unique ID.
	ID uuid.UUID
	// StreamID is the stream the event belongs to, for example "order-42".
	StreamID string
	// Version is the event's version within its stream: 1, 2, 3, …
	Version int64
	// Position is the event's place in the global log.
	Position Position
	// Type names the event.
	Type string
	// SchemaVersion is the version of Type's schema that Data follows.
	SchemaVersion int
	// Data is the JSON payload, byte for byte as appended.
	Data []byte
	// Metadata is the metadata stored with the event.
	Metadata Metadata
	// RecordedAt is the time the database recorded the event (its
	// transaction's start time).
	RecordedAt time.Time
}

// Category returns the part of the stream ID before its first '-', as in
// "order" for "order-42". A stream ID without '-' is its own category.
func (e Event) Category() string { return Category(e.StreamID) }

// Category returns the category of a stream ID: the part before its first
// '-', or the whole ID when it has none.
func Category(streamID string) string {
	if i := strings.IndexByte(streamID, '-'); i >= 0 {
		return streamID[:i]
	}
	return streamID
}

// Position is a place in the global log. The log is ordered by the ID of the
// transaction that wrote each event, then by the event's sequence number;
// readers only see transactions that no older open transaction can precede
// (see the package documentation), so a reader that remembers the last
// Position it handled never skips an event.
//
// The zero Position is before the first event.
type Position struct {
	// TxID is the ID (xid8) of the transaction that appended the event.
	TxID uint64
	// Seq is the event's global sequence number. Sequence numbers grow with
	// every append but are not gapless: rolled-back appends burn them.
	Seq int64
}

// Less reports whether p comes before q in the log.
func (p Position) Less(q Position) bool {
	if p.TxID != q.TxID {
		return p.TxID < q.TxID
	}
	return p.Seq < q.Seq
}

// IsZero reports whether p is the start of the log.
func (p Position) IsZero() bool { return p == Position{} }

// String formats p as "TXID/SEQ", the form ParsePosition reads.
func (p Position) String() string {
	return strconv.FormatUint(p.TxID, 10) + "/" + strconv.FormatInt(p.Seq, 10)
}

// ParsePosition reads a Position written by Position.String. "0" and ""
// are the start of the log.
func ParsePosition(s string) (Position, error) {
	if s == "" || s == "0" {
		return Position{}, nil
	}
	txs, seqs, ok := strings.Cut(s, "/")
	if !ok {
		return Position{}, fmt.Errorf("eventstore: position %q: want TXID/SEQ", s)
	}
	tx, err := strconv.ParseUint(txs, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("eventstore: position %q: transaction id: %w", s, err)
	}
	seq, err := strconv.ParseInt(seqs, 10, 64)
	if err != nil || seq < 0 {
		return Position{}, fmt.Errorf("eventstore: position %q: bad sequence number", s)
	}
	return Position{TxID: tx, Seq: seq}, nil
}

// ExpectedVersion states what an append expects of its stream. Use Any,
// NoStream, StreamExists or Exactly(n).
type ExpectedVersion int64

const (
	// Any appends whatever the stream's state; versions stay gapless even
	// when many writers use Any on one stream.
	Any ExpectedVersion = -1
	// NoStream requires that the stream has no events yet. Same as Exactly(0).
	NoStream ExpectedVersion = 0
	// StreamExists requires that the stream has at least one event.
	StreamExists ExpectedVersion = -2
)

// Exactly requires that the stream's current version is n (its last
// event's version). Exactly(0) is NoStream.
func Exactly(n int64) ExpectedVersion { return ExpectedVersion(n) }

// String describes the expectation, as in "exactly 3" or "no stream".
func (v ExpectedVersion) String() string {
	switch {
	case v == Any:
		return "any"
	case v == NoStream:
		return "no stream"
	case v == StreamExists:
		return "stream exists"
	case v > 0:
		return "exactly " + strconv.FormatInt(int64(v), 10)
	}
	return "invalid(" + strconv.FormatInt(int64(v), 10) + ")"
}

// AppendResult tells where an append's events landed.
type AppendResult struct {
	// Version is the stream's version after the append: the version of its
	// last event.
	Version int64
	// Position is the global position of the append's last event.
	Position Position
}

// Page is one page of the global log, as ReadAll returns it.
type Page struct {
	// Events holds the events in log order.
	Events []Event
	// Next is the position to pass as "after" to read the following page.
	// It is the last event's position, or "after" when nothing was read;
	// for a filtered read it may lie past the last event (or move on with
	// no event at all), over events the filter skipped, so that they are
	// not scanned again. Always continue from Next.
	Next Position
	// AtEnd reports that the read reached the end of the readable log:
	// the following page is empty until more events commit.
	AtEnd bool
}

// Snapshot is a saved state of a stream at a version, so that loading it
// needs only the events after that version.
type Snapshot struct {
	// StreamID is the stream the snapshot belongs to.
	StreamID string
	// Version is the stream version the state includes.
	Version int64
	// SchemaVersion versions the encoding of Data: a reader that expects
	// another version ignores the snapshot and rebuilds from events.
	SchemaVersion int
	// Data is the encoded state, in any format.
	Data []byte
	// CreatedAt is when the snapshot was saved.
	CreatedAt time.Time
}

// Validator checks an event before it is appended. *schema.Registry is one.
// An error should wrap ErrInvalidEvent.
type Validator interface {
	Validate(ev NewEvent) error
}
