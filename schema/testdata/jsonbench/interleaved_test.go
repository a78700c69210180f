package jsonbench

import (
	"context"
	stdjson "encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
)

// TestInterleaved runs each variant once per round, rounds interleaved, and
// prints each variant's median time per event and its ratio to raw pgx's
// median rate (the machine is shared: absolute figures swing, the ratio
// of interleaved medians is what to read). JSONBENCH_ROUNDS sets the
// rounds (default 5).
func TestInterleaved(t *testing.T) {
	if testing.Short() || !testing.Verbose() {
		t.Skip("a measurement: run with -v -run Interleaved")
	}
	ctx := context.Background()
	d := newDBT(t)
	rounds := 5
	if n, err := strconv.Atoi(getenv("JSONBENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	ps := pipelines(t)
	var keep []pipeline
	for _, p := range ps {
		switch p.name {
		case "strata", "encoding/json+jsonschema", "encoding/json+fastpath", "goccy+fastpath", "jsonv2+fastpath", "segmentio+fastpath":
			keep = append(keep, p)
		}
	}
	type op struct {
		name string
		run  func() error
	}
	var appendOps, rebuildOps []op
	rawInsert := `INSERT INTO ` + d.schema + `.baseline_events (event_id, stream_id, version, category, event_type, schema_version, data)
		SELECT gen_random_uuid(), $1, $2 + e.n, 'raw', 'OrderPlaced', 3, e.data
		FROM unnest($3::json[]) WITH ORDINALITY AS e(data, n)`
	var rawVersion int64
	appendOps = append(appendOps, op{"raw-pgx", func() error {
		data := make([][]byte, 100)
		for i := range data {
			o := sampleOrder()
			o.OrderID = strconv.Itoa(i)
			var err error
			if data[i], err = stdjson.Marshal(&o); err != nil {
				return err
			}
		}
		_, err := d.pool.Exec(ctx, rawInsert, "raw", rawVersion, data)
		rawVersion += 100
		return err
	}})
	rebuildOps = append(rebuildOps, op{"raw-pgx", func() error {
		rows, err := d.pool.Query(ctx, `SELECT data FROM `+d.schema+`.events WHERE stream_id = $1 ORDER BY version`, "old")
		if err != nil {
			return err
		}
		for rows.Next() {
			var data []byte
			if err := rows.Scan(&data); err != nil {
				return err
			}
			var o orderV1
			if err := stdjson.Unmarshal(data, &o); err != nil {
				return err
			}
		}
		return rows.Err()
	}})
	for _, p := range keep {
		store := eventstore.New(d.pool, &eventstore.Config{Schema: d.schema, Validator: p.validator})
		appendOps = append(appendOps, op{p.name, func() error {
			batch := make([]eventstore.NewEvent, 100)
			for i := range batch {
				o := sampleOrder()
				o.OrderID = strconv.Itoa(i)
				var err error
				if batch[i], err = p.encode(&o); err != nil {
					return err
				}
			}
			_, err := store.Append(ctx, "new-"+p.name, eventstore.Any, batch...)
			return err
		}})
		rebuildOps = append(rebuildOps, op{p.name, func() error {
			for e, err := range store.ReadStream(ctx, "old", 0) {
				if err != nil {
					return err
				}
				if _, err := p.decode(e); err != nil {
					return err
				}
			}
			return nil
		}})
	}
	for _, c := range []struct {
		what   string
		ops    []op
		reps   int
		events int
	}{{"append 100 validated events", appendOps, 20, 100}, {"rebuild 10,000 v1 events through 2 upcasters", rebuildOps, 1, logEvents}} {
		times := make([][]float64, len(c.ops))
		for range rounds {
			for i, o := range c.ops {
				start := time.Now()
				for range c.reps {
					if err := o.run(); err != nil {
						t.Fatalf("%s: %v", o.name, err)
					}
				}
				times[i] = append(times[i], float64(time.Since(start).Nanoseconds())/float64(c.reps*c.events))
			}
		}
		med := func(x []float64) float64 { x = slices.Clone(x); slices.Sort(x); return x[len(x)/2] }
		fmt.Printf("%s, medians of %d interleaved rounds:\n", c.what, rounds)
		raw := med(times[0])
		for i, o := range c.ops {
			m := med(times[i])
			fmt.Printf("  %-26s %9.0f ns/event  %.2fx raw pgx's rate\n", o.name, m, raw/m)
		}
	}
}

// TestInterleavedDecode: decode of one v1 event through both upcasters,
// without the database, rounds interleaved; medians and allocations.
func TestInterleavedDecode(t *testing.T) {
	if testing.Short() || !testing.Verbose() {
		t.Skip("a measurement: run with -v -run Interleaved")
	}
	e := eventstore.Event{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)}
	ps := pipelines(t)
	times := make([][]float64, len(ps))
	const reps = 2000
	for range 15 {
		for i, p := range ps {
			start := time.Now()
			for range reps {
				if _, err := p.decode(e); err != nil {
					t.Fatal(err)
				}
			}
			times[i] = append(times[i], float64(time.Since(start).Nanoseconds())/reps)
		}
	}
	raw := func() { var o orderV1; _ = stdjson.Unmarshal(e.Data, &o) }
	fmt.Printf("decode of a v1 event, medians of 15 interleaved rounds of %d:\n", reps)
	for i, p := range ps {
		x := slices.Clone(times[i])
		slices.Sort(x)
		allocs := testing.AllocsPerRun(100, func() { _, _ = p.decode(e) })
		fmt.Printf("  %-26s %7.0f ns/op %4.0f allocs/op\n", p.name, x[len(x)/2], allocs)
	}
	fmt.Printf("  json.Unmarshal (v1 struct) %4.0f allocs/op\n", testing.AllocsPerRun(100, raw))
}
