package aggregate

import (
	"fmt"
	"reflect"
)

// Root is embedded (by value) in every aggregate. It holds the aggregate's
// ID, its version (the version of the last stored event it includes) and
// the events raised since it was loaded or saved.
//
// Root's fields are unexported: they are not part of a snapshot, which is
// the JSON encoding of the aggregate's own exported fields.
type Root struct {
	id      string
	version int64
	pending []any
	apply   func(ev any)
}

// Aggregate is what a Repository works with: a pointer to a struct that
// embeds Root and has an Apply method. Apply changes the aggregate's state
// for one event; it does no I/O, returns nothing and must not call Raise.
// Apply receives event values (never pointers) of the Go types registered
// in the schema registry.
//
// Every method but Apply comes from the embedded Root, and one of them is
// unexported, so only types that embed Root satisfy Aggregate.
type Aggregate interface {
	Apply(ev any)
	ID() string
	Version() int64
	Pending() []any
	root() *Root
}

func (r *Root) root() *Root { return r }

// ID returns the aggregate's ID, as given to the repository ("42"; the
// stream ID is "order-42").
func (r *Root) ID() string { return r.id }

// Version returns the aggregate's version: the version of the last stored
// event it has applied, 0 for an aggregate never saved. Raising events
// does not change it; a successful save does.
func (r *Root) Version() int64 { return r.version }

// Pending returns the events raised since the aggregate was loaded or last
// saved, in the order they were raised. The slice is the aggregate's own:
// do not modify it.
func (r *Root) Pending() []any { return r.pending }

// Raise records ev as a new event of the aggregate and applies it, by
// calling the aggregate's Apply method. The event is stored by the next
// Save (or by Update when its function returns nil).
//
// ev must be a value (not a pointer) of a Go type registered in the
// repository's schema registry, so that Apply sees the same types when
// events are raised and when they are loaded.
//
// Raise panics when the aggregate is not wired to its Apply method, that
// is when it was not made by Repository.New, Load, LoadAt, Update or
// Rehydrate (an aggregate built with a struct literal is not wired), and
// when ev is nil or a pointer. Both are programming errors that the first
// test of the command finds.
func (r *Root) Raise(ev any) {
	if r.apply == nil {
		panic(fmt.Sprintf("aggregate: Raise(%T) on an aggregate that is not wired to its Apply method: "+
			"make aggregates with Repository.New, Load, Update or aggregate.Rehydrate, not with a struct literal", ev))
	}
	if ev == nil {
		panic("aggregate: Raise(nil)")
	}
	if reflect.TypeOf(ev).Kind() == reflect.Pointer {
		panic(fmt.Sprintf("aggregate: Raise(%T): raise event values, not pointers (loaded events are values)", ev))
	}
	r.pending = append(r.pending, ev)
	r.apply(ev)
}

// Rehydrate wires a to its Apply method under the given ID, so that Raise
// works, and applies history as events already stored: a's version becomes
// its version plus len(history) and nothing is pending. It returns a.
//
// Repositories call it when they make or load an aggregate; call it to
// build an aggregate in memory, in tests or tools. It panics when a's Root
// is missing (a nil embedded *Root: embed Root by value).
func Rehydrate[T Aggregate](a T, id string, history ...any) T {
	r := wire(a, id)
	for _, ev := range history {
		a.Apply(ev)
		r.version++
	}
	return a
}

// wire sets a's ID and connects its Root to its Apply method.
func wire[T Aggregate](a T, id string) *Root {
	r := a.root()
	if r == nil {
		panic(fmt.Sprintf("aggregate: %T has a nil Root: embed aggregate.Root by value", a))
	}
	r.id = id
	r.apply = a.Apply
	return r
}
