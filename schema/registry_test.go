package schema_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

func TestDecodeUpcastsThreeVersions(t *testing.T) {
	t.Parallel()
	reg := newOrders(t)
	v, err := reg.Decode(eventstore.Event{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := v.(OrderPlaced)
	if !ok {
		t.Fatalf("Decode returned %T, want OrderPlaced", v)
	}
	want := sampleOrder()
	want.Customer.Email, want.PlacedAt = "", ""
	want.Items = append(want.Items, Item{"STAMP-SET", 1})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode v1:\n got %+v\nwant %+v", got, want)
	}

	// v2 runs only the second upcaster.
	v2 := `{"order_id":"o-2","customer":"Grace","amount_cents":700}`
	got2, err := schema.DecodeAs[OrderPlaced](reg, eventstore.Event{Type: "OrderPlaced", SchemaVersion: 2, Data: []byte(v2)})
	if err != nil {
		t.Fatal(err)
	}
	if want := (OrderPlaced{OrderID: "o-2", Customer: Customer{Name: "Grace"}, AmountCents: 700, Currency: "EUR"}); !reflect.DeepEqual(got2, want) {
		t.Fatalf("Decode v2: got %+v, want %+v", got2, want)
	}

	// The current version is unmarshalled as stored.
	ev, err := reg.Encode(sampleOrder())
	if err != nil {
		t.Fatal(err)
	}
	got3, err := schema.DecodeAs[OrderPlaced](reg, eventstore.Event{Type: ev.Type, SchemaVersion: ev.SchemaVersion, Data: ev.Data})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got3, sampleOrder()) {
		t.Fatalf("Decode v3: got %+v", got3)
	}
}

func TestEncode(t *testing.T) {
	t.Parallel()
	reg := newOrders(t)
	o := sampleOrder()
	for _, v := range []any{o, &o} {
		ev, err := reg.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != "OrderPlaced" || ev.SchemaVersion != 3 {
			t.Fatalf("Encode(%T) = %s v%d, want OrderPlaced v3", v, ev.Type, ev.SchemaVersion)
		}
		if err := reg.Validate(ev); err != nil {
			t.Fatalf("Validate(Encode(...)): %v", err)
		}
	}
	_, err := reg.Encode(struct{ X int }{})
	if !errors.Is(err, schema.ErrUnknownType) {
		t.Fatalf("Encode of an unregistered type: %v, want ErrUnknownType", err)
	}
	if _, err := reg.Encode(nil); err == nil {
		t.Fatal("Encode(nil) succeeded")
	}
	if _, err := reg.Encode((*OrderPlaced)(nil)); err == nil {
		t.Fatal("Encode of a nil pointer succeeded")
	}
}

