package schema_test

import (
	"encoding/json"
	"testing"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// FuzzDecode feeds arbitrary bytes as the payload of a v1 event through
// both upcasters: Decode returns a value or an error, never panics, and a
// value it returns encodes back into a valid current event.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		v1Order,
		`{"order_id":"o","customer":"c","amount":0}`,
		`{"order_id":"o","customer":"c","amount":1e3}`,
		`{"order_id":"o","customer":"c","amount":-1}`,
		`{"order_id":"o","customer":7,"amount":1}`,
		`{"order_id":"o","customer":"c","amount":"1"}`,
		`{"order_id":"o","customer":"c","amount":1,"items":[{"sku":"\u00e9","qty":1}]}`,
		`{"order_id":"o","customer":"c","amount":1,"extra":true}`,
		`[]`, `null`, `"x"`, `{`, ``, `{"a":1}{}`,
	} {
		f.Add([]byte(seed))
	}
	reg := newOrders(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, version := range []int{1, 2, 3} {
			e := eventstore.Event{Type: "OrderPlaced", SchemaVersion: version, Data: data}
			v, err := schema.DecodeAs[OrderPlaced](reg, e)
			if err != nil || version == 3 {
				continue // v3 is decoded as stored, without validation
			}
			if _, err := reg.Encode(v); err != nil {
				t.Fatalf("v%d %q decoded to %+v, which does not encode: %v", version, data, v, err)
			}
		}
	})
}

// FuzzFastPath checks that the fast path never accepts what the full
// validator refuses, on arbitrary payloads against every test schema.
func FuzzFastPath(f *testing.F) {
	for _, seed := range []string{
		v1Order,
		`{"order_id":"o","customer":{"name":"n","email":"a@b.c"},"amount_cents":0,"currency":"EUR"}`,
		`{"order_id":"o","customer":{"name":"n"},"amount_cents":-0,"currency":"EUR","placed_at":"2026-01-02T03:04:05Z"}`,
		`{"order_id":"o","customer":{"name":"\u00e9"},"amount_cents":1.0,"currency":"EU\u0052"}`,
		`{"order_id":"o","customer":{"name":"n"},"amount_cents":-0.5,"currency":"EUR","items":[{"sku":"s","qty":1e0}]}`,
		`{"order_id":"o","order_id":"","customer":"c","amount":1}`,
		`{"order_id":"o","carrier":"x","tracking":null}`,
	} {
		f.Add([]byte(seed))
	}
	reg := newOrders(f)
	versions := []struct {
		typ string
		n   int
	}{{"OrderPlaced", 1}, {"OrderPlaced", 2}, {"OrderPlaced", 3}, {"OrderShipped", 1}}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range versions {
			fast, slow := schema.ValidateBoth(reg, v.typ, v.n, data)
			if fast && slow != nil {
				t.Fatalf("%s v%d: the fast path accepts %q, the validator refuses it: %v", v.typ, v.n, data, slow)
			}
		}
		// The fast path must not accept what is not JSON.
		if fast, _ := schema.ValidateBoth(reg, "OrderShipped", 1, data); fast && !json.Valid(data) {
			t.Fatalf("the fast path accepts invalid JSON %q", data)
		}
	})
}
