package schema_test

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"testing"

	"github.com/strata-go/strata/schema"
)

// Customer is part of OrderPlaced from v3 on.
type Customer struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
}

// Item is one order line.
type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// OrderPlaced is the current (v3) shape of the event.
type OrderPlaced struct {
	OrderID     string   `json:"order_id"`
	Customer    Customer `json:"customer"`
	AmountCents int64    `json:"amount_cents"`
	Currency    string   `json:"currency"`
	Items       []Item   `json:"items,omitempty"`
	PlacedAt    string   `json:"placed_at,omitempty"`
}

// OrderShipped has a single version.
type OrderShipped struct {
	OrderID  string `json:"order_id"`
	Carrier  string `json:"carrier"`
	Tracking string `json:"tracking,omitempty"`
}

// upcastV1 turns v1's "amount" (a decimal number) into v2's "amount_cents".
func upcastV1(doc map[string]any) (map[string]any, error) {
	n, ok := doc["amount"].(json.Number)
	if !ok {
		return nil, errors.New("amount: want a number")
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > math.MaxInt64/200 {
		return nil, errors.New("amount: out of range")
	}
	delete(doc, "amount")
	doc["amount_cents"] = int64(math.Round(f * 100))
	return doc, nil
}

// upcastV2 turns v2's customer name into v3's customer object and adds the
// currency v1 and v2 implied.
func upcastV2(doc map[string]any) (map[string]any, error) {
	name, ok := doc["customer"].(string)
	if !ok {
		return nil, errors.New("customer: want a string")
	}
	doc["customer"] = map[string]any{"name": name}
	doc["currency"] = "EUR"
	return doc, nil
}

// newOrders returns a registry loaded from testdata/schemas with
// OrderPlaced at v3 (upcasters from v1 and v2) and OrderShipped at v1.
func newOrders(tb testing.TB) *schema.Registry {
	tb.Helper()
	reg := schema.NewRegistry()
	must(tb, reg.LoadFS(os.DirFS("testdata/schemas")))
	must(tb, schema.Register[OrderPlaced](reg, "OrderPlaced", 3, nil))
	must(tb, schema.Register[OrderShipped](reg, "OrderShipped", 1, nil))
	must(tb, reg.Upcast("OrderPlaced", 1, upcastV1))
	must(tb, reg.Upcast("OrderPlaced", 2, upcastV2))
	must(tb, reg.Sample(OrderPlaced{OrderID: "o-1", Customer: Customer{Name: "Ada"}, AmountCents: 1250, Currency: "EUR"}))
	must(tb, reg.Sample(&OrderShipped{OrderID: "o-1", Carrier: "DHL"}))
	return reg
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// v1Order is a typical stored v1 payload, about 300 bytes.
const v1Order = `{"order_id":"order-7f3c2a91-4b6e-4d8a-9c1f-2e5b7a9d0c11","customer":"Ada Lovelace",` +
	`"amount":1249.95,"items":[{"sku":"BOOK-ANALYTICAL-ENGINE","qty":1},{"sku":"PEN-FOUNTAIN-BLACK","qty":2},` +
	`{"sku":"PAPER-A4-500","qty":4},{"sku":"INK-BOTTLE-BLUE","qty":3},{"sku":"NOTEBOOK-GRID","qty":5},{"sku":"STAMP-SET","qty":1}]}`

// sampleOrder is the current-version value v1Order upcasts to, plus a
// timestamp and email.
func sampleOrder() OrderPlaced {
	return OrderPlaced{
		OrderID:     "order-7f3c2a91-4b6e-4d8a-9c1f-2e5b7a9d0c11",
		Customer:    Customer{Name: "Ada Lovelace", Email: "ada@example.com"},
		AmountCents: 124995,
		Currency:    "EUR",
		Items: []Item{{"BOOK-ANALYTICAL-ENGINE", 1}, {"PEN-FOUNTAIN-BLACK", 2}, {"PAPER-A4-500", 4},
			{"INK-BOTTLE-BLUE", 3}, {"NOTEBOOK-GRID", 5}},
		PlacedAt: "2026-03-14T15:09:26Z",
	}
}
