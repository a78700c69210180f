package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/migrations"
)

// exampleStore connects to DATABASE_URL (or the local test server) and
// migrates a schema for one example, returning a cleanup function.
func exampleStore(schema string) (*eventstore.Store, func()) {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test"
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		panic(err)
	}
	_, _ = pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`)
	if err := migrations.Apply(ctx, pool, schema); err != nil {
		panic(err)
	}
	return eventstore.New(pool, &eventstore.Config{Schema: schema}), func() {
		_, _ = pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`)
		pool.Close()
	}
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
