package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/workflow"
)

// The order-fulfilment workflow owns each order's flow: order placed →
// payment requested → payment completed (order confirmed) → confirmation
// sent, finished; or, when the payment is declined or not completed in
// time, order cancelled, finished. The notification service tells the
// customer either outcome; a payment that completes after the order was
// cancelled changes nothing (a real shop would refund it).
// Each order's instance is the stream "fulfilment-<order id>".

// FulfilmentStarted is the first event of an instance.
type FulfilmentStarted struct {
	OrderID    string `json:"order_id"`
	Customer   string `json:"customer"`
	Email      string `json:"email"`
	TotalCents int64  `json:"total_cents"`
	Currency   string `json:"currency"`
}

// PaymentConfirmed records that the payment completed in time.
type PaymentConfirmed struct {
	Method string `json:"method"`
}

// FulfilmentCompleted finishes an instance whose order is paid and
// confirmed.
type FulfilmentCompleted struct{}

// FulfilmentCancelled finishes an instance whose order was cancelled.
type FulfilmentCancelled struct {
	Reason string `json:"reason"`
}

// PaymentRequested is sent to the payment's stream: the payment service
// charges the order when it sees it.
type PaymentRequested struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
}

// PaymentFailed is the payment service's answer when the card is
// declined.
type PaymentFailed struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// OrderCancelled is sent to the order's stream; the notification service
// tells the customer.
type OrderCancelled struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// OrderConfirmed is sent to the order's stream once the payment completed
// in time; the notification service tells the customer.
type OrderConfirmed struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
}

// CancellationSent records the email telling the customer.
type CancellationSent struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer,omitempty"` // the data subject (see schemas/)
	Email    string `json:"email"`
	Subject  string `json:"subject"`
}

// registerFulfilment binds the workflow's event types (schemas under
// schemas/, loaded by newRegistry) to their Go types.
func registerFulfilment(reg *schema.Registry) error {
	return errors.Join(
		schema.Register[FulfilmentStarted](reg, "FulfilmentStarted", 1, nil),
		schema.Register[PaymentConfirmed](reg, "PaymentConfirmed", 1, nil),
		schema.Register[FulfilmentCompleted](reg, "FulfilmentCompleted", 1, nil),
		schema.Register[FulfilmentCancelled](reg, "FulfilmentCancelled", 1, nil),
		schema.Register[PaymentRequested](reg, "PaymentRequested", 1, nil),
		schema.Register[PaymentFailed](reg, "PaymentFailed", 1, nil),
		schema.Register[OrderCancelled](reg, "OrderCancelled", 1, nil),
		schema.Register[OrderConfirmed](reg, "OrderConfirmed", 1, nil),
		schema.Register[CancellationSent](reg, "CancellationSent", 1, nil),
	)
}

// Fulfilment is an instance's state.
type Fulfilment struct {
	Stage   stage
	OrderID string
}

// stage is where an order's fulfilment is.
type stage int

const (
	notStarted stage = iota
	awaitingPayment
	awaitingConfirmation
	done
)

// paymentDeadline names the instance's one deadline.
const paymentDeadline = "payment"

// fulfilmentWorkflow is the workflow, with the time a payment may take.
func fulfilmentWorkflow(paymentTimeout time.Duration) workflow.Workflow[Fulfilment] {
	return workflow.Workflow[Fulfilment]{
		Name:       "fulfilment",
		Categories: []string{"order", "payment", "notification"},
		Types:      []string{"OrderPlaced", "PaymentCompleted", "PaymentFailed", "ConfirmationSent"},
		Route:      routeFulfilment,
		Decide: func(s Fulfilment, in workflow.Input) (workflow.Decision, error) {
			return decideFulfilment(s, in, paymentTimeout)
		},
		Evolve: evolveFulfilment,
	}
}

// routeFulfilment sends each event to its order's instance.
func routeFulfilment(e eventstore.Event, ev any) (string, bool) {
	switch v := ev.(type) {
	case OrderPlaced:
		return strings.TrimPrefix(e.StreamID, "order-"), true
	case PaymentCompleted:
		return v.OrderID, true
	case PaymentFailed:
		return v.OrderID, true
	case ConfirmationSent:
		return v.OrderID, true
	}
	return "", false
}

