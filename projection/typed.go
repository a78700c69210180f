package projection

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// Decoded is an event handed to a typed handler: the stored event, its
// payload decoded (and upcast) into the Go type E by the registry, and the
// aggregate ID its stream belongs to.
type Decoded[E any] struct {
	// Event is the event as stored: ID, stream, version, position,
	// metadata, time.
	eventstore.Event
	// Value is the payload as a value of E, in its current version.
	Value E
	// AggregateID is the stream ID without its category: "42" for
	// "account-42" (what aggregate.Repository.StreamID was given; see
	// AggregateID).
	AggregateID string
}

// AggregateID returns the part of a stream ID after its category and the
// '-' that ends it ("42" for "account-42"), or the whole ID when it has no
// '-': the inverse of aggregate.Repository.StreamID.
func AggregateID(streamID string) string {
	_, id, found := strings.Cut(streamID, "-")
	if !found {
		return streamID
	}
	return id
}

// TypedConfig configures a TypedHandler. The zero value (or nil) means
// every default.
type TypedConfig struct {
	// Unhandled receives the events of types no On registered. Default
	// nil: they are skipped (set Projection.Types to TypedHandler.Types()
	// so that they are not even read).
	Unhandled Handler
}

// TypedHandler is a Handler that decodes each event with a schema
// registry and calls the function registered for its Go type with On: a
// projection's handlers on decoded values, without a type switch or the
// registry's calls in each. Build it at start-up, before the Runner runs;
// it is then safe for concurrent use.
//
//	h := projection.NewTypedHandler(reg, nil)
//	projection.On(h, func(ctx context.Context, tx pgx.Tx, e projection.Decoded[Deposited]) error {
//		_, err := tx.Exec(ctx, `UPDATE balances SET cents = cents + $2 WHERE id = $1`, e.AggregateID, e.Value.Cents)
//		return err
//	})
//	p := projection.Projection{Name: "balances", Handler: h, Types: h.Types()}
//
// An event that does not decode (an unknown type, a failed upcast) is an
// error, which the runner retries and then parks or stops on, as for any
// handler's error.
type TypedHandler struct {
	reg    *schema.Registry
	cfg    TypedConfig
	byType map[reflect.Type]func(ctx context.Context, tx pgx.Tx, e eventstore.Event, v any) error
	names  []string // sorted
}

// NewTypedHandler returns a TypedHandler decoding with reg. It panics on a
// nil reg.
func NewTypedHandler(reg *schema.Registry, cfg *TypedConfig) *TypedHandler {
	if reg == nil {
		panic("projection: NewTypedHandler needs a schema registry")
	}
	var c TypedConfig
	if cfg != nil {
		c = *cfg
	}
	return &TypedHandler{reg: reg, cfg: c, byType: map[reflect.Type]func(context.Context, pgx.Tx, eventstore.Event, any) error{}}
}

// On registers fn for the events whose Go type (registered in h's registry
// with schema.Register) is E. It returns an error, and registers nothing,
// when E is not registered or already has a function.
func On[E any](h *TypedHandler, fn func(ctx context.Context, tx pgx.Tx, e Decoded[E]) error) error {
	name, err := schema.NameOf[E](h.reg)
	if err != nil {
		return fmt.Errorf("projection: On: %w", err)
	}
	rt := reflect.TypeFor[E]()
	if _, dup := h.byType[rt]; dup {
		return fmt.Errorf("projection: On: %s (%q) already has a handler", rt, name)
	}
	if fn == nil {
		return fmt.Errorf("projection: On: nil function for %s", rt)
	}
	h.byType[rt] = func(ctx context.Context, tx pgx.Tx, e eventstore.Event, v any) error {
		return fn(ctx, tx, Decoded[E]{Event: e, Value: v.(E), AggregateID: AggregateID(e.StreamID)})
	}
	h.names = append(h.names, name)
	slices.Sort(h.names)
	return nil
}

// Types returns the event names h has functions for, sorted: set
// Projection.Types to it so that the projection reads only those (unless
// TypedConfig.Unhandled wants the others).
func (h *TypedHandler) Types() []string { return slices.Clone(h.names) }

// Handle decodes e and calls its type's function.
func (h *TypedHandler) Handle(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	if _, found := slices.BinarySearch(h.names, e.Type); !found {
		if h.cfg.Unhandled != nil {
			return h.cfg.Unhandled.Handle(ctx, tx, e)
		}
		return nil
	}
	v, err := h.reg.Decode(e)
	if err != nil {
		return err
	}
	fn := h.byType[reflect.TypeOf(v)]
	if fn == nil { // the registry maps the name to another Go type
		return fmt.Errorf("projection: %q decodes to %T, which has no handler", e.Type, v)
	}
	return fn(ctx, tx, e, v)
}
