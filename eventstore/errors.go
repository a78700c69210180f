package eventstore

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
)

var (
	// ErrConflict is matched (errors.Is) by every *ConflictError: an append
	// whose expected version did not hold.
	ErrConflict = errors.New("eventstore: version conflict")
	// ErrStreamNotFound is returned when reading a stream that has no events.
	ErrStreamNotFound = errors.New("eventstore: stream not found")
	// ErrInvalidEvent is matched by every *InvalidEventError and by the
	// errors a Validator returns: the append was refused before anything
	// was written.
	ErrInvalidEvent = errors.New("eventstore: invalid event")
	// ErrDuplicateEvent is matched by *DuplicateEventError: an event with the
	// same ID is already stored (or appears twice in one append).
	ErrDuplicateEvent = errors.New("eventstore: duplicate event id")
	// ErrOutOfOrder is matched by *OutOfOrderError: AppendTx refused to
	// write because a transaction with a later ID has appended to the
	// stream; the caller's transaction must be rolled back and retried.
	ErrOutOfOrder = errors.New("eventstore: append would break the stream's log order")
	// ErrSnapshotNotFound is returned by LoadSnapshot when a stream has none.
	ErrSnapshotNotFound = errors.New("eventstore: snapshot not found")
	// ErrInvalidArgument is matched by the errors of calls other than
	// appends refused for an argument no call can use: a limit below 1, a
	// position past the log's range, a filter, name or configuration value
	// that is not valid. The error names the argument; nothing was written.
	ErrInvalidArgument = errors.New("eventstore: invalid argument")
)

// ConflictError reports an append whose expected version did not match the
// stream. errors.Is(err, ErrConflict) is true for it.
type ConflictError struct {
	// StreamID is the stream appended to.
	StreamID string
	// Expected is what the append expected.
	Expected ExpectedVersion
	// Actual is the stream's version when the conflict was seen (0: no
	// stream).
	Actual int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("eventstore: version conflict on stream %q: expected %s, stream is at version %d",
		e.StreamID, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// OutOfOrderError reports an AppendTx refused for the log's order. The log
// is ordered by transaction ID, and a stream's versions must follow that
// order; the caller's transaction has an earlier ID (it began writing
// earlier) than a transaction that appended to the stream and committed
// meanwhile, so its events cannot come after that one's. Nothing was
// written and tx is still usable, but appending to the stream in it will
// keep failing: roll it back and run it again, as after a serialization
// failure. Append retries in a new transaction instead; it returns the
// error only if ctx ends or the refusals go on for about a second (the
// database's transaction IDs went back, see the README on backups).
// errors.Is(err, ErrOutOfOrder) is true for it.
type OutOfOrderError struct {
	// StreamID is the stream appended to.
	StreamID string
}

func (e *OutOfOrderError) Error() string {
	return fmt.Sprintf("eventstore: append to %q refused: a transaction that began writing later has appended to the stream since, and the stream's versions must follow the log's order; roll back and retry the transaction", e.StreamID)
}

// Is makes errors.Is(err, ErrOutOfOrder) true.
func (e *OutOfOrderError) Is(target error) bool { return target == ErrOutOfOrder }

// InvalidEventError names what was wrong with an event or an append's
// arguments. errors.Is(err, ErrInvalidEvent) is true for it.
type InvalidEventError struct {
	// StreamID is the stream of the refused append.
	StreamID string
	// Index is the position of the bad event in the append (0-based), or -1
	// when the problem is not one event's (an empty stream ID, say).
	Index int
	// Field names what was wrong: "stream", "type", "data", "metadata",
	// "expected version", "events", "size" or "principal".
	Field string
	// Reason says why, in words.
	Reason string
}

func (e *InvalidEventError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("eventstore: invalid event %d appended to %q: %s: %s", e.Index, e.StreamID, e.Field, e.Reason)
	}
	return fmt.Sprintf("eventstore: invalid append to %q: %s: %s", e.StreamID, e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidEvent) true.
func (e *InvalidEventError) Is(target error) bool { return target == ErrInvalidEvent }

// DuplicateEventError reports an event ID that is already stored.
// errors.Is(err, ErrDuplicateEvent) is true for it.
type DuplicateEventError struct {
	// StreamID is the stream of the refused append.
	StreamID string
	// ID is the duplicated event ID, when known (Postgres reports it for a
	// clash with a stored event; it is always known for a repeat within one
	// append).
	ID uuid.UUID
}

func (e *DuplicateEventError) Error() string {
	if e.ID == uuid.Nil {
		return fmt.Sprintf("eventstore: append to %q: an event with the same id is already stored", e.StreamID)
	}
	return fmt.Sprintf("eventstore: append to %q: event id %s is already stored", e.StreamID, e.ID)
}

// Is makes errors.Is(err, ErrDuplicateEvent) true.
func (e *DuplicateEventError) Is(target error) bool { return target == ErrDuplicateEvent }

// ErrAmbiguous is matched by *AmbiguousError: Append lost its connection
// after its statement may have reached the server, and could not learn in
// time whether its events are stored.
var ErrAmbiguous = errors.New("eventstore: append outcome unknown")

// AmbiguousError reports an append whose outcome could not be learned: its
// connection was lost after the statement was sent, and finding out on
// another connection whether the events are stored did not succeed within
// Config.ResolveTimeout (the database unreachable, say). The events are
// stored, once, or not at all. Retrying with the same event IDs (EventIDs,
// in order) is safe: if they are stored the retry returns a
// *DuplicateEventError. errors.Is(err, ErrAmbiguous) is true for it, and
// it unwraps to the error that lost the connection.
type AmbiguousError struct {
	// StreamID is the stream appended to.
	StreamID string
	// EventIDs are the IDs the append's events were given, in order.
	EventIDs []uuid.UUID
	// Err is the error that lost the connection.
	Err error
	// Resolve is why the outcome could not be learned.
	Resolve error
}

func (e *AmbiguousError) Error() string {
	first := "none"
	if len(e.EventIDs) > 0 {
		first = e.EventIDs[0].String()
	}
	return fmt.Sprintf("eventstore: append to %q: outcome unknown: the connection was lost after the append was sent (%v), and whether its events are stored could not be learned (%v); retry with the same event IDs (first %s)",
		e.StreamID, e.Err, e.Resolve, first)
}

// Is makes errors.Is(err, ErrAmbiguous) true.
func (e *AmbiguousError) Is(target error) bool { return target == ErrAmbiguous }

// Unwrap returns the error that lost the connection.
func (e *AmbiguousError) Unwrap() error { return e.Err }
