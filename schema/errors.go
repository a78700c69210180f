package schema

import (
	"errors"
	"strconv"
	"strings"

	"github.com/strata-go/strata/eventstore"
)

var (
	// ErrUnknownType is matched (errors.Is) by a *ValidationError for an
	// event whose type name is not in the registry, and by the error Encode
	// returns for a Go type that was never registered.
	ErrUnknownType = errors.New("schema: unknown event type")
	// ErrUnknownVersion is matched by a *ValidationError for an event whose
	// type is known but whose schema version is not registered.
	ErrUnknownVersion = errors.New("schema: unknown schema version")
	// ErrNoUpcast is returned by Decode when an event's version has no
	// chain of upcasters to the current version.
	ErrNoUpcast = errors.New("schema: no upcast path to the current version")
	// ErrInvalidName is matched by the error Register, RegisterVersion and
	// Upcast return for an event name the store would refuse as a type
	// (empty, longer than eventstore.MaxTypeLength, not UTF-8, with a NUL)
	// or a version outside 1 to 2^20.
	ErrInvalidName = errors.New("schema: invalid event name or version")
)

// ValidationError reports an event the registry refuses: an unknown type, an
// unknown version, or a payload that does not follow its version's JSON
// Schema. errors.Is(err, eventstore.ErrInvalidEvent) is true for every
// ValidationError, so the store reports it as an invalid event and writes
// nothing; errors.Is(err, ErrUnknownType) and errors.Is(err,
// ErrUnknownVersion) tell the first two cases apart.
type ValidationError struct {
	// EventType is the event's type name.
	EventType string
	// Version is the schema version the payload was checked against (for
	// an event read in an old version and upcast, the current version).
	Version int
	// Failures lists what is wrong with the payload, one entry per failing
	// location. It is empty when Err is set.
	Failures []Failure
	// Err is ErrUnknownType or ErrUnknownVersion when the type or version
	// is not registered, and nil when the payload is invalid.
	Err error
}

// Failure is one reason a payload does not follow its schema.
type Failure struct {
	// Pointer is the JSON Pointer (RFC 6901) of the failing value within
	// the payload, such as "/amount" or "/lines/0/sku". The empty string is
	// the whole document.
	Pointer string
	// Reason says what is wrong, in words.
	Reason string
}

// String formats f as "POINTER: REASON", with "(root)" for the whole
// document.
func (f Failure) String() string {
	p := f.Pointer
	if p == "" {
		p = "(root)"
	}
	return p + ": " + f.Reason
}

// Error names the event type, the version and every failure.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("schema: invalid event ")
	b.WriteString(strconv.Quote(e.EventType))
	if e.Version > 0 {
		b.WriteString(" v")
		b.WriteString(strconv.Itoa(e.Version))
	}
	switch {
	case errors.Is(e.Err, ErrUnknownType):
		b.WriteString(": unknown event type")
	case errors.Is(e.Err, ErrUnknownVersion):
		b.WriteString(": unknown schema version")
	case e.Err != nil:
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	for i, f := range e.Failures {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.String())
	}
	return b.String()
}

// Is makes errors.Is(err, eventstore.ErrInvalidEvent) true.
func (e *ValidationError) Is(target error) bool { return target == eventstore.ErrInvalidEvent }

// Unwrap returns Err: ErrUnknownType, ErrUnknownVersion or nil.
func (e *ValidationError) Unwrap() error { return e.Err }
