package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/schema"
)

// The shop's event types (examples/shop), with the shop's own schema
// files: an order is placed, paid, and its confirmation sent.
type (
	OrderPlaced struct {
		Customer   string `json:"customer"`
		Email      string `json:"email"`
		TotalCents int64  `json:"total_cents"`
		Currency   string `json:"currency"`
	}
	PaymentCompleted struct {
		OrderID     string `json:"order_id"`
		AmountCents int64  `json:"amount_cents"`
		Currency    string `json:"currency"`
		Method      string `json:"method"`
	}
	ConfirmationSent struct {
		OrderID string `json:"order_id"`
		Email   string `json:"email"`
		Subject string `json:"subject"`
	}
)

// shopRegistry loads examples/shop/schemas and binds the current versions;
// OrderPlaced v1 (dollars) is upcast to v2 (cents) on read.
func shopRegistry(t testing.TB) *schema.Registry {
	t.Helper()
	reg := schema.NewRegistry()
	for _, err := range []error{
		reg.LoadFS(os.DirFS("../examples/shop/schemas")),
		schema.Register[OrderPlaced](reg, "OrderPlaced", 2, nil),
		schema.Register[PaymentCompleted](reg, "PaymentCompleted", 1, nil),
		schema.Register[ConfirmationSent](reg, "ConfirmationSent", 1, nil),
		reg.Upcast("OrderPlaced", 1, func(doc map[string]any) (map[string]any, error) {
			n, ok := doc["amount"].(json.Number)
			if !ok {
				return nil, fmt.Errorf("amount is %T", doc["amount"])
			}
			f, err := n.Float64()
			if err != nil {
				return nil, err
			}
			delete(doc, "amount")
			doc["total_cents"], doc["currency"] = int64(f*100+0.5), "USD"
			return doc, nil
		}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// shop is a store with the shop's history and subscriptions running.
type shop struct {
	db    *pgtest.DB
	store *eventstore.Store
	reg   *schema.Registry
	// fraudFails makes the fraud check fail on order-1002's events (and
	// so park them) while it is set.
	fraudFails atomic.Bool
	// start runs one more subscription until the test ends.
	start func(eventstore.SubscriptionConfig, eventstore.Handler)
}

// newShop makes a fresh schema with orders placed, paid and notified, an
// older OrderPlaced v1, and the shop's subscriptions running until the
// test ends: the summary projection (4 partitions), the relay, a Pub/Sub
// group, and a fraud check that parks order-1002.
func newShop(t *testing.T, orders int) *shop {
	t.Helper()
	return newShopOn(t, pgtest.New(t), orders)
}

// newShopOn is newShop on a schema made by the caller.
func newShopOn(t *testing.T, db *pgtest.DB, orders int) *shop {
	t.Helper()
	sh := &shop{db: db, reg: shopRegistry(t)}
	sh.store = eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, Validator: sh.reg})
	sh.fraudFails.Store(true)
	ctx := t.Context()
	legacy := eventstore.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: "OrderPlaced", SchemaVersion: 1,
		Data:     []byte(`{"customer":"edsger","email":"edsger@example.com","amount":12.5}`),
		Metadata: eventstore.Metadata{CorrelationID: "corr-1000"}}
	if _, err := sh.store.Append(ctx, "order-1000", eventstore.NoStream, legacy); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= orders; i++ {
		sh.placeOrder(t, 1000+i)
	}
	sh.run(t)
	return sh
}

// placeOrder appends an order's three events, each caused by the one
// before, all with the correlation ID corr-N.
func (sh *shop) placeOrder(t testing.TB, n int) {
	t.Helper()
	ctx := context.Background()
	corr := fmt.Sprintf("corr-%d", n)
	id := fmt.Sprint(n)
	enc := func(v any, cause string) eventstore.NewEvent {
		ev, err := sh.reg.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		ev.ID = uuid.Must(uuid.NewV7())
		ev.Metadata = eventstore.Metadata{CorrelationID: corr, CausationID: cause, Values: map[string]string{"user": "ada"}}
		return ev
	}
	placed := enc(OrderPlaced{Customer: "ada", Email: "ada@example.com", TotalCents: 1999 + int64(n), Currency: "EUR"}, "cmd-place-"+id)
	paid := enc(PaymentCompleted{OrderID: id, AmountCents: 1999 + int64(n), Currency: "EUR", Method: "card"}, placed.ID.String())
	sent := enc(ConfirmationSent{OrderID: id, Email: "ada@example.com", Subject: "Your order " + id}, paid.ID.String())
	for _, a := range []struct {
		stream string
		ev     eventstore.NewEvent
	}{{"order-" + id, placed}, {"payment-" + id, paid}, {"notification-" + id, sent}} {
		if _, err := sh.store.Append(ctx, a.stream, eventstore.Any, a.ev); err != nil {
			t.Fatal(err)
		}
	}
}

// run starts the shop's subscriptions; they stop when the test ends.
func (sh *shop) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := func(cfg eventstore.SubscriptionConfig, h eventstore.Handler) {
		cfg.PollInterval = 50 * time.Millisecond
		cfg.Owner = "shop-test:" + cfg.Name
		sub, err := sh.store.Subscription(cfg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := sub.Run(ctx, h); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", cfg.Name, err)
			}
		})
	}
	sh.start = start
	ok := func(context.Context, pgx.Tx, []eventstore.Event) error { return nil }
	start(eventstore.SubscriptionConfig{Name: "projection:order_summary", Partitions: 4}, ok)
	start(eventstore.SubscriptionConfig{Name: "outbox:relay", Categories: []string{"order", "payment"}}, ok)
	start(eventstore.SubscriptionConfig{Name: "pubsub/notification/shop.payment", Categories: []string{"payment"}}, ok)
	start(eventstore.SubscriptionConfig{Name: "projection:fraud_check", Categories: []string{"order"},
		MaxAttempts: 2, RetryBackoff: time.Millisecond, MaxRetryBackoff: time.Millisecond},
		func(_ context.Context, _ pgx.Tx, events []eventstore.Event) error {
			for _, e := range events {
				if e.StreamID == "order-1002" && sh.fraudFails.Load() {
					return errors.New("fraud check: card issuer <b>declined</b> the risk score request (HTTP 503)")
				}
			}
			return nil
		})
	t.Cleanup(func() { cancel(); wg.Wait() })
}
