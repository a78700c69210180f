package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/migrations"
	"github.com/strata-go/strata/schema"
)

// The events of an order, each registered with its JSON Schema.
type (
	OrderPlaced struct {
		Customer   string `json:"customer"`
		TotalCents int    `json:"total_cents"`
	}
	OrderPaid struct {
		AmountCents int `json:"amount_cents"`
	}
)

// Order is an aggregate: it embeds aggregate.Root, its commands check the
// rules and raise events, and Apply changes its state for each event.
type Order struct {
	aggregate.Root
	Status     string `json:"status"`
	TotalCents int    `json:"total_cents"`
	PaidCents  int    `json:"paid_cents"`
}

var (
	ErrOrderExists = errors.New("order already placed")
	ErrOrderPaid   = errors.New("order already paid")
)

func (o *Order) Place(customer string, totalCents int) error {
	if o.Version() != 0 {
		return ErrOrderExists
	}
	o.Raise(OrderPlaced{Customer: customer, TotalCents: totalCents})
	return nil
}

func (o *Order) Pay(amountCents int) error {
	if o.Status == "paid" {
		return ErrOrderPaid
	}
	o.Raise(OrderPaid{AmountCents: amountCents})
	return nil
}

// Apply changes state only: no checks, no I/O.
func (o *Order) Apply(ev any) {
	switch e := ev.(type) {
	case OrderPlaced:
		o.Status, o.TotalCents = "placed", e.TotalCents
	case OrderPaid:
		o.PaidCents += e.AmountCents
		if o.PaidCents >= o.TotalCents {
			o.Status = "paid"
		}
	}
}

func orderRegistry() *schema.Registry {
	reg := schema.NewRegistry()
	for _, err := range []error{
		schema.Register[OrderPlaced](reg, "OrderPlaced", 1, []byte(`{"type":"object","required":["customer","total_cents"],
			"properties":{"customer":{"type":"string","minLength":1},"total_cents":{"type":"integer","minimum":0}}}`)),
		schema.Register[OrderPaid](reg, "OrderPaid", 1, []byte(`{"type":"object","required":["amount_cents"],
			"properties":{"amount_cents":{"type":"integer","minimum":1}}}`)),
	} {
		if err != nil {
			panic(err)
		}
	}
	return reg
}

// A whole aggregate: events, state, commands, a repository, Update.
func Example() {
	ctx := context.Background()
	store, done := exampleStore(ctx)
	defer done()

	newOrder := func(id string) *Order { return &Order{} }
	repo := aggregate.NewRepository(store, orderRegistry(), newOrder, &aggregate.Config{SnapshotEvery: 100})

	// Every event saved under this context carries the request's ID.
	ctx = aggregate.WithMetadata(ctx, eventstore.Metadata{CorrelationID: "req-1"})
	if err := repo.Update(ctx, "42", func(o *Order) error { return o.Place("ann", 3000) }); err != nil {
		fmt.Println(err)
		return
	}
	if err := repo.Update(ctx, "42", func(o *Order) error { return o.Pay(3000) }); err != nil {
		fmt.Println(err)
		return
	}
	o, err := repo.Load(ctx, "42")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(repo.StreamID(o.ID()), "at version", o.Version(), "is", o.Status)

	// A command that breaks a rule writes nothing; its error comes back.
	err = repo.Update(ctx, "42", func(o *Order) error { return o.Pay(1) })
	fmt.Println(err, errors.Is(err, ErrOrderPaid))

	_, err = repo.Load(ctx, "43")
	fmt.Println(errors.Is(err, aggregate.ErrNotFound))
	// Output:
	// order-42 at version 2 is paid
	// order already paid true
	// true
}

// LoadAt shows an aggregate as it was, for an audit.
func ExampleRepository_LoadAt() {
	ctx := context.Background()
	store, done := exampleStore(ctx)
	defer done()
	repo := aggregate.NewRepository(store, orderRegistry(), func(string) *Order { return &Order{} }, nil)

	o := repo.New("7")
	if err := o.Place("bob", 1000); err != nil {
		fmt.Println(err)
		return
	}
	if err := repo.Save(ctx, o); err != nil {
		fmt.Println(err)
		return
	}
	if err := o.Pay(1000); err != nil {
		fmt.Println(err)
		return
	}
	if err := repo.Save(ctx, o); err != nil {
		fmt.Println(err)
		return
	}
	then, err := repo.LoadAt(ctx, "7", aggregate.At{Version: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("now:", o.Status, "- at version 1:", then.Status)
	// Output: now: paid - at version 1: placed
}

// exampleStore returns a store on a fresh schema of the test database
// (DATABASE_URL, or the local server), and a function dropping it.
func exampleStore(ctx context.Context) (*eventstore.Store, func()) {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test"
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		panic(err)
	}
	name := fmt.Sprintf("example_%d", time.Now().UnixNano())
	if err := migrations.Apply(ctx, pool, name); err != nil {
		panic(err)
	}
	return eventstore.New(pool, &eventstore.Config{Schema: name}), func() {
		_, _ = pool.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{name}.Sanitize()+` CASCADE`)
		pool.Close()
	}
}
