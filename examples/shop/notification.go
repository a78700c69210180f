package main

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/schema"
)

// ConfirmationSent records that the customer was told their order is
// paid: stream "notification-<order id>".
type ConfirmationSent struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer,omitempty"` // the data subject (see schemas/)
	Email    string `json:"email"`
	Subject  string `json:"subject"`
}

// notificationService emails the customer once an order is paid. It
// consumes PaymentCompleted messages and records each email it sends.
type notificationService struct {
	store  *eventstore.Store
	reg    *schema.Registry
	orders *aggregate.Repository[*Order] // to look up the customer's address
}

func newNotificationService(store *eventstore.Store, reg *schema.Registry, orders *aggregate.Repository[*Order]) *notificationService {
	return &notificationService{store: store, reg: reg, orders: orders}
}

// Handle is the Watermill handler for the payments topic, run inside
// outbox.Deduplicate like the payment service's.
func (s *notificationService) Handle(msg *message.Message) error {
	// The event the relayed message carries, as the store holds it, so
	// that the registry decodes it (upcasting old versions) like an event
	// read from the store.
	e, err := outbox.EventFromMessage(msg)
	if err != nil {
		return err
	}
	if e.Type != "PaymentCompleted" {
		return nil
	}
	paid, err := schema.DecodeAs[PaymentCompleted](s.reg, e)
	if err != nil {
		return err
	}
	ctx := msg.Context()
	tx, _ := outbox.TxFromContext(ctx)
	order, err := s.orders.LoadTx(ctx, tx, paid.OrderID)
	if err != nil {
		return fmt.Errorf("notify order %s: %w", paid.OrderID, err)
	}

	subject := fmt.Sprintf("Your order %s is confirmed: %s paid", paid.OrderID, money(paid.AmountCents, paid.Currency))
	sent, err := s.reg.Encode(ConfirmationSent{OrderID: paid.OrderID, Customer: order.Customer, Email: order.Email, Subject: subject})
	if err != nil {
		return err
	}
	sent.Metadata = eventstore.Metadata{CorrelationID: e.Metadata.CorrelationID, CausationID: e.ID.String()}
	// NoStream: one confirmation per order, whatever happens.
	if _, err := s.store.AppendTx(ctx, tx, "notification-"+paid.OrderID, eventstore.NoStream, sent); err != nil {
		return fmt.Errorf("notify order %s: %w", paid.OrderID, err)
	}
	// "Send" the email. A real mailer would be called here, or better,
	// from a relay of ConfirmationSent events, once this transaction
	// has committed.
	say("email", paid.OrderID, "to %s: %q, caused by PaymentCompleted %s", order.Email, subject, short(e.ID.String()))
	return nil
}
