package aggregate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/schema"
)

// The benchmarks' event: about 300 bytes of nested JSON, the payload shape
// of notes/perf-baseline.md.
type (
	ItemsAdded struct {
		OrderID  string   `json:"order_id"`
		Items    []Line   `json:"items"`
		Shipping Shipping `json:"shipping"`
		Note     string   `json:"note"`
	}
	Line struct {
		SKU        string `json:"sku"`
		Qty        int    `json:"qty"`
		PriceCents int64  `json:"price_cents"`
	}
	Shipping struct {
		Name    string `json:"name"`
		Street  string `json:"street"`
		City    string `json:"city"`
		Country string `json:"country"`
	}
)

// Cart is the benchmarks' aggregate.
type Cart struct {
	aggregate.Root
	Lines      int    `json:"lines"`
	TotalCents int64  `json:"total_cents"`
	City       string `json:"city"`
}

func (c *Cart) Apply(ev any) {
	if e, ok := ev.(ItemsAdded); ok {
		c.apply(e)
	}
}

func (c *Cart) apply(e ItemsAdded) {
	for _, l := range e.Items {
		c.Lines++
		c.TotalCents += int64(l.Qty) * l.PriceCents
	}
	c.City = e.Shipping.City
}

func newCart(string) *Cart { return &Cart{} }

func itemsAdded(i int) ItemsAdded {
	return ItemsAdded{
		OrderID: fmt.Sprintf("order-%08d", i),
		Items: []Line{
			{SKU: "SKU-RED-SHIRT-M", Qty: 2, PriceCents: 1999},
			{SKU: "SKU-BLUE-JEANS-32", Qty: 1, PriceCents: 4999},
			{SKU: "SKU-SOCKS-3PK", Qty: 3, PriceCents: 899},
		},
		Shipping: Shipping{Name: "Ann Example", Street: "12 Long Street", City: "Berlin", Country: "DE"},
		Note:     "leave at the door",
	}
}

type benchEnv struct {
	db    *pgtest.DB
	store *eventstore.Store
	reg   *schema.Registry
	table string
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	db := pgtest.New(b)
	reg := schema.NewRegistry()
	must(b, schema.Register[ItemsAdded](reg, "ItemsAdded", 1, []byte(`{"type":"object","required":["order_id","items"],
		"properties":{"order_id":{"type":"string"},"items":{"type":"array"},"shipping":{"type":"object"},"note":{"type":"string"}}}`)))
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, Validator: reg, NotifyInterval: -1})
	return &benchEnv{db: db, store: store, reg: reg, table: pgx.Identifier{db.Schema, "events"}.Sanitize()}
}

// fill saves n events to the cart, in saves of at most 100 events.
func fill(b *testing.B, repo *aggregate.Repository[*Cart], id string, n int) {
	b.Helper()
	ctx := context.Background()
	c, err := repo.Load(ctx, id)
	if err != nil {
		c = repo.New(id)
	}
	for i := 0; i < n; {
		for k := 0; k < 100 && i < n; k, i = k+1, i+1 {
			c.Raise(itemsAdded(i))
		}
		must(b, repo.Save(ctx, c))
	}
}

// rawLoad is the baseline of a load: the cheapest plain pgx read of the
// stream's rows, each unmarshalled into its Go type and applied.
func rawLoad(ctx context.Context, pool *pgxpool.Pool, table, stream string) (Cart, error) {
	var c Cart
	rows, err := pool.Query(ctx, `SELECT version, event_type, data FROM `+table+` WHERE stream_id = $1 ORDER BY version`, stream)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	var (
		version int64
		typ     string
		data    []byte
	)
	for rows.Next() {
		if err := rows.Scan(&version, &typ, &data); err != nil {
			return c, err
		}
		if typ == "ItemsAdded" {
			var e ItemsAdded
			if err := json.Unmarshal(data, &e); err != nil {
				return c, err
			}
			c.apply(e)
		}
	}
	return c, rows.Err()
}

// rawSnapshotLoad is the baseline of a load from a snapshot: the cheapest
// plain pgx read of the snapshot row, unmarshalled, then of the rows after
// it, each unmarshalled and applied.
func rawSnapshotLoad(ctx context.Context, pool *pgxpool.Pool, schemaName, stream string) (Cart, error) {
	var c Cart
	var version int64
	var data []byte
	err := pool.QueryRow(ctx, `SELECT version, data FROM `+pgx.Identifier{schemaName, "snapshots"}.Sanitize()+` WHERE stream_id = $1`, stream).Scan(&version, &data)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, err
	}
	rows, err := pool.Query(ctx, `SELECT version, event_type, data FROM `+pgx.Identifier{schemaName, "events"}.Sanitize()+
		` WHERE stream_id = $1 AND version > $2 ORDER BY version`, stream, version)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	var typ string
	for rows.Next() {
		if err := rows.Scan(&version, &typ, &data); err != nil {
			return c, err
		}
		if typ == "ItemsAdded" {
			var e ItemsAdded
			if err := json.Unmarshal(data, &e); err != nil {
				return c, err
			}
			c.apply(e)
		}
	}
	return c, rows.Err()
}

