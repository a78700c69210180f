package workflowtest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/workflow"
	"github.com/strata-go/strata/workflow/workflowtest"
)

// The events of a checkout.
type (
	Ordered         struct{ Order string }
	PaymentReceived struct{ Order string }
	AwaitingPayment struct{}
	PaymentOK       struct{}
	PaymentLate     struct{}
	CancelOrder     struct{ Order string }
)

type Checkout struct{ Waiting bool }

var checkout = workflow.Workflow[Checkout]{
	Name: "checkout",
	Route: func(e eventstore.Event, ev any) (string, bool) {
		return strings.TrimPrefix(e.StreamID, "shop-"), true
	},
	Decide: func(s Checkout, in workflow.Input) (workflow.Decision, error) {
		if in.Deadline != nil {
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
				Schedule: []workflow.Deadline{{Name: "payment", At: in.Time.Add(15 * time.Minute)}},
			}, nil
		case PaymentReceived:
			if !s.Waiting {
				return workflow.Decision{}, nil
			}
			return workflow.Decision{Events: []any{PaymentOK{}}, Cancel: []string{"payment"}, Finish: true}, nil
		}
		return workflow.Decision{}, fmt.Errorf("unexpected %T", in.Event)
	},
	Evolve: func(s Checkout, ev any) Checkout {
		_, s.Waiting = ev.(AwaitingPayment)
		return s
	},
}

// Given, when, then: the decisions of a workflow, its deadlines kept and
// fired as the runner would, without a database.
func ExampleFixture() {
	t := &testing.T{} // in a test: the test's *testing.T
	f := workflowtest.New(t, checkout, &workflowtest.Config{Key: "A"})

	// An order starts the wait.
	f.Given().
		When(Ordered{Order: "A"}).
		Then(workflowtest.Expect{
			Events:   []any{AwaitingPayment{}},
			Schedule: []workflow.Deadline{{Name: "payment", At: time.Date(2026, 1, 1, 0, 15, 0, 0, time.UTC)}},
		})

	// Fifteen minutes without a payment cancel the order.
	f.Given(AwaitingPayment{}).
		GivenDeadlines(workflow.Deadline{Name: "payment", At: time.Date(2026, 1, 1, 0, 15, 0, 0, time.UTC)}).
		WhenTimePasses(20 * time.Minute).
		Then(workflowtest.Expect{
			Events: []any{PaymentLate{}},
			Send:   []workflow.Message{workflow.Send("order-A", CancelOrder{Order: "A"})},
			Fired:  []string{"payment"},
			Finish: true,
		})

	// Steps chain: a payment in time cancels the deadline, which then
	// never fires.
	s := f.Given().When(Ordered{Order: "A"}).When(PaymentReceived{Order: "A"})
	s.Then(workflowtest.Expect{Events: []any{PaymentOK{}}, Cancel: []string{"payment"}, Finish: true})
	s.WhenTimePasses(time.Hour).Then(workflowtest.Expect{})

	fmt.Println("failed:", t.Failed())
	// Output:
	// failed: false
}
