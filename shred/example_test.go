package shred_test

import (
	"context"
	"fmt"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/shred"
)

// Customer is an event whose email is personal data of the customer.
type Customer struct {
	ID    string `json:"id" strata:"subject"`
	Email string `json:"email" strata:"personal"`
}

// Seal on append, open on read, forget the subject: its email reads
// back erased, the rest of the event unchanged.
func Example() {
	pool, cleanup := pgtest.Example("example_shred")
	defer cleanup()
	ctx := context.Background()

	reg := schema.NewRegistry()
	if err := schema.Register[Customer](reg, "CustomerRegistered", 1, []byte(`{"type":"object"}`)); err != nil {
		panic(err)
	}
	sh := shred.New(pool, &shred.Config{Schema: "example_shred", Registry: reg})
	store := eventstore.New(pool, &eventstore.Config{Schema: "example_shred", Validator: reg, Sealer: sh, Opener: sh})

	ev, _ := reg.Encode(Customer{ID: "c-7", Email: "ada@example.com"})
	if _, err := store.Append(ctx, "customer-7", eventstore.NoStream, ev); err != nil {
		panic(err)
	}
	show := func() {
		for e, err := range store.ReadStream(ctx, "customer-7", 0) {
			if err != nil {
				panic(err)
			}
			c, _ := schema.DecodeAs[Customer](reg, e)
			fmt.Printf("%s %s erased=%v\n", c.ID, c.Email, schema.IsErased(c.Email))
		}
	}
	show()
	if err := sh.Forget(ctx, "c-7"); err != nil {
		panic(err)
	}
	show()
	// Output:
	// c-7 ada@example.com erased=false
	// c-7 [erased] erased=true
}
