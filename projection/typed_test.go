package projection_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
)

// Credited is version 2 of the event: version 1 had "amount" in euros.
type Credited struct {
	Cents int64 `json:"cents"`
}

// Debited takes cents off.
type Debited struct {
	Cents int64 `json:"cents"`
}

func typedRegistry(t *testing.T) *schema.Registry {
	t.Helper()
	reg := schema.NewRegistry()
	for _, err := range []error{
		reg.RegisterVersion("Credited", 1, []byte(`{"type":"object","required":["amount"],"properties":{"amount":{"type":"integer"}}}`)),
		schema.Register[Credited](reg, "Credited", 2, []byte(`{"type":"object","required":["cents"],"properties":{"cents":{"type":"integer"}}}`)),
		reg.Upcast("Credited", 1, func(doc map[string]any) (map[string]any, error) {
			n, err := doc["amount"].(json.Number).Int64()
			return map[string]any{"cents": n * 100}, err
		}),
		schema.Register[Debited](reg, "Debited", 1, []byte(`{"type":"object","required":["cents"],"properties":{"cents":{"type":"integer"}}}`)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// TestTypedHandler: per-type functions on decoded (upcast) values with
// the aggregate ID, under a Runner; events of other types are skipped,
// or go to Unhandled; registration errors are refused up front.
func TestTypedHandler(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg := typedRegistry(t)
	table := pgx.Identifier{db.Schema, "balances"}.Sanitize()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE `+table+` (id text PRIMARY KEY, cents bigint NOT NULL, last_event text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	add := func(ctx context.Context, tx pgx.Tx, id string, cents int64, e eventstore.Event) error {
		_, err := tx.Exec(ctx, `INSERT INTO `+table+` VALUES ($1, $2, $3)
			ON CONFLICT (id) DO UPDATE SET cents = balances.cents + $2, last_event = $3`, id, cents, e.ID.String())
		return err
	}
	var mu sync.Mutex
	var other []string
	h := projection.NewTypedHandler(reg, &projection.TypedConfig{Unhandled: projection.HandlerFunc(
		func(_ context.Context, _ pgx.Tx, e eventstore.Event) error {
			mu.Lock()
			defer mu.Unlock()
			other = append(other, e.Type)
			return nil
		})})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(projection.On(h, func(ctx context.Context, tx pgx.Tx, e projection.Decoded[Credited]) error {
		return add(ctx, tx, e.AggregateID, e.Value.Cents, e.Event)
	}))
	must(projection.On(h, func(ctx context.Context, tx pgx.Tx, e projection.Decoded[Debited]) error {
		return add(ctx, tx, e.AggregateID, -e.Value.Cents, e.Event)
	}))
	if err := projection.On(h, func(context.Context, pgx.Tx, projection.Decoded[Debited]) error { return nil }); err == nil {
		t.Error("a second handler for Debited was accepted")
	}
	type Unregistered struct{}
	if err := projection.On(h, func(context.Context, pgx.Tx, projection.Decoded[Unregistered]) error { return nil }); err == nil {
		t.Error("a handler for an unregistered type was accepted")
	}
	if got := fmt.Sprint(h.Types()); got != "[Credited Debited]" {
		t.Errorf("Types() = %s", got)
	}

	for _, a := range []struct {
		stream string
		ev     eventstore.NewEvent
	}{
		{"account-1", eventstore.NewEvent{Type: "Credited", SchemaVersion: 1, Data: []byte(`{"amount":5}`)}},
		{"account-1", eventstore.NewEvent{Type: "Debited", Data: []byte(`{"cents":120}`)}},
		{"account-x-7", eventstore.NewEvent{Type: "Credited", SchemaVersion: 2, Data: []byte(`{"cents":30}`)}},
		{"account-1", eventstore.NewEvent{Type: "Renamed", Data: []byte(`{}`)}},
	} {
		if _, err := s.Append(ctx, a.stream, eventstore.Any, a.ev); err != nil {
			t.Fatal(err)
		}
	}
	r := projection.NewRunner(s, []projection.Projection{{Name: "balances", Handler: h, OnFailure: eventstore.Stop}}, nil)
	runRunner(t, r)
	want := map[string]int64{"1": 380, "x-7": 30}
	pgtest.WaitFor(t, "the balances", 30*time.Second, func() bool {
		got := map[string]int64{}
		rows, _ := db.Pool.Query(ctx, `SELECT id, cents FROM `+table)
		var id string
		var cents int64
		_, err := pgx.ForEachRow(rows, []any{&id, &cents}, func() error { got[id] = cents; return nil })
		return err == nil && fmt.Sprint(got) == fmt.Sprint(want)
	})
	// The last event, of a type without a function, goes to Unhandled.
	pgtest.WaitFor(t, "the unhandled event", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(other) > 0
	})
	if st := statusOf(t, r, "balances"); st.LastError != "" {
		t.Errorf("projection error: %s", st.LastError)
	}
	mu.Lock()
	if fmt.Sprint(other) != "[Renamed]" {
		t.Errorf("Unhandled saw %v, want [Renamed]", other)
	}
	mu.Unlock()
	if projection.AggregateID("account-x-7") != "x-7" || projection.AggregateID("plain") != "plain" {
		t.Error("AggregateID")
	}
}
