package schema_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/schema"
)

// TestStoreRefusesInvalidAppend appends three events, the last invalid,
// through a store that uses the registry as its Validator: the append
// fails with the registry's error and writes nothing.
func TestStoreRefusesInvalidAppend(t *testing.T) {
	t.Parallel()
	reg := newOrders(t)
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, Validator: reg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	placed, err := reg.Encode(sampleOrder())
	must(t, err)
	shipped, err := reg.Encode(OrderShipped{OrderID: "o-1", Carrier: "DHL"})
	must(t, err)
	bad := eventstore.NewEvent{Type: "OrderShipped", SchemaVersion: 1, Data: []byte(`{"order_id":"o-1","carrier":""}`)}

	const stream = "order-1"
	_, err = store.Append(ctx, stream, eventstore.NoStream, placed, shipped, bad)
	var ve *schema.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Append: %v, want a *schema.ValidationError", err)
	}
	if !errors.Is(err, eventstore.ErrInvalidEvent) || ve.EventType != "OrderShipped" || ve.Failures[0].Pointer != "/carrier" {
		t.Fatalf("Append: %v", err)
	}
	if _, err := store.StreamVersion(ctx, stream); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("StreamVersion after a refused append: %v, want ErrStreamNotFound", err)
	}

	// Unknown types are refused the same way.
	_, err = store.Append(ctx, stream, eventstore.NoStream, eventstore.NewEvent{Type: "Nope", Data: []byte(`{}`)})
	if !errors.Is(err, schema.ErrUnknownType) || !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("Append of an unknown type: %v", err)
	}

	// Valid events, including an old version, go in and decode, and
	// CheckEvents reads them back from the store.
	v1 := eventstore.NewEvent{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)}
	if _, err := store.Append(ctx, stream, eventstore.NoStream, v1, placed, shipped); err != nil {
		t.Fatal(err)
	}
	var decoded []any
	for e, err := range store.ReadStream(ctx, stream, 0) {
		must(t, err)
		v, err := reg.Decode(e)
		must(t, err)
		decoded = append(decoded, v)
	}
	if len(decoded) != 3 || decoded[0].(OrderPlaced).Currency != "EUR" || decoded[2].(OrderShipped).Carrier != "DHL" {
		t.Fatalf("decoded %+v", decoded)
	}
	rep, err := reg.CheckEvents(ctx, store.ReadStream(ctx, stream, 0), 10)
	must(t, err)
	if rep.Checked != 3 || rep.Failed != 0 {
		t.Fatalf("CheckEvents over the stream: %+v", rep)
	}
}
