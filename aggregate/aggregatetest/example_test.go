package aggregatetest_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/aggregate/aggregatetest"
)

// The events of an order.
type (
	OrderPlaced struct {
		Customer string `json:"customer"`
		Total    int    `json:"total"`
	}
	OrderPaid struct {
		Amount int `json:"amount"`
	}
	OrderShipped struct {
		Carrier string `json:"carrier"`
	}
)

// Order is an aggregate: its commands check the rules and raise events;
// Apply changes its state.
type Order struct {
	aggregate.Root
	Status string `json:"status"`
	Total  int    `json:"total"`
	Paid   int    `json:"paid"`
}

var (
	ErrNotPlaced = errors.New("order not placed")
	ErrUnpaid    = errors.New("order not paid in full")
)

func (o *Order) Apply(ev any) {
	switch e := ev.(type) {
	case OrderPlaced:
		o.Status, o.Total = "placed", e.Total
	case OrderPaid:
		o.Paid += e.Amount
		if o.Paid >= o.Total {
			o.Status = "paid"
		}
	case OrderShipped:
		o.Status = "shipped"
	}
}

func (o *Order) Pay(amount int) error {
	if o.Status == "" {
		return ErrNotPlaced
	}
	o.Raise(OrderPaid{Amount: amount})
	return nil
}

func (o *Order) Ship(carrier string) error {
	if o.Status != "paid" {
		return ErrUnpaid
	}
	o.Raise(OrderShipped{Carrier: carrier})
	return nil
}

func newOrder(string) *Order { return &Order{} }

// printTB reports failures on standard output, so that the example can
// show them; in a test, pass the test's *testing.T.
type printTB struct{ testing.TB }

func (printTB) Helper()                        {}
func (printTB) Errorf(format string, a ...any) { fmt.Printf(format+"\n", a...) }
func (printTB) Fatalf(format string, a ...any) { fmt.Printf(format+"\n", a...) }

// Given past events, when a command runs, then expect events or an error.
// A mismatch is reported as a diff of the expected and the raised events.
func Example() {
	var t testing.TB = printTB{} // in a test: t *testing.T
	orders := aggregatetest.New(t, newOrder, nil)

	orders.Given(OrderPlaced{Customer: "ann", Total: 30}, OrderPaid{Amount: 30}).
		When(func(o *Order) error { return o.Ship("ups") }).
		Then(OrderShipped{Carrier: "ups"})

	orders.Given(OrderPlaced{Customer: "ann", Total: 30}).
		When(func(o *Order) error { return o.Ship("ups") }).
		ThenError(ErrUnpaid)

	// This one fails: the command raised another carrier.
	orders.Given(OrderPlaced{Customer: "ann", Total: 30}, OrderPaid{Amount: 30}).
		When(func(o *Order) error { return o.Ship("dhl") }).
		Then(OrderShipped{Carrier: "ups"})
	// Output:
	// aggregatetest: events differ (-want +got):
	//     aggregatetest_test.OrderShipped {
	//   -   "carrier": "ups"
	//   +   "carrier": "dhl"
	//     }
}
