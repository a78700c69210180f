package jsonbench

import (
	"bytes"
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
	goccy "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/santhosh-tekuri/jsonschema/v5"
	segment "github.com/segmentio/encoding/json"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/migrations"
	"github.com/strata-go/strata/schema"
)

// The event types of schema's tests (testdata/schemas/OrderPlaced v1–v3).
type Customer struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
}

type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

type OrderPlaced struct {
	OrderID     string   `json:"order_id"`
	Customer    Customer `json:"customer"`
	AmountCents int64    `json:"amount_cents"`
	Currency    string   `json:"currency"`
	Items       []Item   `json:"items,omitempty"`
	PlacedAt    string   `json:"placed_at,omitempty"`
}

// orderV1 is what a raw reader of v1 events unmarshals into.
type orderV1 struct {
	OrderID  string  `json:"order_id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
	Items    []Item  `json:"items"`
}

const v1Order = `{"order_id":"order-7f3c2a91-4b6e-4d8a-9c1f-2e5b7a9d0c11","customer":"Ada Lovelace",` +
	`"amount":1249.95,"items":[{"sku":"BOOK-ANALYTICAL-ENGINE","qty":1},{"sku":"PEN-FOUNTAIN-BLACK","qty":2},` +
	`{"sku":"PAPER-A4-500","qty":4},{"sku":"INK-BOTTLE-BLUE","qty":3},{"sku":"NOTEBOOK-GRID","qty":5},{"sku":"STAMP-SET","qty":1}]}`

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

func upcastV1(doc map[string]any) (map[string]any, error) {
	n, ok := doc["amount"].(stdjson.Number)
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

func upcastV2(doc map[string]any) (map[string]any, error) {
	name, ok := doc["customer"].(string)
	if !ok {
		return nil, errors.New("customer: want a string")
	}
	doc["customer"] = map[string]any{"name": name}
	doc["currency"] = "EUR"
	return doc, nil
}

// pipeline is one way to do the registry's work for OrderPlaced.
type pipeline struct {
	name      string
	encode    func(o *OrderPlaced) (eventstore.NewEvent, error)
	validator eventstore.Validator
	decode    func(e eventstore.Event) (OrderPlaced, error)
}

func newRegistry(tb testing.TB) *schema.Registry {
	reg := schema.NewRegistry()
	must(tb, reg.LoadFS(os.DirFS("../schemas")))
	must(tb, schema.Register[OrderPlaced](reg, "OrderPlaced", 3, nil))
	must(tb, reg.Upcast("OrderPlaced", 1, upcastV1))
	must(tb, reg.Upcast("OrderPlaced", 2, upcastV2))
	return reg
}

// strata is the registry as it is.
func strata(tb testing.TB) pipeline {
	reg := newRegistry(tb)
	return pipeline{
		name:      "strata",
		encode:    func(o *OrderPlaced) (eventstore.NewEvent, error) { return reg.Encode(o) },
		validator: reg,
		decode:    func(e eventstore.Event) (OrderPlaced, error) { return schema.DecodeAs[OrderPlaced](reg, e) },
	}
}

// codec is a JSON library's three operations.
type codec struct {
	name      string
	marshal   func(any) ([]byte, error)
	parse     func([]byte) (any, error) // one document, numbers as json.Number
	unmarshal func([]byte, any) error
}

var codecs = []codec{
	{"encoding/json", stdjson.Marshal, func(b []byte) (any, error) {
		d := stdjson.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		return parseRest(d.Decode, d.Token)
	}, stdjson.Unmarshal},
	{"goccy", goccy.Marshal, func(b []byte) (any, error) {
		d := goccy.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		return fixNumbers(v), nil
	}, goccy.Unmarshal},
	{"segmentio", segment.Marshal, func(b []byte) (any, error) {
		d := segment.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		return fixNumbers(v), nil
	}, segment.Unmarshal},
	{"jsonv2", func(v any) ([]byte, error) { return jsonv2.Marshal(v, v2MarshalOpts) },
		func(b []byte) (any, error) {
			d := jsonv1.NewDecoder(bytes.NewReader(b))
			d.UseNumber()
			var v any
			if err := d.Decode(&v); err != nil {
				return nil, err
			}
			return fixNumbers(v), nil
		},
		func(b []byte, v any) error { return jsonv2.Unmarshal(b, v, jsonv2.MatchCaseInsensitiveNames(true)) }},
}

// v2MarshalOpts: sorted keys, as encoding/json, and encoding/json's
// Number printed as a number (v2 knows only its own).
var v2MarshalOpts = jsonv2.JoinOptions(jsonv2.Deterministic(true),
	jsonv2.WithMarshalers(jsonv2.MarshalFunc(func(n stdjson.Number) ([]byte, error) { return []byte(n), nil })))

func parseRest(decode func(any) error, token func() (stdjson.Token, error)) (any, error) {
	var v any
	if err := decode(&v); err != nil {
		return nil, err
	}
	if _, err := token(); err != io.EOF {
		return nil, errors.New("data after the document")
	}
	return v, nil
}

// fixNumbers turns other libraries' Number types into encoding/json's,
// which jsonschema expects.
func fixNumbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = fixNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = fixNumbers(e)
		}
	case goccy.Number:
		return stdjson.Number(v)
	case jsonv1.Number:
		return stdjson.Number(v)
	}
	return v
}

// schemas compiles the three OrderPlaced versions with jsonschema alone.
func schemas(tb testing.TB) map[int]*jsonschema.Schema {
	out := map[int]*jsonschema.Schema{}
	for n := 1; n <= 3; n++ {
		c := jsonschema.NewCompiler()
		c.Draft = jsonschema.Draft2020
		c.AssertFormat = true
		raw, err := os.ReadFile(fmt.Sprintf("../schemas/OrderPlaced/v%d.json", n))
		must(tb, err)
		must(tb, c.AddResource("v.json", bytes.NewReader(raw)))
		s, err := c.Compile("v.json")
		must(tb, err)
		out[n] = s
	}
	return out
}

type validatorFunc func(eventstore.NewEvent) error

func (f validatorFunc) Validate(ev eventstore.NewEvent) error { return f(ev) }

// library does the registry's work with c: parse, upcast, print,
// validate, unmarshal. fast validates with the registry's byte-level path
// (falling back to jsonschema), else every payload is parsed by c and
// validated by jsonschema.
func library(tb testing.TB, c codec, fast bool) pipeline {
	reg, sch := newRegistry(tb), schemas(tb)
	validate := func(ev eventstore.NewEvent) error {
		if fast {
			return reg.Validate(ev)
		}
		doc, err := c.parse(ev.Data)
		if err != nil {
			return err
		}
		return sch[ev.SchemaVersion].Validate(doc)
	}
	name := c.name + "+jsonschema"
	if fast {
		name = c.name + "+fastpath"
	}
	return pipeline{
		name: name,
		encode: func(o *OrderPlaced) (eventstore.NewEvent, error) {
			data, err := c.marshal(o)
			if err != nil {
				return eventstore.NewEvent{}, err
			}
			ev := eventstore.NewEvent{Type: "OrderPlaced", SchemaVersion: 3, Data: data}
			return ev, validate(ev)
		},
		validator: validatorFunc(validate),
		decode: func(e eventstore.Event) (OrderPlaced, error) {
			var o OrderPlaced
			data := e.Data
			if e.SchemaVersion < 3 {
				doc, err := c.parse(e.Data)
				if err != nil {
					return o, err
				}
				m := doc.(map[string]any)
				if e.SchemaVersion == 1 {
					if m, err = upcastV1(m); err != nil {
						return o, err
					}
				}
				if m, err = upcastV2(m); err != nil {
					return o, err
				}
				if data, err = c.marshal(m); err != nil {
					return o, err
				}
				if err := validate(eventstore.NewEvent{Type: "OrderPlaced", SchemaVersion: 3, Data: data}); err != nil {
					return o, err
				}
			}
			return o, c.unmarshal(data, &o)
		},
	}
}

func pipelines(tb testing.TB) []pipeline {
	ps := []pipeline{strata(tb)}
	for _, c := range codecs {
		ps = append(ps, library(tb, c, false))
	}
	for _, c := range codecs {
		ps = append(ps, library(tb, c, true))
	}
	return ps
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// TestPipelinesAgree: every pipeline decodes v1Order to the same value.
func TestPipelinesAgree(t *testing.T) {
	var want OrderPlaced
	for i, p := range pipelines(t) {
		got, err := p.decode(eventstore.Event{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)})
		must(t, err)
		if i == 0 {
			want = got
		} else if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %+v, want %+v", p.name, got, want)
		}
		o := sampleOrder()
		ev, err := p.encode(&o)
		must(t, err)
		must(t, p.validator.Validate(ev))
		o.AmountCents = -1
		if _, err := p.encode(&o); err == nil {
			t.Errorf("%s: encodes an invalid order", p.name)
		}
	}
}

// BenchmarkCodec: the per-event work without the database.
func BenchmarkCodec(b *testing.B) {
	v1 := eventstore.Event{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)}
	for _, p := range pipelines(b) {
		o := sampleOrder()
		ev, err := p.encode(&o)
		must(b, err)
		b.Run("encode/"+p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.encode(&o); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("validate/"+p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := p.validator.Validate(ev); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decode-v1/"+p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.decode(v1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// db is a fresh Strata schema on DATABASE_URL with a 10,000-event stream
// of v1 OrderPlaced events, and a baseline table like the events table.
type db struct {
	pool   *pgxpool.Pool
	schema string
}

const logEvents = 10_000

func newDB(b *testing.B) *db { return newDBT(b) }

func getenv(k string) string { return os.Getenv(k) }

func newDBT(b testing.TB) *db {
	ctx := context.Background()
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		b.Skip("DATABASE_URL is not set")
	}
	pool, err := pgxpool.New(ctx, url)
	must(b, err)
	d := &db{pool: pool, schema: "jsonbench_" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	b.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA "+d.schema+" CASCADE")
		pool.Close()
	})
	must(b, migrations.Apply(ctx, pool, d.schema))
	_, err = pool.Exec(ctx, "CREATE TABLE "+d.schema+".baseline_events (LIKE "+d.schema+".events INCLUDING ALL)")
	must(b, err)
	store := eventstore.New(pool, &eventstore.Config{Schema: d.schema})
	batch := make([]eventstore.NewEvent, 500)
	for i := 0; i < logEvents; i += len(batch) {
		for j := range batch {
			batch[j] = eventstore.NewEvent{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)}
		}
		_, err := store.Append(ctx, "old", eventstore.Any, batch...)
		must(b, err)
	}
	return d
}

// BenchmarkAppend100: encode 100 events, append them through a store that
// validates them again. raw-pgx: json.Marshal and one unnest INSERT of the
// same rows into a table like the events table.
func BenchmarkAppend100(b *testing.B) {
	d := newDB(b)
	ctx := context.Background()
	b.Run("raw-pgx", func(b *testing.B) {
		sql := `INSERT INTO ` + d.schema + `.baseline_events (event_id, stream_id, version, category, event_type, schema_version, data)
			SELECT gen_random_uuid(), $1, $2 + e.n, 'raw', 'OrderPlaced', 3, e.data
			FROM unnest($3::json[]) WITH ORDINALITY AS e(data, n)`
		stream := "raw-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		var version int64
		b.ReportAllocs()
		for b.Loop() {
			data := make([][]byte, 100)
			for i := range data {
				o := sampleOrder()
				o.OrderID = strconv.Itoa(i)
				var err error
				if data[i], err = stdjson.Marshal(&o); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := d.pool.Exec(ctx, sql, stream, version, data); err != nil {
				b.Fatal(err)
			}
			version += 100
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/event")
	})
	for _, p := range pipelines(b) {
		store := eventstore.New(d.pool, &eventstore.Config{Schema: d.schema, Validator: p.validator})
		b.Run(p.name, func(b *testing.B) {
			stream := "new-" + p.name + strconv.FormatInt(time.Now().UnixNano(), 36)
			b.ReportAllocs()
			for b.Loop() {
				batch := make([]eventstore.NewEvent, 100)
				for i := range batch {
					o := sampleOrder()
					o.OrderID = strconv.Itoa(i)
					var err error
					if batch[i], err = p.encode(&o); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := store.Append(ctx, stream, eventstore.Any, batch...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/event")
		})
	}
}

// BenchmarkRebuild10k: read the 10,000 v1 events of a stream and decode
// each into the current Go type through both upcasters. raw-pgx: SELECT
// the payloads in version order and json.Unmarshal each into a v1 struct.
func BenchmarkRebuild10k(b *testing.B) {
	d := newDB(b)
	ctx := context.Background()
	b.Run("raw-pgx", func(b *testing.B) {
		sql := `SELECT data FROM ` + d.schema + `.events WHERE stream_id = $1 ORDER BY version`
		b.ReportAllocs()
		for b.Loop() {
			rows, err := d.pool.Query(ctx, sql, "old")
			must(b, err)
			n := 0
			for rows.Next() {
				var data []byte
				must(b, rows.Scan(&data))
				var o orderV1
				must(b, stdjson.Unmarshal(data, &o))
				n++
			}
			must(b, rows.Err())
			if n != logEvents {
				b.Fatalf("read %d events", n)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/logEvents, "ns/event")
	})
	for _, p := range pipelines(b) {
		store := eventstore.New(d.pool, &eventstore.Config{Schema: d.schema})
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				for e, err := range store.ReadStream(ctx, "old", 0) {
					must(b, err)
					if _, err := p.decode(e); err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != logEvents {
					b.Fatalf("read %d events", n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/logEvents, "ns/event")
		})
	}
}
