// Package storeview gives Strata's own packages what they need of an
// *eventstore.Store that is not part of the store's public API: its
// Postgres schema name, its logger and telemetry providers (the defaults of
// every worker built on the store), its wake-up channel, a copy of it with
// another validator, and the conversion of a recovered panic into an
// *eventstore.PanicError. Users configure these through eventstore.Config
// and never read them back.
//
// Contract: package eventstore registers the one implementation from its
// init (Register), so every package that has a store to pass finds it
// registered. The functions take the store as a type parameter, which is
// always *eventstore.Store; passing anything else panics. The values they
// return are the store's own (no copy is made of a logger or provider),
// and WithValidator's store shares everything with its original but the
// validator: the pool, the configuration, the telemetry, the wake-up
// listener and the pacing of notifications.
package storeview

import (
	"log/slog"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Info is what a store's sibling packages read of it.
type Info struct {
	// Schema is the Postgres schema of the store's tables, unquoted
	// (eventstore.Config.Schema, "strata" by default).
	Schema string
	// Channel is the LISTEN/NOTIFY channel on which appends wake
	// subscribers (at most 63 bytes).
	Channel string
	// Logger is eventstore.Config.Logger, or slog.Default().
	Logger *slog.Logger
	// MeterProvider is eventstore.Config.MeterProvider, or the global one.
	MeterProvider metric.MeterProvider
	// TracerProvider is eventstore.Config.TracerProvider, or the global one.
	TracerProvider trace.TracerProvider
}

// Funcs is what package eventstore registers, for its store type S.
type Funcs[S any] struct {
	// Info returns the store's Info.
	Info func(S) Info
	// WithValidator returns a store like s that validates appended events
	// with v (nil: none; otherwise an eventstore.Validator).
	WithValidator func(s S, v any) S
	// Recovered turns a value recovered from a panic into an
	// *eventstore.PanicError and logs it with its stack through log
	// (slog.Default() when nil); what names whose code panicked.
	Recovered func(log *slog.Logger, what string, v any) error
}

var (
	funcs     any // a Funcs[S]
	recovered func(log *slog.Logger, what string, v any) error
)

// Register records package eventstore's implementation. Called once, from
// eventstore's init.
func Register[S any](f Funcs[S]) {
	funcs = f
	recovered = f.Recovered
}

func get[S any]() Funcs[S] {
	f, ok := funcs.(Funcs[S])
	if !ok {
		panic("storeview: not an *eventstore.Store, or eventstore not registered")
	}
	return f
}

// Of returns what the store s's sibling packages read of it.
func Of[S any](s S) Info { return get[S]().Info(s) }

// WithValidator returns a store on the same pool, schema, configuration,
// telemetry and wake-up listener as s that checks appended events with v
// instead of eventstore.Config.Validator (nil: events are only checked to
// be well formed). Used where a package appends events that are not of the
// application's registered types, such as pubsub's messages.
func WithValidator[S any](s S, v any) S { return get[S]().WithValidator(s, v) }

// Recovered turns a value recovered from a panic into an
// *eventstore.PanicError and logs it, with its stack, through log
// (slog.Default() when nil); what says whose code panicked. Call it only
// from a deferred function, so that the stack is the panic's.
func Recovered(log *slog.Logger, what string, v any) error { return recovered(log, what, v) }
