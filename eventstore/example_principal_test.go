package eventstore_test

import (
	"context"
	"fmt"

	"github.com/strata-go/strata/eventstore"
)

// The principal an application authenticated is recorded with each event
// it appends, beside the database role that appended it.
func ExampleWithPrincipal() {
	store, cleanup := exampleStore("example_eventstore_principal")
	defer cleanup()
	ctx := eventstore.WithPrincipal(context.Background(), "alice")

	ev := eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{}`)}
	if _, err := store.Append(ctx, "order-42", eventstore.NoStream, ev); err != nil {
		panic(err)
	}
	events, err := store.ReadByPrincipal(ctx, "alice", eventstore.Position{}, 10)
	if err != nil {
		panic(err)
	}
	for _, e := range events {
		fmt.Println("alice appended", e.Type, "to", e.StreamID)
	}
	// Output:
	// alice appended OrderPlaced to order-42
}
