package schema_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// Payment is version 3 of the "PaymentReceived" event.
type Payment struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
}

var (
	// v1 had the amount in currency units.
	paymentV1 = []byte(`{"type":"object","required":["order_id","amount"],
		"properties":{"order_id":{"type":"string"},"amount":{"type":"number"}}}`)
	// v2 moved to cents.
	paymentV2 = []byte(`{"type":"object","required":["order_id","amount_cents"],
		"properties":{"order_id":{"type":"string"},"amount_cents":{"type":"integer"}}}`)
	// v3 added the currency.
	paymentV3 = []byte(`{"type":"object","required":["order_id","amount_cents","currency"],
		"additionalProperties":false,
		"properties":{"order_id":{"type":"string","minLength":1},"amount_cents":{"type":"integer","minimum":0},
		"currency":{"type":"string","enum":["EUR","USD"]}}}`)
)

func paymentRegistry() *schema.Registry {
	reg := schema.NewRegistry()
	for _, err := range []error{
		schema.Register[Payment](reg, "PaymentReceived", 3, paymentV3),
		reg.RegisterVersion("PaymentReceived", 1, paymentV1),
		reg.RegisterVersion("PaymentReceived", 2, paymentV2),
		reg.Upcast("PaymentReceived", 1, func(doc map[string]any) (map[string]any, error) {
			amount, err := doc["amount"].(json.Number).Float64()
			if err != nil {
				return nil, err
			}
			delete(doc, "amount")
			doc["amount_cents"] = int64(amount*100 + 0.5)
			return doc, nil
		}),
		reg.Upcast("PaymentReceived", 2, func(doc map[string]any) (map[string]any, error) {
			doc["currency"] = "EUR" // every payment before v3 was in euros
			return doc, nil
		}),
	} {
		if err != nil {
			panic(err)
		}
	}
	return reg
}

// Register a type with its current schema, then Encode a value of it into
// an event for the store.
func ExampleRegister() {
	reg := schema.NewRegistry()
	if err := schema.Register[Payment](reg, "PaymentReceived", 3, paymentV3); err != nil {
		fmt.Println(err)
		return
	}
	ev, err := reg.Encode(Payment{OrderID: "order-42", AmountCents: 1999, Currency: "EUR"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s v%d %s\n", ev.Type, ev.SchemaVersion, ev.Data)
	// Output: PaymentReceived v3 {"order_id":"order-42","amount_cents":1999,"currency":"EUR"}
}

// An invalid value is refused with the failing field's JSON Pointer.
func ExampleRegistry_Encode() {
	reg := paymentRegistry()
	_, err := reg.Encode(Payment{OrderID: "order-42", AmountCents: -5, Currency: "GBP"})
	fmt.Println(err)
	fmt.Println(errors.Is(err, eventstore.ErrInvalidEvent))
	// Output:
	// schema: invalid event "PaymentReceived" v3: /amount_cents: must be >= 0 but found -5; /currency: value must be one of "EUR", "USD"
	// true
}

// A stored v1 event goes through both upcasters and comes out as the
// current Go type.
func ExampleRegistry_Decode() {
	reg := paymentRegistry()
	stored := eventstore.Event{
		StreamID:      "order-42",
		Type:          "PaymentReceived",
		SchemaVersion: 1,
		Data:          []byte(`{"order_id":"order-42","amount":19.99}`),
	}
	v, err := reg.Decode(stored)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%T %+v\n", v, v)
	// Output: schema_test.Payment {OrderID:order-42 AmountCents:1999 Currency:EUR}
}

// DecodeAs returns the expected type directly.
func ExampleDecodeAs() {
	reg := paymentRegistry()
	p, err := schema.DecodeAs[Payment](reg, eventstore.Event{
		Type: "PaymentReceived", SchemaVersion: 2, Data: []byte(`{"order_id":"order-7","amount_cents":500}`),
	})
	fmt.Println(p.AmountCents, p.Currency, err)
	// Output: 500 EUR <nil>
}

// Unknown types and versions are invalid events too, told apart by their
// sentinels.
func ExampleValidationError() {
	reg := paymentRegistry()
	err := reg.Validate(eventstore.NewEvent{Type: "PaymentReceived", SchemaVersion: 9, Data: []byte(`{}`)})
	fmt.Println(err)
	fmt.Println(errors.Is(err, schema.ErrUnknownVersion), errors.Is(err, eventstore.ErrInvalidEvent))
	// Output:
	// schema: invalid event "PaymentReceived" v9: unknown schema version
	// true true
}
