package main

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
)

// HandleOrderOutcome is the notification service's Watermill handler for
// the orders topic when the fulfilment workflow runs the flow: it tells
// the customer what the workflow decided, an order confirmed
// (ConfirmationSent) or cancelled (CancellationSent), once per order. It
// runs inside outbox.Deduplicate like Handle.
func (s *notificationService) HandleOrderOutcome(msg *message.Message) error {
	e, err := outbox.EventFromMessage(msg)
	if err != nil {
		return err
	}
	var orderID, subject string
	var sent any
	switch e.Type {
	case "OrderConfirmed", "OrderCancelled":
	default:
		return nil
	}
	v, err := s.reg.Decode(e)
	if err != nil {
		return err
	}
	ctx := msg.Context()
	tx, _ := outbox.TxFromContext(ctx)
	switch ev := v.(type) {
	case OrderConfirmed:
		orderID = ev.OrderID
		subject = fmt.Sprintf("Your order %s is confirmed: %s paid", orderID, money(ev.AmountCents, ev.Currency))
	case OrderCancelled:
		orderID = ev.OrderID
		subject = fmt.Sprintf("Your order %s is cancelled: %s", orderID, ev.Reason)
	}
	order, err := s.orders.LoadTx(ctx, tx, orderID)
	if err != nil {
		return fmt.Errorf("tell the customer of order %s: %w", orderID, err)
	}
	if e.Type == "OrderConfirmed" {
		sent = ConfirmationSent{OrderID: orderID, Customer: order.Customer, Email: order.Email, Subject: subject}
	} else {
		sent = CancellationSent{OrderID: orderID, Customer: order.Customer, Email: order.Email, Subject: subject}
	}
	ne, err := s.reg.Encode(sent)
	if err != nil {
		return err
	}
	ne.Metadata = eventstore.Metadata{CorrelationID: e.Metadata.CorrelationID, CausationID: e.ID.String()}
	// NoStream: one email per order, whatever happens.
	if _, err := s.store.AppendTx(ctx, tx, "notification-"+orderID, eventstore.NoStream, ne); err != nil {
		return fmt.Errorf("tell the customer of order %s: %w", orderID, err)
	}
	say("email", orderID, "to %s: %q, caused by %s %s", order.Email, subject, e.Type, short(e.ID.String()))
	return nil
}
