package workflow_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/workflow"
	"github.com/strata-go/strata/workflow/workflowtest"
)

// The example's events.
type (
	Ordered struct {
		Order string `json:"order"`
	}
	PaymentReceived struct {
		Order string `json:"order"`
	}
	AwaitingPayment struct{}
	PaymentOK       struct{}
	PaymentLate     struct{}
	ChargeCard      struct {
		Order string `json:"order"`
	}
	CancelOrder struct {
		Order string `json:"order"`
	}
)

// Checkout is an instance's state.
type Checkout struct {
	Order   string
	Waiting bool
}

func checkoutDecide(s Checkout, in workflow.Input) (workflow.Decision, error) {
	if in.Deadline != nil { // "payment": 15 minutes without one
		return workflow.Decision{
			Events: []any{PaymentLate{}},
			Send:   []workflow.Message{workflow.Send("order-"+in.Key, CancelOrder{Order: in.Key})},
			Finish: true,
		}, nil
	}
	switch in.Event.(type) {
	case Ordered:
		return workflow.Decision{
			Events:   []any{AwaitingPayment{}},
			Send:     []workflow.Message{workflow.Send("card-"+in.Key, ChargeCard{Order: in.Key})},
			Schedule: []workflow.Deadline{{Name: "payment", At: in.Time.Add(15 * time.Minute)}},
		}, nil
	case PaymentReceived:
		if !s.Waiting {
			return workflow.Decision{}, nil
		}
		return workflow.Decision{Events: []any{PaymentOK{}}, Cancel: []string{"payment"}, Finish: true}, nil
	}
	return workflow.Decision{}, nil
}

func checkoutEvolve(s Checkout, ev any) Checkout {
	switch ev.(type) {
	case AwaitingPayment:
		s.Waiting = true
	case PaymentOK, PaymentLate:
		s.Waiting = false
	}
	return s
}

// A checkout that waits 15 minutes for the payment of an order, then
// cancels it. The clock is moved by hand, so the 15 minutes take none.
func Example() {
	pool, cleanup := pgtest.Example("example_workflow")
	defer cleanup()
	reg := schema.NewRegistry()
	anyObject := []byte(`{"type":"object"}`)
	for _, err := range []error{
		schema.Register[Ordered](reg, "Ordered", 1, anyObject),
		schema.Register[PaymentReceived](reg, "PaymentReceived", 1, anyObject),
		schema.Register[AwaitingPayment](reg, "AwaitingPayment", 1, anyObject),
		schema.Register[PaymentOK](reg, "PaymentOK", 1, anyObject),
		schema.Register[PaymentLate](reg, "PaymentLate", 1, anyObject),
		schema.Register[ChargeCard](reg, "ChargeCard", 1, anyObject),
		schema.Register[CancelOrder](reg, "CancelOrder", 1, anyObject),
	} {
		if err != nil {
			panic(err)
		}
	}
	store := eventstore.New(pool, &eventstore.Config{Schema: "example_workflow", Validator: reg})
	clock := workflowtest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	checkout := workflow.Workflow[Checkout]{
		Name:       "checkout",
		Categories: []string{"shop"},
		Route: func(e eventstore.Event, ev any) (string, bool) {
			switch v := ev.(type) {
			case Ordered:
				return v.Order, true
			case PaymentReceived:
				return v.Order, true
			}
			return "", false
		},
		Decide: checkoutDecide,
		Evolve: checkoutEvolve,
	}
	runner, err := workflow.New(store, reg, checkout, &workflow.Config{Clock: clock, PollInterval: 20 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- runner.Run(ctx) }()

	say := func(ev any) {
		ne, _ := reg.Encode(ev)
		if _, err := store.Append(ctx, "shop-1", eventstore.Any, ne); err != nil {
			panic(err)
		}
	}
	say(Ordered{Order: "A"})
	say(Ordered{Order: "B"})
	say(PaymentReceived{Order: "A"})
	waitFor(ctx, store, "checkout-A", 2)
	waitFor(ctx, store, "checkout-B", 1)
	clock.Advance(15 * time.Minute) // B's payment is late
	waitFor(ctx, store, "checkout-B", 2)
	cancel()
	<-done

	for _, stream := range []string{"checkout-A", "checkout-B", "card-A", "card-B", "order-B"} {
		fmt.Printf("%-10s %s\n", stream, strings.Join(types(context.Background(), store, stream), " "))
	}
	// Output:
	// checkout-A AwaitingPayment PaymentOK
	// checkout-B AwaitingPayment PaymentLate
	// card-A     ChargeCard
	// card-B     ChargeCard
	// order-B    CancelOrder
}

func types(ctx context.Context, store *eventstore.Store, stream string) []string {
	var out []string
	for e, err := range store.ReadStream(ctx, stream, 0) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			break
		}
		if err != nil {
			panic(err)
		}
		out = append(out, e.Type)
	}
	return out
}

func waitFor(ctx context.Context, store *eventstore.Store, stream string, n int) {
	for deadline := time.Now().Add(30 * time.Second); len(types(ctx, store, stream)) < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			panic("timed out waiting for " + stream)
		}
	}
}
