package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// OrderPlaced starts every order's stream. This is version 2 of its
// schema (schemas/OrderPlaced/v2.json); version 1 had the amount in
// dollars, and events stored as v1 arrive here upcast (see schemas.go).
type OrderPlaced struct {
	Customer   string `json:"customer"`
	Email      string `json:"email"`
	TotalCents int64  `json:"total_cents"`
	Currency   string `json:"currency"`
}

// Order is the order service's aggregate: its state is rebuilt from its
// events, and its commands check the rules before raising new ones.
type Order struct {
	aggregate.Root
	Placed     bool
	Customer   string
	Email      string
	TotalCents int64
	Currency   string
}

// ErrOrderExists is returned when an order ID is placed twice.
var ErrOrderExists = errors.New("order already placed")

// Place is the command that places the order.
func (o *Order) Place(customer, email string, totalCents int64, currency string) error {
	if o.Placed {
		return ErrOrderExists
	}
	if totalCents <= 0 {
		return fmt.Errorf("order total must be positive, got %d cents", totalCents)
	}
	o.Raise(OrderPlaced{Customer: customer, Email: email, TotalCents: totalCents, Currency: currency})
	return nil
}

// Apply changes the state for one event: no checks, no I/O.
func (o *Order) Apply(ev any) {
	switch e := ev.(type) {
	case OrderPlaced:
		o.Placed = true
		o.Customer, o.Email, o.TotalCents, o.Currency = e.Customer, e.Email, e.TotalCents, e.Currency
	}
}

// orderService takes orders. It only writes events: the relay publishes
// them, and the payment service takes over from there.
type orderService struct {
	store *eventstore.Store
	repo  *aggregate.Repository[*Order] // streams "order-<id>"
}

func newOrderService(store *eventstore.Store, reg *schema.Registry) *orderService {
	return &orderService{
		store: store,
		repo:  aggregate.NewRepository(store, reg, func(string) *Order { return &Order{} }, nil),
	}
}

// Place places an order under a new correlation ID, which every event
// the order causes, in every service, will carry.
func (s *orderService) Place(ctx context.Context, id, customer string, totalCents int64) error {
	correlation := newCorrelationID()
	ctx = aggregate.WithMetadata(ctx, eventstore.Metadata{CorrelationID: correlation})
	email := customer + "@example.com"
	err := s.repo.Update(ctx, id, func(o *Order) error { return o.Place(customer, email, totalCents, "USD") })
	if err != nil {
		return fmt.Errorf("place order %s: %w", id, err)
	}
	say("order", id, "placed: %s for %s, correlation %s", money(totalCents, "USD"), customer, correlation)
	return nil
}

// SeedLegacy appends an order exactly as the first release of the shop
// stored it, OrderPlaced schema v1 with the amount in dollars, as if it
// had been in the store since before v2. Loading it shows the upcast.
func (s *orderService) SeedLegacy(ctx context.Context, id string) error {
	v1 := eventstore.NewEvent{
		Type:          "OrderPlaced",
		SchemaVersion: 1,
		Data:          []byte(`{"customer":"margaret","email":"margaret@example.com","amount":42.5}`),
		Metadata:      eventstore.Metadata{CorrelationID: newCorrelationID()},
	}
	if _, err := s.store.Append(ctx, s.repo.StreamID(id), eventstore.NoStream, v1); err != nil {
		return fmt.Errorf("seed order %s: %w", id, err)
	}
	say("seed", id, "OrderPlaced v1 stored as %s, correlation %s", v1.Data, v1.Metadata.CorrelationID)

	o, err := s.repo.Load(ctx, id) // decodes the v1 event through the upcaster
	if err != nil {
		return fmt.Errorf("load seeded order %s: %w", id, err)
	}
	say("upcast", id, "OrderPlaced v1 read as v2: total_cents=%d currency=%s (%s for %s)",
		o.TotalCents, o.Currency, money(o.TotalCents, o.Currency), o.Customer)
	return nil
}

// newCorrelationID returns a short random ID for one request.
func newCorrelationID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "req-" + hex.EncodeToString(b[:])
}

// money formats an amount in cents: "$42.50".
func money(cents int64, currency string) string {
	symbol := currency + " "
	switch currency {
	case "USD":
		symbol = "$"
	case "EUR":
		symbol = "€"
	}
	return fmt.Sprintf("%s%d.%02d", symbol, cents/100, cents%100)
}
