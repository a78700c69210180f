package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/schema"
)

// PaymentCompleted is raised when an order's payment went through.
type PaymentCompleted struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Method      string `json:"method"`
}

// Payment is the payment service's aggregate, one per order: stream
// "payment-<order id>".
type Payment struct {
	aggregate.Root
	Completed   bool
	AmountCents int64
	Currency    string
}

// ErrAlreadyPaid is returned when an order's payment is completed twice.
var ErrAlreadyPaid = errors.New("payment already completed")

// Complete is the command that charges the customer.
func (p *Payment) Complete(orderID string, amountCents int64, currency, method string) error {
	if p.Completed {
		return ErrAlreadyPaid
	}
	p.Raise(PaymentCompleted{OrderID: orderID, AmountCents: amountCents, Currency: currency, Method: method})
	return nil
}

// Apply changes the state for one event.
func (p *Payment) Apply(ev any) {
	switch e := ev.(type) {
	case PaymentCompleted:
		p.Completed, p.AmountCents, p.Currency = true, e.AmountCents, e.Currency
	}
}

// paymentService charges every placed order. It consumes OrderPlaced
// messages from the broker and writes its own events, which the relay
// publishes in turn.
type paymentService struct {
	reg  *schema.Registry
	repo *aggregate.Repository[*Payment] // streams "payment-<order id>"
}

func newPaymentService(store *eventstore.Store, reg *schema.Registry) *paymentService {
	return &paymentService{reg: reg, repo: aggregate.NewRepository(store, reg, func(string) *Payment { return &Payment{} }, nil)}
}

// Handle is the Watermill handler for the orders topic. It runs inside
// outbox.Deduplicate, so it is called once per message even when the
// broker delivers it twice, in the transaction that records the message
// as handled: the payment's events commit with that record, or neither
// does and the message comes again.
func (s *paymentService) Handle(msg *message.Message) error {
	// The event the relayed message carries, as the store holds it, so
	// that the registry decodes it (upcasting old versions) like an event
	// read from the store.
	e, err := outbox.EventFromMessage(msg)
	if err != nil {
		return err
	}
	if e.Type != "OrderPlaced" {
		return nil // not ours to handle
	}
	placed, err := schema.DecodeAs[OrderPlaced](s.reg, e) // upcasts a v1 message
	if err != nil {
		return err
	}
	orderID := strings.TrimPrefix(e.StreamID, "order-")
	tx, _ := outbox.TxFromContext(msg.Context())

	// The payment's events carry the order's correlation ID, and the ID of
	// the event that caused them.
	ctx := aggregate.WithMetadata(msg.Context(), eventstore.Metadata{CorrelationID: e.Metadata.CorrelationID, CausationID: e.ID.String()})
	err = s.repo.UpdateTx(ctx, tx, orderID, func(p *Payment) error {
		return p.Complete(orderID, placed.TotalCents, placed.Currency, "card")
	})
	if errors.Is(err, ErrAlreadyPaid) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pay order %s: %w", orderID, err)
	}
	upcast := ""
	if e.SchemaVersion < 2 {
		upcast = fmt.Sprintf(" (OrderPlaced v%d message, upcast to v2)", e.SchemaVersion)
	}
	say("payment", orderID, "charged %s by card: PaymentCompleted, caused by OrderPlaced %s%s",
		money(placed.TotalCents, placed.Currency), short(e.ID.String()), upcast)
	return nil
}

// short abbreviates an event ID for the account: the random end of a
// UUIDv7 (its start is a timestamp, the same for events close in time).
func short(id string) string {
	if len(id) > 8 {
		return "…" + id[len(id)-8:]
	}
	return id
}