// decideFulfilment is the workflow's decision: pure, the time comes with
// the input.
func decideFulfilment(s Fulfilment, in workflow.Input, paymentTimeout time.Duration) (workflow.Decision, error) {
	cancel := func(reason string) workflow.Decision {
		return workflow.Decision{
			Events: []any{FulfilmentCancelled{Reason: reason}},
			Send:   []workflow.Message{workflow.Send("order-"+in.Key, OrderCancelled{OrderID: in.Key, Reason: reason})},
			Finish: true,
		}
	}
	if in.Deadline != nil {
		if in.Deadline.Name != paymentDeadline || s.Stage != awaitingPayment {
			return workflow.Decision{}, nil
		}
		return cancel(fmt.Sprintf("payment not completed within %s", paymentTimeout)), nil
	}
	switch ev := in.Event.(type) {
	case OrderPlaced:
		if s.Stage != notStarted {
			return workflow.Decision{}, nil
		}
		return workflow.Decision{
			Events: []any{FulfilmentStarted{OrderID: in.Key, Customer: ev.Customer, Email: ev.Email, TotalCents: ev.TotalCents, Currency: ev.Currency}},
			Send: []workflow.Message{workflow.Send("payment-"+in.Key,
				PaymentRequested{OrderID: in.Key, AmountCents: ev.TotalCents, Currency: ev.Currency})},
			Schedule: []workflow.Deadline{{Name: paymentDeadline, At: in.Time.Add(paymentTimeout)}},
		}, nil
	case PaymentCompleted:
		if s.Stage != awaitingPayment {
			return workflow.Decision{}, nil
		}
		return workflow.Decision{
			Events: []any{PaymentConfirmed{Method: ev.Method}},
			Send: []workflow.Message{workflow.Send("order-"+in.Key,
				OrderConfirmed{OrderID: in.Key, AmountCents: ev.AmountCents, Currency: ev.Currency})},
			Cancel: []string{paymentDeadline},
		}, nil
	case PaymentFailed:
		if s.Stage != awaitingPayment {
			return workflow.Decision{}, nil
		}
		return cancel("payment declined: " + ev.Reason), nil
	case ConfirmationSent:
		if s.Stage != awaitingConfirmation {
			return workflow.Decision{}, nil
		}
		return workflow.Decision{Events: []any{FulfilmentCompleted{}}, Finish: true}, nil
	}
	return workflow.Decision{}, nil
}

// evolveFulfilment folds an instance's events into its state.
func evolveFulfilment(s Fulfilment, ev any) Fulfilment {
	switch e := ev.(type) {
	case FulfilmentStarted:
		s.Stage, s.OrderID = awaitingPayment, e.OrderID
	case PaymentConfirmed:
		s.Stage = awaitingConfirmation
	case FulfilmentCompleted, FulfilmentCancelled:
		s.Stage = done
	}
	return s
}

// sayReaction prints one line of the account per reaction of the
// workflow (workflow.Config.OnReaction).
func sayReaction(rc workflow.Reaction) {
	switch {
	case rc.Skipped || (rc.Events == 0 && rc.Sent == 0):
		return
	case rc.Deadline != nil:
		say("fulfilment", rc.Key, "deadline %q fired: order cancelled, customer to be told", rc.Deadline.Name)
	case rc.InputType == "OrderPlaced":
		say("fulfilment", rc.Key, "started: PaymentRequested sent, deadline %q scheduled", paymentDeadline)
	case rc.InputType == "PaymentCompleted":
		say("fulfilment", rc.Key, "payment completed in time: deadline cancelled, OrderConfirmed sent")
	case rc.InputType == "PaymentFailed":
		say("fulfilment", rc.Key, "payment declined: order cancelled, customer to be told")
	case rc.InputType == "ConfirmationSent":
		say("fulfilment", rc.Key, "confirmation sent: finished")
	}
}
