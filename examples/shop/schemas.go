package main

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"

	"github.com/strata-go/strata/schema"
)

// The JSON Schema of every version of every event, one file each:
// schemas/<EventName>/v<N>.json.
//
//go:embed schemas
var schemaFiles embed.FS

// newRegistry loads the schema files and binds each event's current
// version to its Go type. OrderPlaced is at v2; events stored as v1 are
// brought up to date on read by upcastOrderPlacedV1.
func newRegistry() (*schema.Registry, error) {
	reg := schema.NewRegistry()
	files, err := fs.Sub(schemaFiles, "schemas")
	if err != nil {
		return nil, err
	}
	for _, err := range []error{
		reg.LoadFS(files),
		schema.Register[OrderPlaced](reg, "OrderPlaced", 2, nil), // nil: the loaded OrderPlaced/v2.json
		schema.Register[PaymentCompleted](reg, "PaymentCompleted", 1, nil),
		schema.Register[ConfirmationSent](reg, "ConfirmationSent", 1, nil),
		reg.Upcast("OrderPlaced", 1, upcastOrderPlacedV1),
	} {
		if err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// upcastOrderPlacedV1 turns an OrderPlaced v1 payload (amount in dollars,
// a JSON number) into v2 (total_cents and currency). Every v1 order was
// in US dollars.
func upcastOrderPlacedV1(doc map[string]any) (map[string]any, error) {
	amount, ok := doc["amount"].(json.Number)
	if !ok {
		return nil, fmt.Errorf("OrderPlaced v1: amount is %T, not a number", doc["amount"])
	}
	dollars, err := amount.Float64()
	if err != nil {
		return nil, fmt.Errorf("OrderPlaced v1: amount: %w", err)
	}
	delete(doc, "amount")
	doc["total_cents"] = int64(dollars*100 + 0.5)
	doc["currency"] = "USD"
	return doc, nil
}
