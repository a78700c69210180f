package aggregate_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/schema"
)

// Two aggregates of different types changed in one transaction: paying an
// order takes the money from the customer's wallet, or neither changes.
// A race lost to another writer reruns the function on fresh aggregates.
func ExampleUnitOfWork() {
	ctx := context.Background()
	store, done := exampleStore(ctx)
	defer done()
	reg := schema.NewRegistry()
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(schema.Register[OrderPlaced](reg, "OrderPlaced", 1, []byte(`{"type":"object"}`)))
	must(schema.Register[OrderPaid](reg, "OrderPaid", 1, []byte(`{"type":"object"}`)))
	must(schema.Register[WalletCharged](reg, "WalletCharged", 1, []byte(`{"type":"object"}`)))
	must(schema.Register[WalletFunded](reg, "WalletFunded", 1, []byte(`{"type":"object"}`)))
	orders := aggregate.NewRepository(store, reg, func(string) *Order { return &Order{} }, nil)
	wallets := aggregate.NewRepository(store, reg, func(string) *Wallet { return &Wallet{} }, nil)

	uow := aggregate.NewUnitOfWork(store, nil)
	pay := func(orderID, walletID string) error {
		return uow.Run(ctx, func(ctx context.Context, s *aggregate.Session) error {
			o, err := aggregate.Get(ctx, s, orders, orderID)
			if err != nil {
				return err
			}
			w, err := aggregate.GetOrNew(ctx, s, wallets, walletID)
			if err != nil {
				return err
			}
			if err := o.Pay(o.TotalCents); err != nil {
				return err
			}
			return w.Charge(o.TotalCents)
		})
	}
	o := orders.New("42")
	must(o.Place("ada", 2599))
	must(orders.Save(ctx, o))
	must(wallets.Update(ctx, "ada", func(w *Wallet) error { w.Raise(WalletFunded{Cents: 3000}); return nil }))

	fmt.Println("first payment:", pay("42", "ada"))
	err := pay("42", "ada")
	fmt.Println("second payment refused:", errors.Is(err, ErrOrderPaid))
	w, _ := wallets.Load(ctx, "ada")
	o, _ = orders.Load(ctx, "42")
	fmt.Println("wallet:", w.Cents, "order:", o.Status, "streams:", orders.StreamID("42"), wallets.StreamID("ada"))
	// Output:
	// first payment: <nil>
	// second payment refused: true
	// wallet: 401 order: paid streams: order-42 wallet-ada
}

// Wallet is a second aggregate type.
type Wallet struct {
	aggregate.Root
	Cents int `json:"cents"`
}

type (
	WalletFunded  struct{ Cents int }
	WalletCharged struct{ Cents int }
)

var ErrNoFunds = errors.New("not enough money in the wallet")

func (w *Wallet) Charge(cents int) error {
	if w.Cents < cents {
		return ErrNoFunds
	}
	w.Raise(WalletCharged{Cents: cents})
	return nil
}

func (w *Wallet) Apply(ev any) {
	switch e := ev.(type) {
	case WalletFunded:
		w.Cents += e.Cents
	case WalletCharged:
		w.Cents -= e.Cents
	}
}
