package eventstore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// exampleStore gives one example a freshly migrated schema.
func exampleStore(schema string) (*eventstore.Store, func()) {
	pool, cleanup := pgtest.Example(schema)
	return eventstore.New(pool, &eventstore.Config{Schema: schema}), cleanup
}

func Example() {
	store, cleanup := exampleStore("example_eventstore")
	defer cleanup()
	ctx := context.Background()

	placed := eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{"total_cents":2599}`)}
	res, err := store.Append(ctx, "order-42", eventstore.NoStream, placed)
	if err != nil {
		panic(err)
	}
	fmt.Println("version after append:", res.Version)

	// A writer that expected the stream not to exist loses.
	_, err = store.Append(ctx, "order-42", eventstore.NoStream, placed)
	fmt.Println("conflict:", errors.Is(err, eventstore.ErrConflict))

	for e, err := range store.ReadStream(ctx, "order-42", 0) {
		if err != nil {
			panic(err)
		}
		fmt.Println(e.StreamID, e.Version, e.Type, string(e.Data))
	}
	// Output:
	// version after append: 1
	// conflict: true
	// order-42 1 OrderPlaced {"total_cents":2599}
}

func ExampleStore_Append_invalid() {
	store, cleanup := exampleStore("example_eventstore_invalid")
	defer cleanup()

	_, err := store.Append(context.Background(), "order-42", eventstore.Any,
		eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{"total_cents":`)})
	fmt.Println(errors.Is(err, eventstore.ErrInvalidEvent))
	fmt.Println(err)
	// Output:
	// true
	// eventstore: invalid event 0 appended to "order-42": data: not valid JSON
}