func TestInvalidPayloadNamesPointer(t *testing.T) {
	t.Parallel()
	reg := newOrders(t)

	bad := sampleOrder()
	bad.AmountCents = -5
	bad.Items[2].Qty = 0
	_, err := reg.Encode(bad)
	var ve *schema.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Encode of an invalid value: %v, want *ValidationError", err)
	}
	if !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatal("errors.Is(err, eventstore.ErrInvalidEvent) is false")
	}
	if errors.Is(err, schema.ErrUnknownType) || errors.Is(err, schema.ErrUnknownVersion) {
		t.Fatal("an invalid payload matches an unknown-type or unknown-version sentinel")
	}
	if ve.EventType != "OrderPlaced" || ve.Version != 3 {
		t.Fatalf("ValidationError names %s v%d", ve.EventType, ve.Version)
	}
	msg := err.Error()
	for _, want := range []string{`"OrderPlaced"`, "v3", "/amount_cents", "/items/2/qty"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not name %s", msg, want)
		}
	}
	pointers := map[string]bool{}
	for _, f := range ve.Failures {
		pointers[f.Pointer] = true
		if f.Reason == "" {
			t.Errorf("failure at %q has no reason", f.Pointer)
		}
	}
	if !pointers["/amount_cents"] || !pointers["/items/2/qty"] {
		t.Fatalf("failures %v: want /amount_cents and /items/2/qty", ve.Failures)
	}

	// The same through Validate, on hand-written payloads.
	for _, tc := range []struct{ data, pointer string }{
		{`{"order_id":"o","customer":"c","amount":"12"}`, "/amount"},
		{`{"order_id":"o","customer":"c"}`, ""},
		{`{"order_id":"o","customer":"c","amount":1,"items":[{"sku":"a","qty":1.5}]}`, "/items/0/qty"},
		{`{"order_id":`, ""},
		{`{"order_id":"o","customer":"c","amount":1} {}`, ""},
	} {
		err := reg.Validate(eventstore.NewEvent{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(tc.data)})
		if !errors.As(err, &ve) || !errors.Is(err, eventstore.ErrInvalidEvent) {
			t.Fatalf("Validate(%s): %v, want *ValidationError", tc.data, err)
		}
		if len(ve.Failures) == 0 || ve.Failures[0].Pointer != tc.pointer || ve.Version != 1 {
			t.Fatalf("Validate(%s): %#v, want a failure at %q in v1", tc.data, ve, tc.pointer)
		}
	}
	if err := reg.Validate(eventstore.NewEvent{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)}); err != nil {
		t.Fatalf("Validate of a valid v1 event: %v", err)
	}
	// A format is asserted, not only annotated.
	bad = sampleOrder()
	bad.PlacedAt = "yesterday"
	if _, err := reg.Encode(bad); !errors.As(err, &ve) || ve.Failures[0].Pointer != "/placed_at" {
		t.Fatalf("Encode with a bad date-time: %v", err)
	}
}

