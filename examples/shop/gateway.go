package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/schema"
)

// gateway is the card network the payment service charges through, with
// failures on demand: every declineEvery-th order is declined, every
// hangEvery-th never answered (0: none).
type gateway struct {
	declineEvery, hangEvery int
}

// answer says what the card network does with an order's charge.
func (g gateway) answer(orderID string) string {
	n, _ := strconv.Atoi(orderID)
	switch {
	case g.hangEvery > 0 && n%g.hangEvery == 0:
		return "hang"
	case g.declineEvery > 0 && n%g.declineEvery == 0:
		return "decline"
	}
	return "ok"
}

// Decline is the command that records a declined charge.
func (p *Payment) Decline(orderID, reason string) error {
	if p.Completed {
		return ErrAlreadyPaid
	}
	p.Raise(PaymentFailed{OrderID: orderID, Reason: reason})
	return nil
}

// HandleRequest is the payment service's Watermill handler for the
// payments topic when the fulfilment workflow runs the flow: it charges
// the orders the workflow asks it to (PaymentRequested), through the
// gateway. Like Handle, it runs inside outbox.Deduplicate, in the
// transaction that records the message as handled.
func (s *paymentService) HandleRequest(gw gateway) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		e, err := outbox.EventFromMessage(msg)
		if err != nil {
			return err
		}
		if e.Type != "PaymentRequested" {
			return nil // the payment service's own events come back on this topic
		}
		req, err := schema.DecodeAs[PaymentRequested](s.reg, e)
		if err != nil {
			return err
		}
		id := req.OrderID
		answer := gw.answer(id)
		if answer == "hang" {
			say("payment", id, "%s: the card network does not answer (PaymentRequested %s)", money(req.AmountCents, req.Currency), short(e.ID.String()))
			return nil
		}
		tx, _ := outbox.TxFromContext(msg.Context())
		ctx := aggregate.WithMetadata(msg.Context(), eventstore.Metadata{CorrelationID: e.Metadata.CorrelationID, CausationID: e.ID.String()})
		err = s.repo.UpdateTx(ctx, tx, id, func(p *Payment) error {
			if answer == "decline" {
				return p.Decline(id, "card declined")
			}
			return p.Complete(id, req.AmountCents, req.Currency, "card")
		})
		if errors.Is(err, ErrAlreadyPaid) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pay order %s: %w", id, err)
		}
		if answer == "decline" {
			say("payment", id, "%s declined by the card network: PaymentFailed, caused by PaymentRequested %s", money(req.AmountCents, req.Currency), short(e.ID.String()))
			return nil
		}
		say("payment", id, "charged %s by card: PaymentCompleted, caused by PaymentRequested %s", money(req.AmountCents, req.Currency), short(e.ID.String()))
		return nil
	}
}
