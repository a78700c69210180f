package projection_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// exampleStore gives one example a freshly migrated schema.
func exampleStore(schema string) (*eventstore.Store, func()) {
	pool, cleanup := pgtest.Example(schema)
	return eventstore.New(pool, &eventstore.Config{Schema: schema}), cleanup
}

// A read model of order counts per customer, kept by a projection; the
// rows commit with the projection's checkpoint.
func Example() {
	store, cleanup := exampleStore("example_projection")
	defer cleanup()
	ctx := context.Background()
	pool := store.Pool()
	if _, err := pool.Exec(ctx, `CREATE TABLE example_projection.orders_per_customer (customer text PRIMARY KEY, orders int)`); err != nil {
		panic(err)
	}
	count := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		_, err := tx.Exec(ctx, `INSERT INTO example_projection.orders_per_customer
			VALUES ($1::json->>'customer', 1)
			ON CONFLICT (customer) DO UPDATE SET orders = orders_per_customer.orders + 1`, string(e.Data))
		return err
	})
	reset := func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `TRUNCATE example_projection.orders_per_customer`)
		return err
	}
	runner := projection.NewRunner(store, []projection.Projection{
		{Name: "orders_per_customer", Handler: count, Reset: reset, Types: []string{"OrderPlaced"}},
	}, nil)

	for i, customer := range []string{"ann", "bob", "ann"} {
		placed := eventstore.NewEvent{Type: "OrderPlaced", Data: fmt.Appendf(nil, `{"customer":%q}`, customer)}
		if _, err := store.Append(ctx, fmt.Sprintf("order-%d", i), eventstore.NoStream, placed); err != nil {
			panic(err)
		}
	}
	// Rebuild catches up and returns; Run would go on following the log.
	if err := runner.Rebuild(ctx, "orders_per_customer", nil); err != nil {
		panic(err)
	}
	rows, _ := pool.Query(ctx, `SELECT customer, orders FROM example_projection.orders_per_customer ORDER BY customer`)
	var customer string
	var orders int
	_, _ = pgx.ForEachRow(rows, []any{&customer, &orders}, func() error {
		fmt.Println(customer, orders)
		return nil
	})
	st, _ := runner.Status(ctx)
	fmt.Println(st[0].Subscription, "lag:", st[0].Lag)
	// Output:
	// ann 2
	// bob 1
	// projection:orders_per_customer lag: 0
}

// Rebuild reports its progress; a killed rebuild resumes on the next call.
func ExampleRunner_Rebuild() {
	store, cleanup := exampleStore("example_projection_rebuild")
	defer cleanup()
	ctx := context.Background()
	for i := range 1000 {
		if _, err := store.Append(ctx, fmt.Sprintf("order-%d", i%10), eventstore.Any, eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{}`)}); err != nil {
			panic(err)
		}
	}
	noop := projection.HandlerFunc(func(context.Context, pgx.Tx, eventstore.Event) error { return nil })
	runner := projection.NewRunner(store, []projection.Projection{{Name: "audit", Handler: noop}}, &projection.Config{BatchSize: 100})
	var last projection.Progress
	err := runner.Rebuild(ctx, "audit", func(p projection.Progress) { last = p })
	fmt.Println(err, last.Done, "of", last.Total, "finished:", last.Finished)
	// Output:
	// <nil> 1000 of 1000 finished: true
}

// Status shows each projection's checkpoint, lag, state and dead letters.
func ExampleRunner_Status() {
	store, cleanup := exampleStore("example_projection_status")
	defer cleanup()
	ctx, cancel := context.WithCancel(context.Background())
	fail := projection.HandlerFunc(func(context.Context, pgx.Tx, eventstore.Event) error { return fmt.Errorf("no") })
	runner := projection.NewRunner(store, []projection.Projection{{Name: "picky", Handler: fail, MaxAttempts: 2}},
		&projection.Config{RetryBackoff: time.Millisecond})
	done := make(chan error)
	go func() { done <- runner.Run(ctx) }()
	if _, err := store.Append(ctx, "order-1", eventstore.NoStream, eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{}`)}); err != nil {
		panic(err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		st, err := runner.Status(ctx)
		if err != nil {
			panic(err)
		}
		// The state goes back to running just after the parking commits.
		if st[0].DeadLetters == 1 && st[0].Lag == 0 && st[0].State == projection.StateRunning {
			fmt.Println(st[0].Name, st[0].State, "dead letters:", st[0].DeadLetters)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	fmt.Println(<-done)
	// Output:
	// picky running dead letters: 1
	// <nil>
}