func TestUnknownTypeAndVersion(t *testing.T) {
	t.Parallel()
	reg := newOrders(t)
	for _, tc := range []struct {
		name    string
		typ     string
		version int
		want    error
	}{
		{"unknown type", "OrderCancelled", 1, schema.ErrUnknownType},
		{"newer version", "OrderPlaced", 4, schema.ErrUnknownVersion},
		{"zero version means 1, unregistered", "OrderShipped", 0, nil},
		{"version never registered", "OrderShipped", 2, schema.ErrUnknownVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(`{"order_id":"o","carrier":"UPS"}`)
			err := reg.Validate(eventstore.NewEvent{Type: tc.typ, SchemaVersion: tc.version, Data: data})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ve *schema.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, eventstore.ErrInvalidEvent) || !errors.Is(err, tc.want) {
				t.Fatalf("Validate: %v, want a *ValidationError matching ErrInvalidEvent and %v", err, tc.want)
			}
			if ve.EventType != tc.typ || !strings.Contains(err.Error(), tc.typ) {
				t.Fatalf("error %q does not name %s", err, tc.typ)
			}
			// Decode refuses the same events the same way.
			_, err = reg.Decode(eventstore.Event{Type: tc.typ, SchemaVersion: tc.version, Data: data})
			if !errors.Is(err, eventstore.ErrInvalidEvent) || !errors.Is(err, tc.want) {
				t.Fatalf("Decode: %v, want ErrInvalidEvent and %v", err, tc.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	reg := newOrders(t)
	dec := func(v int, data string) error {
		_, err := reg.Decode(eventstore.Event{Type: "OrderPlaced", SchemaVersion: v, Data: []byte(data)})
		return err
	}
	// An upcaster's own error is wrapped with the versions.
	err := dec(1, `{"order_id":"o","customer":"c","amount":"x"}`)
	if err == nil || !strings.Contains(err.Error(), "upcast v1 to v2") || !strings.Contains(err.Error(), "amount") {
		t.Fatalf("Decode with a failing upcaster: %v", err)
	}
	// The upcast result is validated against the current schema.
	var ve *schema.ValidationError
	err = dec(2, `{"order_id":"o","customer":"","amount_cents":1}`)
	if !errors.As(err, &ve) || ve.Version != 3 || ve.Failures[0].Pointer != "/customer/name" {
		t.Fatalf("Decode of an event that upcasts to an invalid v3: %v", err)
	}
	if err := dec(1, `[1,2]`); !errors.As(err, &ve) || !strings.Contains(err.Error(), "array") {
		t.Fatalf("Decode of a v1 array: %v", err)
	}
	if err := dec(1, `{`); !errors.As(err, &ve) || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("Decode of broken JSON: %v", err)
	}
	if _, err := schema.DecodeAs[OrderShipped](reg, eventstore.Event{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)}); err == nil {
		t.Fatal("DecodeAs with the wrong type succeeded")
	}
	if v, err := schema.DecodeAs[any](reg, eventstore.Event{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)}); err != nil {
		t.Fatal(err)
	} else if _, ok := v.(OrderPlaced); !ok {
		t.Fatalf("DecodeAs[any] returned %T", v)
	}

	// A panicking upcaster is an error, and a missing one is ErrNoUpcast.
	r2 := schema.NewRegistry()
	must(t, r2.RegisterVersion("E", 1, []byte(`{}`)))
	must(t, r2.RegisterVersion("E", 2, []byte(`{}`)))
	must(t, schema.Register[OrderShipped](r2, "E", 3, []byte(`{}`)))
	must(t, r2.Upcast("E", 1, func(doc map[string]any) (map[string]any, error) {
		return doc, doc["x"].(map[string]any)["y"].(error) // panics
	}))
	must(t, r2.Upcast("E", 2, func(doc map[string]any) (map[string]any, error) { return doc, nil }))
	if _, err := r2.Decode(eventstore.Event{Type: "E", SchemaVersion: 1, Data: []byte(`{}`)}); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("Decode through a panicking upcaster: %v", err)
	}
	r4 := schema.NewRegistry()
	must(t, r4.RegisterVersion("E", 1, []byte(`{}`)))
	must(t, schema.Register[OrderShipped](r4, "E", 2, []byte(`{}`)))
	if _, err := r4.Decode(eventstore.Event{Type: "E", SchemaVersion: 1, Data: []byte(`{}`)}); !errors.Is(err, schema.ErrNoUpcast) {
		t.Fatalf("Decode without an upcaster: %v, want ErrNoUpcast", err)
	}
	// Schemas without a Go type validate but do not decode.
	r3 := schema.NewRegistry()
	must(t, r3.RegisterVersion("Loose", 1, []byte(`{"type":"object"}`)))
	must(t, r3.Validate(eventstore.NewEvent{Type: "Loose", Data: []byte(`{}`)}))
	if _, err := r3.Decode(eventstore.Event{Type: "Loose", SchemaVersion: 1, Data: []byte(`{}`)}); !errors.Is(err, schema.ErrUnknownType) {
		t.Fatalf("Decode of a type without Go type: %v", err)
	}
}

