package projection_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
)

// MoneyDeposited is an event of the example's accounts.
type MoneyDeposited struct {
	Cents int64 `json:"cents"`
}

// A projection whose handlers take decoded values: one function per
// event type, the aggregate ID recovered from the stream ID.
func ExampleTypedHandler() {
	store, cleanup := exampleStore("example_typed")
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := store.Pool()
	if _, err := pool.Exec(ctx, `CREATE TABLE example_typed.balances (account text PRIMARY KEY, cents bigint)`); err != nil {
		panic(err)
	}
	reg := schema.NewRegistry()
	if err := schema.Register[MoneyDeposited](reg, "MoneyDeposited", 1, []byte(`{"type":"object","required":["cents"]}`)); err != nil {
		panic(err)
	}
	h := projection.NewTypedHandler(reg, nil)
	err := projection.On(h, func(ctx context.Context, tx pgx.Tx, e projection.Decoded[MoneyDeposited]) error {
		_, err := tx.Exec(ctx, `INSERT INTO example_typed.balances VALUES ($1, $2)
			ON CONFLICT (account) DO UPDATE SET cents = balances.cents + $2`, e.AggregateID, e.Value.Cents)
		return err
	})
	if err != nil {
		panic(err)
	}
	for _, cents := range []int{500, 250} {
		if _, err := store.Append(ctx, "account-ada", eventstore.Any, eventstore.NewEvent{Type: "MoneyDeposited", Data: fmt.Appendf(nil, `{"cents":%d}`, cents)}); err != nil {
			panic(err)
		}
	}
	runner := projection.NewRunner(store, []projection.Projection{{Name: "balances", Handler: h, Types: h.Types()}}, nil)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- runner.Run(rctx) }()
	var cents int64
	for cents != 750 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		_ = pool.QueryRow(ctx, `SELECT cents FROM example_typed.balances WHERE account = 'ada'`).Scan(&cents)
	}
	stop()
	<-done
	fmt.Println("ada:", cents, "types:", h.Types())
	// Output:
	// ada: 750 types: [MoneyDeposited]
}
