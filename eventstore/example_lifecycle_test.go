package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
)

// Read your own writes: append, then wait until a subscription (here in
// this process; it may run in any) has handled the append.
func ExampleStore_WaitFor() {
	store, cleanup := exampleStore("example_eventstore_waitfor")
	defer cleanup()
	ctx := context.Background()

	sub, err := store.Subscription(eventstore.SubscriptionConfig{Name: "order_summary"})
	if err != nil {
		panic(err)
	}
	// Registered before the first WaitFor, which refuses a subscription
	// that does not exist (ErrSubscriptionNotFound); Run registers it too,
	// but in its own goroutine.
	if err := sub.Register(ctx); err != nil {
		panic(err)
	}
	handled := make(chan string, 10)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- sub.Run(runCtx, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
			for _, e := range events {
				handled <- e.StreamID // a read model would be written through tx
			}
			return nil
		})
	}()
	defer func() { stop(); <-done }()

	res, err := store.Append(ctx, "order-42", eventstore.NoStream, eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{}`)})
	if err != nil {
		panic(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := store.WaitFor(wctx, "order_summary", res.Position); err != nil {
		panic(err)
	}
	fmt.Println("handled:", <-handled)
	// Output:
	// handled: order-42
}

// A tombstoned stream takes no append ever again.
func ExampleStore_Tombstone() {
	store, cleanup := exampleStore("example_eventstore_tombstone")
	defer cleanup()
	ctx := context.Background()

	closed := eventstore.NewEvent{Type: "AccountClosed", Data: []byte(`{}`)}
	if _, err := store.Append(ctx, "account-7", eventstore.NoStream, closed); err != nil {
		panic(err)
	}
	if err := store.Tombstone(ctx, "account-7"); err != nil {
		panic(err)
	}
	_, err := store.Append(ctx, "account-7", eventstore.Any, closed)
	fmt.Println(errors.Is(err, eventstore.ErrRetired))
	fmt.Println(err)
	// Output:
	// true
	// eventstore: append to "account-7" refused: the stream is tombstoned
}