// BenchmarkLoad loads a 10,000-event aggregate without snapshots, beside
// the raw pgx read of the same rows; then with a snapshot every 100 events
// (the snapshot at the head; and 99 events after it, the worst case),
// beside a raw pgx read of the snapshot row and the rows after it. Each
// pair is timed alternately in one loop; the figures are medians, in ms.
// Small loads are not timed in the loop of the large ones: the garbage a
// 10,000-event load leaves slows whatever runs next.
//
//	go test -run '^$' -bench BenchmarkLoad -benchtime 20x ./aggregate/
func BenchmarkLoad(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	plain := aggregate.NewRepository(e.store, e.reg, newCart, nil)
	snap := aggregate.NewRepository(e.store, e.reg, newCart, &aggregate.Config{SnapshotEvery: 100})
	fill(b, plain, "plain", 10_000)
	fill(b, snap, "snap", 10_000)
	fill(b, snap, "tail", 10_000)
	fill(b, plain, "tail", 99) // no snapshot for these: the load reads 99 events after the snapshot

	var rawFull float64 // median ms of the raw read of all 10,000 rows, from the first case
	cases := []struct {
		name     string
		repo     *aggregate.Repository[*Cart]
		id       string
		events   int
		baseline func(stream string) (Cart, error)
		what     string
	}{
		{"nosnapshot", plain, "plain", 10_000, func(stream string) (Cart, error) { return rawLoad(ctx, e.db.Pool, e.table, stream) },
			"raw pgx read of the 10000 rows + json.Unmarshal"},
		{"snapshot100", snap, "snap", 10_000, func(stream string) (Cart, error) { return rawSnapshotLoad(ctx, e.db.Pool, e.db.Schema, stream) },
			"raw pgx read of the snapshot row + the 0 rows after it"},
		{"snapshot100-tail99", snap, "tail", 10_099, func(stream string) (Cart, error) { return rawSnapshotLoad(ctx, e.db.Pool, e.db.Schema, stream) },
			"raw pgx read of the snapshot row + the 99 rows after it"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var strata, raw []time.Duration
			for b.Loop() {
				t0 := time.Now()
				got, err := c.repo.Load(ctx, c.id)
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				base, err := c.baseline("cart-" + c.id)
				if err != nil {
					b.Fatal(err)
				}
				strata, raw = append(strata, t1.Sub(t0)), append(raw, time.Since(t1))
				if got.Version() != int64(c.events) || got.Lines != base.Lines || base.Lines != c.events*3 {
					b.Fatalf("loaded version %d, %d lines; baseline %d lines", got.Version(), got.Lines, base.Lines)
				}
			}
			s, r := median(strata), median(raw)
			b.ReportMetric(s, "strata-ms")
			b.ReportMetric(r, "raw-ms")
			b.ReportMetric(s/r, "x_baseline")
			b.Logf("load of %d events, %s: strata %.2f ms; %s %.2f ms; ratio %.3f", c.events, c.name, s, c.what, r, s/r)
			if c.name == "nosnapshot" {
				rawFull = r
			} else if rawFull > 0 {
				b.Logf("  against the raw read of all 10000 rows (%.2f ms): ratio %.4f", rawFull, s/rawFull)
			}
		})
	}
}

// median returns the median of ds in milliseconds.
func median(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}

// BenchmarkUpdate is Update's round trip on one aggregate (load, run,
// append one event) beside the raw pgx work on the same rows (read the
// stream's rows and unmarshal them, then insert one event row with
// autocommit), timed in the same loop. Each aggregate takes 100 updates,
// then the next one starts, so that every iteration reads 0-99 rows in
// both. "strata-snap100" is Update with SnapshotEvery 100, which also
// reads the snapshot row.
//
//	go test -run '^$' -bench BenchmarkUpdate -benchtime 2000x ./aggregate/
func BenchmarkUpdate(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	plain := aggregate.NewRepository(e.store, e.reg, newCart, nil)
	snap := aggregate.NewRepository(e.store, e.reg, newCart, &aggregate.Config{Category: "snapcart", SnapshotEvery: 100})
	ev, err := e.reg.Encode(itemsAdded(0))
	must(b, err)
	insert := `INSERT INTO ` + e.table + ` (event_id, stream_id, version, category, event_type, schema_version, data)
		VALUES ($1, $2, $3, 'raw', 'ItemsAdded', 1, $4)`
	var strata, strataSnap, raw time.Duration
	i := 0
	for b.Loop() {
		id := fmt.Sprint(i / 100)
		t0 := time.Now()
		must(b, plain.Update(ctx, id, func(c *Cart) error { c.Raise(itemsAdded(i)); return nil }))
		t1 := time.Now()
		must(b, snap.Update(ctx, id, func(c *Cart) error { c.Raise(itemsAdded(i)); return nil }))
		t2 := time.Now()
		c, err := rawLoad(ctx, e.db.Pool, e.table, "raw-"+id)
		must(b, err)
		_, err = e.db.Pool.Exec(ctx, insert, uuid.New(), "raw-"+id, int64(i%100)+1, ev.Data)
		must(b, err)
		raw += time.Since(t2)
		strata += t1.Sub(t0)
		strataSnap += t2.Sub(t1)
		_ = c
		i++
	}
	perSec := func(d time.Duration) float64 { return float64(b.N) / d.Seconds() }
	b.ReportMetric(perSec(strata), "strata-events/s")
	b.ReportMetric(perSec(strataSnap), "strata-snap100-events/s")
	b.ReportMetric(perSec(raw), "raw-events/s")
	b.ReportMetric(perSec(strata)/perSec(raw), "x_baseline")
	b.Logf("Update, 1 event per round trip, %d updates: strata %.0f events/s, strata+snapshots %.0f events/s, raw pgx read+insert %.0f events/s; ratio %.3f (snapshots %.3f)",
		b.N, perSec(strata), perSec(strataSnap), perSec(raw), perSec(strata)/perSec(raw), perSec(strataSnap)/perSec(raw))
}