func TestLoadFSReportsBadFiles(t *testing.T) {
	t.Parallel()
	good := []byte(`{"type":"object"}`)
	fsys := fstest.MapFS{
		"OrderPlaced/v1.json":   {Data: good},
		"OrderPlaced/v2.json":   {Data: []byte(`{"type":"object","properties":{"amount":{"type":"nmber"}}}`)},
		"OrderShipped/v1.json":  {Data: []byte(`{"type": "object",`)},
		"OrderShipped/v2.json":  {Data: []byte(`{"$schema":"http://json-schema.org/draft-04/schema#"}`)},
		"OrderShipped/V3.json":  {Data: good},
		"OrderShipped/notes.md": {Data: []byte("ignored")},
		"Paid/v1.json":          {Data: []byte(`{"$ref":"https://example.com/other.json"}`)},
		"README.md":             {Data: []byte("ignored")},
	}
	reg := schema.NewRegistry()
	err := reg.LoadFS(fsys)
	if err == nil {
		t.Fatal("LoadFS accepted invalid schemas")
	}
	msg := err.Error()
	t.Log(msg)
	for _, file := range []string{"OrderPlaced/v2.json", "OrderShipped/v1.json", "OrderShipped/v2.json", "OrderShipped/V3.json", "Paid/v1.json"} {
		if !strings.Contains(msg, file) {
			t.Errorf("error does not name %s", file)
		}
	}
	if strings.Contains(msg, "OrderPlaced/v1.json") || strings.Contains(msg, "README") || strings.Contains(msg, "notes.md") {
		t.Errorf("error names a good or ignored file")
	}
	if !strings.Contains(msg, "OrderPlaced/v2.json: not a valid JSON Schema: /properties/amount/type: value must be one of") {
		t.Errorf("error does not say what is wrong with OrderPlaced/v2.json")
	}
	// Nothing was registered.
	if err := reg.Validate(eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{}`)}); !errors.Is(err, schema.ErrUnknownType) {
		t.Fatalf("a failed LoadFS registered schemas: %v", err)
	}

	// A good tree loads, and Register binds to the loaded schema.
	reg = schema.NewRegistry()
	must(t, reg.LoadFS(fstest.MapFS{"OrderShipped/v1.json": {Data: good}}))
	must(t, schema.Register[OrderShipped](reg, "OrderShipped", 1, nil))
	if _, err := reg.Encode(OrderShipped{OrderID: "o", Carrier: "c"}); err != nil {
		t.Fatal(err)
	}
	// Loading the same version again is refused, naming the file.
	if err := reg.LoadFS(fstest.MapFS{"OrderShipped/v1.json": {Data: good}}); err == nil || !strings.Contains(err.Error(), "OrderShipped/v1.json") {
		t.Fatalf("loading a version twice: %v", err)
	}
}

func TestRegisterRules(t *testing.T) {
	t.Parallel()
	obj := []byte(`{"type":"object"}`)
	reg := schema.NewRegistry()
	must(t, schema.Register[OrderShipped](reg, "OrderShipped", 2, obj))
	for name, err := range map[string]error{
		"same type, other name":       schema.Register[OrderShipped](reg, "Shipped", 1, obj),
		"same name, other type":       schema.Register[OrderPlaced](reg, "OrderShipped", 3, obj),
		"pointer type":                schema.Register[*OrderPlaced](reg, "OrderPlaced", 1, obj),
		"interface type":              schema.Register[any](reg, "Anything", 1, obj),
		"empty name":                  schema.Register[OrderPlaced](reg, "", 1, obj),
		"version zero":                schema.Register[OrderPlaced](reg, "OrderPlaced", 0, obj),
		"nil schema, none loaded":     schema.Register[OrderPlaced](reg, "OrderPlaced", 1, nil),
		"invalid schema":              schema.Register[OrderPlaced](reg, "OrderPlaced", 1, []byte(`{"type":5}`)),
		"not JSON":                    schema.Register[OrderPlaced](reg, "OrderPlaced", 1, []byte(`{`)),
		"version newer than current":  reg.RegisterVersion("OrderShipped", 3, obj),
		"current version again":       reg.RegisterVersion("OrderShipped", 2, obj),
		"upcast from current":         reg.Upcast("OrderShipped", 2, upcastV1),
		"upcast of unknown type":      reg.Upcast("Nope", 1, upcastV1),
		"nil upcaster":                reg.Upcast("OrderShipped", 1, nil),
		"sample of unregistered type": reg.Sample(OrderPlaced{}),
		"nil sample":                  reg.Sample(nil),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	must(t, reg.RegisterVersion("OrderShipped", 1, obj))
	must(t, reg.Upcast("OrderShipped", 1, upcastV1))
	if err := reg.Upcast("OrderShipped", 1, upcastV1); err == nil {
		t.Error("a second upcaster from one version was accepted")
	}

	// Register of a version older than a loaded one.
	r2 := schema.NewRegistry()
	must(t, r2.RegisterVersion("E", 2, obj))
	if err := schema.Register[OrderShipped](r2, "E", 1, obj); err == nil {
		t.Error("Register of v1 with v2 registered was accepted")
	}
	if err := schema.Register[OrderShipped](r2, "E", 2, obj); err == nil {
		t.Error("Register with a schema for a loaded version was accepted")
	}
	must(t, schema.Register[OrderShipped](r2, "E", 2, nil))
}

func TestCheck(t *testing.T) {
	t.Parallel()
	if err := newOrders(t).Check(); err != nil {
		t.Fatalf("Check of a consistent registry: %v", err)
	}

	reg := schema.NewRegistry()
	must(t, reg.LoadFS(fstest.MapFS{
		"OrderPlaced/v1.json": {Data: []byte(`{}`)},
		"OrderPlaced/v2.json": {Data: []byte(`{}`)},
		"OrderPlaced/v3.json": {Data: []byte(`{"type":"object","required":["order_id"],"properties":{"order_id":{"minLength":1}}}`)},
		"Orphan/v1.json":      {Data: []byte(`{}`)},
	}))
	must(t, schema.Register[OrderPlaced](reg, "OrderPlaced", 3, nil))
	must(t, reg.Upcast("OrderPlaced", 2, upcastV2))
	type Lossy struct {
		N any `json:"n"` // a big integer comes back as a float64
	}
	must(t, schema.Register[Lossy](reg, "Lossy", 1, []byte(`{}`)))
	must(t, reg.Sample(Lossy{N: int64(1<<60 + 1)}))

	err := reg.Check()
	if err == nil {
		t.Fatal("Check found nothing")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{
		`"OrderPlaced" v1 cannot be read: no upcaster from v1 to v2`,
		`the zero value of schema_test.OrderPlaced is not valid`,
		`/order_id`,
		`Registry.Sample`,
		`"Orphan" has schemas (v1) but no Go type`,
		`"Lossy": sample 1 of schema_test.Lossy does not round-trip`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Check does not report %s", want)
		}
	}
	if strings.Contains(msg, "v2 cannot be read") {
		t.Error("Check reports v2, which has an upcaster")
	}
}

func TestCheckEvents(t *testing.T) {
	t.Parallel()
	reg := newOrders(t)
	cur, err := reg.Encode(sampleOrder())
	must(t, err)
	events := []eventstore.Event{
		{StreamID: "order-1", Version: 1, Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)},
		{StreamID: "order-1", Version: 2, Type: "OrderShipped", SchemaVersion: 1, Data: []byte(`{"order_id":"o","carrier":"UPS"}`)},
		{StreamID: "order-2", Version: 1, Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(`{"order_id":"o","customer":"c"}`)}, // v1 invalid
		{StreamID: "order-3", Version: 1, Type: "OrderPlaced", SchemaVersion: 3, Data: cur.Data},
		{StreamID: "order-4", Version: 1, Type: "OrderPlaced", SchemaVersion: 3, Data: []byte(`{"order_id":"o"}`)}, // current invalid
		{StreamID: "order-5", Version: 1, Type: "OrderRefunded", SchemaVersion: 1, Data: []byte(`{}`)},
	}
	all := func(yield func(eventstore.Event, error) bool) {
		for _, e := range events {
			if !yield(e, nil) {
				return
			}
		}
	}
	rep, err := reg.CheckEvents(context.Background(), all, 2)
	must(t, err)
	if rep.Checked != 6 || rep.Failed != 3 || len(rep.Failures) != 2 {
		t.Fatalf("report: checked %d, failed %d, %d failures kept; want 6, 3, 2", rep.Checked, rep.Failed, len(rep.Failures))
	}
	if rep.Failures[0].Event.StreamID != "order-2" || !strings.Contains(rep.Failures[0].Err.Error(), "amount") {
		t.Fatalf("first failure: %s: %v", rep.Failures[0].Event.StreamID, rep.Failures[0].Err)
	}
	if rep.Failures[1].Event.StreamID != "order-4" {
		t.Fatalf("second failure: %s: %v", rep.Failures[1].Event.StreamID, rep.Failures[1].Err)
	}

	// A source error stops the check and is returned with the report.
	boom := errors.New("connection lost")
	var failing iter.Seq2[eventstore.Event, error] = func(yield func(eventstore.Event, error) bool) {
		if yield(events[0], nil) {
			yield(eventstore.Event{}, boom)
		}
	}
	rep, err = reg.CheckEvents(context.Background(), failing, 0)
	if !errors.Is(err, boom) || rep.Checked != 1 {
		t.Fatalf("CheckEvents with a failing source: %v, checked %d", err, rep.Checked)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := reg.CheckEvents(ctx, all, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("CheckEvents with a cancelled context: %v", err)
	}
}

func TestMarshalJSON(t *testing.T) {
	t.Parallel()
	reg := newOrders(t)
	data, err := json.Marshal(reg)
	must(t, err)
	var doc struct {
		Types []struct {
			Name           string `json:"name"`
			GoType         string `json:"goType"`
			CurrentVersion int    `json:"currentVersion"`
			Versions       []struct {
				Version      int             `json:"version"`
				Source       string          `json:"source"`
				UpcastToNext bool            `json:"upcastToNext"`
				Schema       json.RawMessage `json:"schema"`
			} `json:"versions"`
		} `json:"types"`
	}
	must(t, json.Unmarshal(data, &doc))
	if len(doc.Types) != 2 || doc.Types[0].Name != "OrderPlaced" || doc.Types[1].Name != "OrderShipped" {
		t.Fatalf("export: %s", data)
	}
	op := doc.Types[0]
	if op.CurrentVersion != 3 || op.GoType != "github.com/strata-go/strata/schema_test.OrderPlaced" || len(op.Versions) != 3 {
		t.Fatalf("OrderPlaced exported as %+v", op)
	}
	for i, v := range op.Versions {
		if v.Version != i+1 || v.UpcastToNext != (i < 2) || v.Source != fmt.Sprintf("OrderPlaced/v%d.json", i+1) || !json.Valid(v.Schema) {
			t.Fatalf("OrderPlaced version %d exported as %+v", i+1, v)
		}
	}
}

func TestConcurrentEncodeDecode(t *testing.T) {
	t.Parallel()
	reg := newOrders(t)
	const workers, rounds = 16, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				o := sampleOrder()
				o.OrderID = fmt.Sprintf("order-%d-%d", w, i)
				ev, err := reg.Encode(&o)
				if err != nil {
					errs <- err
					return
				}
				if err := reg.Validate(ev); err != nil {
					errs <- err
					return
				}
				got, err := schema.DecodeAs[OrderPlaced](reg, eventstore.Event{Type: ev.Type, SchemaVersion: ev.SchemaVersion, Data: ev.Data})
				if err != nil || got.OrderID != o.OrderID {
					errs <- fmt.Errorf("decode current: %v, %q", err, got.OrderID)
					return
				}
				v, err := reg.Decode(eventstore.Event{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)})
				if err != nil || v.(OrderPlaced).AmountCents != 124995 {
					errs <- fmt.Errorf("decode v1: %v, %+v", err, v)
					return
				}
			}
		})
	}
	// Registration while others read: a new type appears, old ones stay.
	wg.Go(func() {
		for i := range 20 {
			name := fmt.Sprintf("Extra%d", i)
			if err := reg.RegisterVersion(name, 1, []byte(`{"type":"object"}`)); err != nil {
				errs <- err
				return
			}
		}
		if err := schema.Register[struct{ N int }](reg, "Extra", 1, []byte(`{"type":"object"}`)); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
