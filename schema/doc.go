// Package schema is Strata's registry of event types: it binds each event
// name to its Go type, to the JSON Schema of every version of its payload,
// and to the upcasters that bring old payloads up to date.
//
// # The registry
//
// A Registry is filled once at start-up and then shared: lookups take no
// lock, so Encode, Decode and Validate scale across goroutines.
//
//	reg := schema.NewRegistry()
//	err := schema.Register[OrderPlaced](reg, "OrderPlaced", 2, orderPlacedV2) // current version, Go type
//	err = reg.RegisterVersion("OrderPlaced", 1, orderPlacedV1)                // an older version
//	err = reg.Upcast("OrderPlaced", 1, upgradeOrderPlacedV1)                  // v1 → v2
//
//	ev, err := reg.Encode(OrderPlaced{...}) // eventstore.NewEvent{Type: "OrderPlaced", SchemaVersion: 2, Data: …}
//	v, err := reg.Decode(stored)            // OrderPlaced, whatever version was stored
//	o, err := schema.DecodeAs[OrderPlaced](reg, stored)
//
// Each event name has one Go type and each Go type one name. Register the
// Go type (not a pointer); Encode accepts a value or a pointer, Decode
// returns a value.
//
// # File layout
//
// Schemas are best kept as files beside the code, one per version, and
// loaded with LoadFS from an embed.FS:
//
//	schemas/
//	    OrderPlaced/v1.json
//	    OrderPlaced/v2.json
//	    OrderShipped/v1.json
//
//	//go:embed schemas
//	var schemaFiles embed.FS
//
//	sub, _ := fs.Sub(schemaFiles, "schemas")
//	err := reg.LoadFS(sub)                                          // every version's schema
//	err = schema.Register[OrderPlaced](reg, "OrderPlaced", 2, nil)   // nil: use the loaded v2
//
// LoadFS reports every bad file by name (not JSON, not a valid JSON
// Schema, a path not of the form <EventName>/v<N>.json) and registers
// nothing unless all load. Schemas follow draft 2020-12, or 2019-09 when
// their "$schema" says so; other drafts and references to other documents
// are refused. "format" is asserted: a "date-time" must be one.
//
// # Upcasting
//
// Stored events are never rewritten. When a payload changes shape, bump
// the version, keep the old schema, and register an upcaster from the old
// version to the new one. Decode runs the chain on read: a v1 event of a
// type now at v3 goes through the v1→v2 and v2→v3 upcasters, is validated
// against the v3 schema, and is unmarshalled into the Go type. Upcasters
// receive and return the payload as a map, with numbers as json.Number so
// that no precision is lost; a panicking upcaster is reported as an error.
//
// Check verifies, in a test or at start-up, that every version has a path
// to the current one and that every Go type round-trips through its own
// schema (give types with required fields a valid value with Sample).
// CheckEvents decodes stored events, for example every page of
// (*eventstore.Store).ReadAll, as a dry run of an upgrade before it is
// deployed. MarshalJSON exports the whole registry as one document.
//
// # Validation errors
//
// Every event the registry refuses is reported as a *ValidationError
// naming the type, the version and, for an invalid payload, each failing
// value by its JSON Pointer with the reason:
//
//	schema: invalid event "OrderPlaced" v2: /amount: must be >= 0 but found -5
//
// errors.Is(err, eventstore.ErrInvalidEvent) is true for every
// ValidationError; errors.Is(err, ErrUnknownType) and errors.Is(err,
// ErrUnknownVersion) single out unknown types and versions.
//
// Validation runs a fast path straight over the JSON bytes, without
// allocating, for the keywords event schemas mostly use (type, properties,
// required, additionalProperties, items, string lengths, pattern, format,
// string enums, integer bounds, $ref, allOf). It can only accept: a payload
// it does not vouch for, or a schema with other keywords, goes to the full
// validator of github.com/santhosh-tekuri/jsonschema/v5, which decides and
// explains.
//
// # The store's Validator
//
// *Registry implements eventstore.Validator. Given to the store, it
// checks every event before an append writes anything: one invalid event
// fails the whole append, which writes none of them.
//
//	store := eventstore.New(pool, &eventstore.Config{Schema: "strata", Validator: reg})
//	_, err := store.Append(ctx, "order-42", eventstore.NoStream, ev1, ev2)
//	var ve *schema.ValidationError
//	if errors.As(err, &ve) { … } // nothing was written
//
// # Personal data
//
// A schema declares which properties are personal data
// ("x-strata-personal": true) and which names the data subject
// ("x-strata-subject": true); a Go type bound by Register may declare the
// same with struct tags (`strata:"personal"`, `strata:"subject"`).
// Registry.Personal reports them; package shred seals and opens those
// fields. A forgotten subject's personal strings read as Erased, other
// values as null, and an upcast event's validation skips them.
package schema
