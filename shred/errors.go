package shred

import (
	"errors"

	"github.com/strata-go/strata/eventstore"
)

var (
	// ErrNoSubject: an event has personal fields but its subject field is
	// missing, empty or not a string. It matches eventstore.ErrInvalidEvent
	// too; nothing is written.
	ErrNoSubject = errors.New("shred: no data subject")
	// ErrForgotten: an append carries personal data of a subject that was
	// forgotten. It matches eventstore.ErrInvalidEvent too; nothing is
	// written.
	ErrForgotten = errors.New("shred: the data subject is forgotten")
	// ErrPersonalMetadata: an event's metadata carries one of its personal
	// values, or a key named as one of its personal fields. It matches
	// eventstore.ErrInvalidEvent too; nothing is written.
	ErrPersonalMetadata = errors.New("shred: personal data in metadata")
	// ErrReserved: an event of a registered type holds a string beginning
	// with Prefix, which only sealing may write, or a personal string
	// equal to schema.Erased, which would read as erased. It matches
	// eventstore.ErrInvalidEvent too; nothing is written.
	ErrReserved = errors.New("shred: a value begins with the sealed-value prefix")
	// ErrTampered: a sealed value does not authenticate (changed, moved to
	// another field or event, or not a sealed value at all).
	ErrTampered = errors.New("shred: sealed value does not authenticate")
	// ErrUnknownKey: a sealed value names a subject or key version that
	// the key table does not have (not even as forgotten).
	ErrUnknownKey = errors.New("shred: unknown key")
)

// invalid makes err match eventstore.ErrInvalidEvent as well.
type invalid struct{ err error }

func (e invalid) Error() string { return e.err.Error() }
func (e invalid) Unwrap() []error {
	return []error{e.err, eventstore.ErrInvalidEvent}
}
