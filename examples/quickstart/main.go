// Command quickstart shows the event store in one screen: it migrates a
// schema, appends events to a stream, loses an optimistic-concurrency race
// on purpose, and reads the stream and the global log back.
//
//	go run ./examples/quickstart
//
// It connects to DATABASE_URL, or to postgres://postgres@127.0.0.1:5432/test,
// and works in the schema "strata_quickstart", which it drops at the end
// unless -keep is given.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/migrations"
)

func main() {
	keep := flag.Bool("keep", false, "keep the schema afterwards")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, keep bool) error {
	pool, err := pgxpool.New(ctx, cmp.Or(os.Getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/test"))
	if err != nil {
		return err
	}
	defer pool.Close()

	const schema = "strata_quickstart"
	if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
		return err
	}
	if !keep {
		defer pool.Exec(context.WithoutCancel(ctx), `DROP SCHEMA IF EXISTS `+schema+` CASCADE`)
	}
	if err := migrations.Apply(ctx, pool, schema); err != nil {
		return err
	}
	fmt.Printf("1. migrated schema %q\n", schema)

	store := eventstore.New(pool, &eventstore.Config{Schema: schema})
	placed := eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{"order":"42","total_cents":2599}`),
		Metadata: eventstore.Metadata{CorrelationID: "checkout-7"}}
	res, err := store.Append(ctx, "order-42", eventstore.NoStream, placed)
	if err != nil {
		return err
	}
	fmt.Printf("2. appended OrderPlaced to order-42: version %d, position %s\n", res.Version, res.Position)

	paid := eventstore.NewEvent{Type: "OrderPaid", Data: []byte(`{"order":"42","method":"card"}`)}
	res, err = store.Append(ctx, "order-42", eventstore.Exactly(1), paid)
	if err != nil {
		return err
	}
	fmt.Printf("3. appended OrderPaid expecting version 1: now at version %d\n", res.Version)

	// A second writer that read the order at version 1 loses the race.
	cancelled := eventstore.NewEvent{Type: "OrderCancelled", Data: []byte(`{"order":"42"}`)}
	_, err = store.Append(ctx, "order-42", eventstore.Exactly(1), cancelled)
	var conflict *eventstore.ConflictError
	if !errors.As(err, &conflict) {
		return fmt.Errorf("expected a conflict, got %v", err)
	}
	fmt.Printf("4. a stale writer expecting version %d was refused: stream is at %d (errors.Is ErrConflict: %v)\n",
		conflict.Expected, conflict.Actual, errors.Is(err, eventstore.ErrConflict))

	// Events, read-model rows and anything else can commit together.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := store.AppendTx(ctx, tx, "order-43", eventstore.NoStream,
			eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{"order":"43","total_cents":999}`)})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Println("5. appended order-43 inside a transaction of our own")

	fmt.Println("6. order-42, read back:")
	for e, err := range store.ReadStream(ctx, "order-42", 0) {
		if err != nil {
			return err
		}
		fmt.Printf("     v%d %-12s %s\n", e.Version, e.Type, e.Data)
	}

	fmt.Println("7. the global log, in gap-safe order:")
	// The log shows an event once no older transaction is still open, so
	// a reader may wait a moment behind someone else's transaction.
	after, seen := eventstore.Position{}, 0
	for deadline := time.Now().Add(30 * time.Second); seen < 3 && time.Now().Before(deadline); {
		page, err := store.ReadAll(ctx, after, 100)
		if err != nil {
			return err
		}
		for _, e := range page.Events {
			fmt.Printf("     %-12s %-9s %s\n", e.Position, e.StreamID, e.Type)
		}
		after, seen = page.Next, seen+len(page.Events)
		if len(page.Events) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	fmt.Println("done.")
	return nil
}
