package eventstore_test

// Benchmarks of the event store, each beside the cheapest plain pgx code
// doing the same work on the same database in the same run.
//
// Run them all (about two minutes on the 2-core machine):
//
//	STRATA_BENCH_ROUNDS=5 go test -run '^$' -bench . -benchtime=700ms ./eventstore/
//
// Every comparison runs its variants in several interleaved rounds (the
// machine is shared and noisy), each round a sub-benchmark per variant
// reporting events/s and this process's CPU per event (client-µs/event); a
// final ".../median" line reports each variant's median events/s and, as
// x_baseline, the median over the rounds of the variant's rate divided by
// the best baseline's rate in the same round. A summary line per
// comparison ("medians of N rounds: …") is printed as well.
// STRATA_BENCH_ROUNDS sets the number of rounds (default 3).
//
// What each baseline is:
//   - single-event append: one autocommit INSERT of the same row into a
//     table like the store's events table (LIKE … INCLUDING ALL: same
//     columns, defaults and indexes), with no streams table and no version
//     check;
//   - 100-event append: one autocommit unnest INSERT of the same 100 rows,
//     and pgx CopyFrom of them; the ratio is against the faster of the two;
//   - reading the log: the raw gap-safe keyset query scanning the same
//     columns into a struct, pages of 1000;
//   - loading a stream: SELECT … WHERE stream_id = $1 ORDER BY version,
//     scanning the same columns into a struct.
//
// The notification benchmark compares the store with itself: the default
// coalesced wake-up, no wake-up at all, and a NOTIFY in (nearly) every
// append, with a listener connected.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/internal/storeview"
)

// benchRounds is how many interleaved rounds each comparison runs.
func benchRounds(b *testing.B) int {
	if s := os.Getenv("STRATA_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("STRATA_BENCH_ROUNDS=%q: want a positive integer", s)
		}
		return n
	}
	return 3
}

// benchVariant is one side of a comparison. run is a benchmark body that
// does b.N operations and returns how many events they moved.
type benchVariant struct {
	name string
	run  func(b *testing.B) int
}

// compare runs the variants in interleaved rounds (the order rotates each
// round) and reports, in a final "median" sub-benchmark and on a summary
// line, each variant's median events/s and client CPU per event, and each
// non-baseline variant's ratio to the baselines: the median over the rounds
// of its rate divided by the best baseline's rate in the same round (paired
// rounds cancel much of the drift of a shared machine). baselines are the
// indexes of the baseline variants.
func compare(b *testing.B, baselines []int, variants ...benchVariant) {
	rounds := benchRounds(b)
	rates := make([][]float64, len(variants))
	cpus := make([][]float64, len(variants))
	p99s := make([][]float64, len(variants))    // ms
	batches := make([][]float64, len(variants)) // appends per combined statement
	for i := range variants {
		rates[i], cpus[i], p99s[i] = make([]float64, rounds), make([]float64, rounds), make([]float64, rounds)
	}
	for r := range rounds {
		for k := range variants {
			i := (k + r) % len(variants)
			v := variants[i]
			b.Run(fmt.Sprintf("round=%d/%s", r+1, v.name), func(b *testing.B) {
				cpu := processCPU()
				lastP99, lastBatch = 0, 0
				events := v.run(b)
				cpu = processCPU() - cpu
				p99 := float64(lastP99.Microseconds()) / 1e3
				rate := float64(events) / b.Elapsed().Seconds()
				// This process's CPU per event (the client's side: encoding,
				// decoding, pgx, TLS), steadier than throughput on a shared
				// machine.
				perEvent := float64(cpu.Nanoseconds()) / 1e3 / float64(events)
				b.ReportMetric(rate, "events/s")
				b.ReportMetric(perEvent, "client-µs/event")
				if p99 > 0 {
					b.ReportMetric(p99, "p99-ms")
				}
				// The last call of a sub-benchmark is the full-length one.
				rates[i][r], cpus[i][r], p99s[i][r] = rate, perEvent, p99
				if lastBatch > 0 {
					batches[i] = append(batches[i][:r], lastBatch)
				}
			})
		}
	}
	ratios := make([][]float64, len(variants))
	p99Ratios := make([][]float64, len(variants)) // against the first baseline's p99
	for r := range rounds {
		best := 0.0
		for _, j := range baselines {
			best = max(best, rates[j][r])
		}
		for i := range variants {
			if !slices.Contains(baselines, i) && best > 0 {
				ratios[i] = append(ratios[i], rates[i][r]/best)
				if base := p99s[baselines[0]][r]; base > 0 && p99s[i][r] > 0 {
					p99Ratios[i] = append(p99Ratios[i], p99s[i][r]/base)
				}
			}
		}
	}
	var line strings.Builder
	b.Run("median", func(b *testing.B) {
		line.Reset()
		b.ReportMetric(0, "ns/op")
		for i, v := range variants {
			b.ReportMetric(median(rates[i]), v.name+"_events/s")
			fmt.Fprintf(&line, "%s %.0f events/s %.1f client-µs/event", v.name, median(rates[i]), median(cpus[i]))
			if p := median(p99s[i]); p > 0 {
				fmt.Fprintf(&line, " p99 %.2fms", p)
			}
			if m := median(batches[i]); m > 0 {
				fmt.Fprintf(&line, " %.1f appends/statement", m)
			}
			if len(ratios[i]) > 0 {
				unit := "x_baseline"
				if len(variants)-len(baselines) > 1 {
					unit = v.name + "_x_baseline"
				}
				b.ReportMetric(median(ratios[i]), unit)
				fmt.Fprintf(&line, " = %.2fx baseline", median(ratios[i]))
			}
			if len(p99Ratios[i]) > 0 {
				b.ReportMetric(median(p99Ratios[i]), v.name+"_p99_x_baseline")
				fmt.Fprintf(&line, ", p99 %.2fx baseline's", median(p99Ratios[i]))
			}
			line.WriteString("; ")
		}
	})
	fmt.Printf("%s: medians of %d rounds: %s\n", b.Name(), rounds, strings.TrimSuffix(line.String(), "; "))
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// inParallel runs b.N operations on w writers. newWriter is called once per
// writer before the timer starts and returns that writer's operation. The
// operations' 99th percentile latency is left in lastP99 for compare.
func inParallel(b *testing.B, w int, newWriter func() func(ctx context.Context) error) {
	ctx := context.Background()
	ops := make([]func(context.Context) error, w)
	for i := range ops {
		ops[i] = newWriter()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	lat := make([][]time.Duration, w)
	b.ResetTimer()
	for k, op := range ops {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				start := time.Now()
				if err := op(ctx); err != nil {
					b.Error(err)
					return
				}
				lat[k] = append(lat[k], time.Since(start))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	lastP99 = percentile(slices.Concat(lat...), 0.99)
}

// lastP99 is the 99th percentile latency of the operations of the last
// inParallel run (0 for benchmarks that do not use it).
var lastP99 time.Duration

// lastBatch is the mean number of appends in the combined statements of
// the last strataAppend run (0: none, or not a store's run).
var lastBatch float64

// percentile returns the q-th quantile of ds (nearest rank).
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}

// benchStreamSeq makes stream IDs unique across every call of every
// benchmark in the process.
var benchStreamSeq atomic.Int64

func benchStream(prefix string) string {
	return prefix + "-" + strconv.FormatInt(benchStreamSeq.Add(1), 10)
}

// payload is a realistic event: 298 bytes of JSON data, a correlation and
// a causation ID, and a trace context in the free metadata pairs.
type payload struct {
	data          []byte
	meta          eventstore.Metadata
	metaJSON      []byte // meta.Values as the store encodes them
	corr, caus    string
	typ           string
	schemaVersion int32
}

var payloads = func() []payload {
	out := make([]payload, 64)
	for i := range out {
		data := fmt.Sprintf(`{"order_id":"ord-%08d","customer":{"id":"cus-%06d","tier":"gold"},`+
			`"items":[{"sku":"SKU-%05d","qty":%d,"price":1299},{"sku":"SKU-%05d","qty":1,"price":4599}],`+
			`"shipping":{"method":"express","address":{"city":"Lyon","zip":"69003","country":"FR"}},"total":%d,"currency":"EUR","note":"leave at door"}`,
			i, i*7, i*13, 1+i%4, i*17, 1299*(1+i%4)+4599)
		corr, caus := uuid.NewString(), uuid.NewString()
		values := map[string]string{
			"traceparent": fmt.Sprintf("00-%032x-%016x-01", i+1, i+1),
			"user":        "user-" + strconv.Itoa(i),
		}
		metaJSON, err := json.Marshal(values)
		if err != nil {
			panic(err)
		}
		out[i] = payload{
			data:          []byte(data),
			meta:          eventstore.Metadata{CorrelationID: corr, CausationID: caus, Values: values},
			metaJSON:      metaJSON,
			corr:          corr,
			caus:          caus,
			typ:           "OrderPlaced",
			schemaVersion: 1,
		}
	}
	return out
}()

func (p payload) newEvent() eventstore.NewEvent {
	return eventstore.NewEvent{Type: p.typ, Data: p.data, Metadata: p.meta}
}

// benchDB is a fresh schema with a store and a baseline table shaped like
// the store's events table.
type benchDB struct {
	db    *pgtest.DB
	store *eventstore.Store
	// baseline is the quoted name of the baseline table.
	baseline string
}

func newBenchDB(b *testing.B, cfg *eventstore.Config) *benchDB {
	b.Helper()
	db := pgtest.New(b)
	c := eventstore.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Schema = db.Schema
	s := eventstore.New(db.Pool, &c)
	base := s.Table("baseline_events")
	if _, err := db.Pool.Exec(context.Background(), `CREATE TABLE `+base+` (LIKE `+s.Table("events")+` INCLUDING ALL)`); err != nil {
		b.Fatal(err)
	}
	return &benchDB{db: db, store: s, baseline: base}
}

const baselineColumns = `event_id, stream_id, version, category, event_type, schema_version, data, metadata, correlation_id, causation_id`

// strataAppend appends events events at a time to one stream per writer,
// with the expected version known.
func (d *benchDB) strataAppend(writers, events int) benchVariant {
	return benchVariant{name: "strata", run: func(b *testing.B) int {
		newWriter := func() func(context.Context) error {
			stream := benchStream("strata")
			var version int64
			batch := make([]eventstore.NewEvent, events)
			k := 0
			return func(ctx context.Context) error {
				for i := range batch {
					batch[i] = payloads[k%len(payloads)].newEvent()
					k++
				}
				res, err := d.store.Append(ctx, stream, eventstore.Exactly(version), batch...)
				version = res.Version
				return err
			}
		}
		a0, st0 := eventstore.CombinerStats(d.store)
		inParallel(b, writers, newWriter)
		if a, st := eventstore.CombinerStats(d.store); st > st0 {
			lastBatch = float64(a-a0) / float64(st-st0)
			b.ReportMetric(lastBatch, "appends/statement")
		}
		return b.N * events
	}}
}

// baselineInsert writes one row per operation with a single autocommit
// INSERT: no streams table, no version check, no RETURNING.
func (d *benchDB) baselineInsert(writers int) benchVariant {
	sql := `INSERT INTO ` + d.baseline + ` (` + baselineColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
	return benchVariant{name: "baseline", run: func(b *testing.B) int {
		inParallel(b, writers, func() func(context.Context) error {
			stream := benchStream("base")
			category := eventstore.Category(stream)
			var version int64
			k := 0
			return func(ctx context.Context) error {
				p := payloads[k%len(payloads)]
				k++
				version++
				id, err := uuid.NewV7()
				if err != nil {
					return err
				}
				_, err = d.db.Pool.Exec(ctx, sql, [16]byte(id), stream, version, category, p.typ, p.schemaVersion, p.data, p.metaJSON, p.corr, p.caus)
				return err
			}
		})
		return b.N
	}}
}

// baselineRows is one batch in column-wise form, as the baseline sends it:
// types that pgx encodes without reflection.
type baselineRows struct {
	ids   [][16]byte
	types []string
	svs   []int32
	data  [][]byte
	meta  [][]byte
	corr  []string
	caus  []string
}

func newBaselineRows(n int, k *int) (*baselineRows, error) {
	r := &baselineRows{
		ids: make([][16]byte, n), types: make([]string, n), svs: make([]int32, n),
		data: make([][]byte, n), meta: make([][]byte, n), corr: make([]string, n), caus: make([]string, n),
	}
	for i := range n {
		p := payloads[*k%len(payloads)]
		*k++
		id, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		r.ids[i], r.types[i], r.svs[i], r.data[i], r.meta[i], r.corr[i], r.caus[i] = id, p.typ, p.schemaVersion, p.data, p.metaJSON, p.corr, p.caus
	}
	return r, nil
}

// baselineUnnest writes events rows per operation with one autocommit
// INSERT … SELECT FROM unnest(…): one statement, one transaction.
func (d *benchDB) baselineUnnest(writers, events int) benchVariant {
	sql := `INSERT INTO ` + d.baseline + ` (` + baselineColumns + `)
		SELECT e.id, $1, $2 + e.n, $3, e.type, e.sv, e.data, e.meta, e.corr, e.caus
		FROM unnest($4::uuid[], $5::text[], $6::int4[], $7::json[], $8::json[], $9::text[], $10::text[])
		WITH ORDINALITY AS e(id, type, sv, data, meta, corr, caus, n)`
	return benchVariant{name: "baseline-unnest", run: func(b *testing.B) int {
		inParallel(b, writers, func() func(context.Context) error {
			stream := benchStream("unnest")
			category := eventstore.Category(stream)
			var version int64
			k := 0
			return func(ctx context.Context) error {
				r, err := newBaselineRows(events, &k)
				if err != nil {
					return err
				}
				_, err = d.db.Pool.Exec(ctx, sql, stream, version, category, r.ids, r.types, r.svs, r.data, r.meta, r.corr, r.caus)
				version += int64(events)
				return err
			}
		})
		return b.N * events
	}}
}

// baselineCopy writes events rows per operation with pgx CopyFrom (COPY is
// one statement, its own transaction).
func (d *benchDB) baselineCopy(writers, events int) benchVariant {
	table := pgx.Identifier{d.db.Schema, "baseline_events"}
	cols := strings.Split(baselineColumns, ", ")
	return benchVariant{name: "baseline-copy", run: func(b *testing.B) int {
		inParallel(b, writers, func() func(context.Context) error {
			stream := benchStream("copy")
			category := eventstore.Category(stream)
			var version int64
			k := 0
			return func(ctx context.Context) error {
				r, err := newBaselineRows(events, &k)
				if err != nil {
					return err
				}
				rows := make([][]any, events)
				for i := range rows {
					version++
					rows[i] = []any{r.ids[i], stream, version, category, r.types[i], r.svs[i], r.data[i], r.meta[i], r.corr[i], r.caus[i]}
				}
				_, err = d.db.Pool.CopyFrom(ctx, table, cols, pgx.CopyFromRows(rows))
				return err
			}
		})
		return b.N * events
	}}
}

// BenchmarkAppendOne: single-event appends with a known expected version,
// each writer on its own stream, against one autocommit INSERT of the same
// row, with the append combiner (strata, the default) and without it
// (strata-separate, Config.DisableCombiner), each beside the INSERT's
// rate and p99 latency; the combiner's variants also print the mean
// number of appends in its combined statements. STRATA_BENCH_WRITERS
// sets the writer counts (default 1,16,64); STRATA_BENCH_UNPACED=1 adds
// the combiner without its pacing (combiner.go) as strata-unpaced.
func BenchmarkAppendOne(b *testing.B) {
	d := newBenchDB(b, nil)
	separate := (&benchDB{db: d.db, store: eventstore.New(d.db.Pool, &eventstore.Config{Schema: d.db.Schema, DisableCombiner: true})}).strataAppend
	unpacedStore := eventstore.New(d.db.Pool, &eventstore.Config{Schema: d.db.Schema})
	eventstore.SetCombinerUnpaced(unpacedStore, true)
	unpaced := (&benchDB{db: d.db, store: unpacedStore}).strataAppend
	writers := []int{1, 16, 64}
	if s := os.Getenv("STRATA_BENCH_WRITERS"); s != "" {
		writers = nil
		for f := range strings.SplitSeq(s, ",") {
			w, err := strconv.Atoi(f)
			if err != nil || w < 1 {
				b.Fatalf("STRATA_BENCH_WRITERS=%q: want positive integers separated by commas", s)
			}
			writers = append(writers, w)
		}
	}
	for _, w := range writers {
		b.Run("writers="+strconv.Itoa(w), func(b *testing.B) {
			sep := separate(w, 1)
			sep.name = "strata-separate"
			variants := []benchVariant{d.baselineInsert(w), d.strataAppend(w, 1), sep}
			if os.Getenv("STRATA_BENCH_UNPACED") == "1" {
				v := unpaced(w, 1)
				v.name = "strata-unpaced"
				variants = append(variants, v)
			}
			compare(b, []int{0}, variants...)
		})
	}
}

// BenchmarkAppend100: 100-event appends against one unnest INSERT and
// against CopyFrom of the same rows.
func BenchmarkAppend100(b *testing.B) {
	d := newBenchDB(b, nil)
	for _, w := range []int{1, 4} {
		b.Run("writers="+strconv.Itoa(w), func(b *testing.B) {
			compare(b, []int{0, 1}, d.baselineUnnest(w, 100), d.baselineCopy(w, 100), d.strataAppend(w, 100))
		})
	}
}

// rawEvent is what the raw readers scan each row into: the same columns
// the store reads.
type rawEvent struct {
	pos, tx    int64
	id         uuid.UUID
	stream     string
	version    int64
	typ        string
	sv         int32
	data, meta []byte
	corr, caus *string
	recordedAt time.Time
}

func scanRaw(rows pgx.Rows, e *rawEvent) error {
	return rows.Scan(&e.pos, &e.tx, &e.id, &e.stream, &e.version, &e.typ, &e.sv, &e.data, &e.meta, &e.corr, &e.caus, &e.recordedAt)
}

const rawColumns = `position, transaction_id, event_id, stream_id, version, event_type, schema_version, data, metadata, correlation_id, causation_id, recorded_at`

// BenchmarkRead: reading the global log in pages of 1000 over 200,000
// events, and loading a 10,000-event stream, each against the raw query.
func BenchmarkRead(b *testing.B) {
	const (
		logEvents    = 200_000
		perAppend    = 500
		streamEvents = 10_000
		pageSize     = 1000
	)
	d := newBenchDB(b, nil)
	ctx := context.Background()

	// Fill the log: 400 appends of 500 events on 4 writers, then one
	// 10,000-event stream in appends of 100.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			batch := make([]eventstore.NewEvent, perAppend)
			for n := next.Add(1); n <= logEvents/perAppend; n = next.Add(1) {
				for i := range batch {
					batch[i] = payloads[(int(n)+i)%len(payloads)].newEvent()
				}
				if _, err := d.store.Append(ctx, "log-"+strconv.FormatInt(n, 10), eventstore.NoStream, batch...); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	const loadStream = "load-1"
	batch := make([]eventstore.NewEvent, 100)
	for v := int64(0); v < streamEvents; v += 100 {
		for i := range batch {
			batch[i] = payloads[i%len(payloads)].newEvent()
		}
		if _, err := d.store.Append(ctx, loadStream, eventstore.Exactly(v), batch...); err != nil {
			b.Fatal(err)
		}
	}
	if b.Failed() {
		return
	}
	if _, err := d.db.Pool.Exec(ctx, `VACUUM ANALYZE `+d.store.Table("events")); err != nil {
		b.Fatal(err)
	}
	// A gap-safe read only sees transactions below every open one: wait
	// until no transaction on the server (other tests' included) holds the
	// fill back.
	total := logEvents + streamEvents
	visible := `SELECT count(*) FROM ` + d.store.Table("events") + ` WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint`
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var n int
		if err := d.db.Pool.QueryRow(ctx, visible).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n == total {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d events below the horizon after 2 minutes: a transaction on the server stays open", n, total)
		}
		time.Sleep(100 * time.Millisecond)
	}

	b.Run("log", func(b *testing.B) {
		rawSQL := `SELECT ` + rawColumns + ` FROM ` + d.store.Table("events") + `
			WHERE (transaction_id, position) > ($1, $2)
			  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
			ORDER BY transaction_id, position LIMIT $3`
		var rawAfter [2]int64
		var after eventstore.Position
		compare(b, []int{0},
			benchVariant{name: "baseline", run: func(b *testing.B) int {
				n := 0
				for b.Loop() {
					rows, err := d.db.Pool.Query(ctx, rawSQL, rawAfter[0], rawAfter[1], pageSize)
					if err != nil {
						b.Fatal(err)
					}
					page := make([]rawEvent, 0, pageSize)
					for rows.Next() {
						var e rawEvent
						if err := scanRaw(rows, &e); err != nil {
							b.Fatal(err)
						}
						page = append(page, e)
					}
					if err := rows.Err(); err != nil {
						b.Fatal(err)
					}
					n += len(page)
					if len(page) < pageSize {
						rawAfter = [2]int64{} // the end: start over
					} else {
						rawAfter = [2]int64{page[len(page)-1].tx, page[len(page)-1].pos}
					}
				}
				return n
			}},
			benchVariant{name: "strata", run: func(b *testing.B) int {
				n := 0
				for b.Loop() {
					page, err := d.store.ReadAll(ctx, after, pageSize)
					if err != nil {
						b.Fatal(err)
					}
					n += len(page.Events)
					if len(page.Events) < pageSize {
						after = eventstore.Position{}
					} else {
						after = page.Next
					}
				}
				return n
			}},
		)
	})

	b.Run("stream", func(b *testing.B) {
		rawSQL := `SELECT ` + rawColumns + ` FROM ` + d.store.Table("events") + ` WHERE stream_id = $1 ORDER BY version`
		var sink rawEvent
		var strataSink eventstore.Event
		compare(b, []int{0},
			benchVariant{name: "baseline", run: func(b *testing.B) int {
				n := 0
				for b.Loop() {
					rows, err := d.db.Pool.Query(ctx, rawSQL, loadStream)
					if err != nil {
						b.Fatal(err)
					}
					for rows.Next() {
						var e rawEvent
						if err := scanRaw(rows, &e); err != nil {
							b.Fatal(err)
						}
						sink = e
						n++
					}
					if err := rows.Err(); err != nil {
						b.Fatal(err)
					}
				}
				return n
			}},
			benchVariant{name: "strata", run: func(b *testing.B) int {
				n := 0
				for b.Loop() {
					for e, err := range d.store.ReadStream(ctx, loadStream, 0) {
						if err != nil {
							b.Fatal(err)
						}
						strataSink = e
						n++
					}
				}
				return n
			}},
		)
		_, _ = sink, strataSink
	})
}

// BenchmarkNotify: 16 writers of single-event appends with the default
// coalesced wake-up, with none (NotifyInterval -1), and with a NOTIFY in
// nearly every append (NotifyInterval 1ns: only an append that loses the
// race to claim the interval skips it), while a listener is connected.
// The ratio of each is against no wake-up at all.
func BenchmarkNotify(b *testing.B) {
	const writers = 16
	d := newBenchDB(b, &eventstore.Config{NotifyInterval: -1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	coalesced := eventstore.New(d.db.Pool, &eventstore.Config{Schema: d.db.Schema})
	every := eventstore.New(d.db.Pool, &eventstore.Config{Schema: d.db.Schema, NotifyInterval: time.Nanosecond})

	// A listener, as a running subscription has: notifications are
	// delivered, not only queued.
	conn, err := pgx.Connect(ctx, d.db.URL)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{storeview.Of(d.store).Channel}.Sanitize()); err != nil {
		b.Fatal(err)
	}
	var received atomic.Int64
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		for {
			if _, err := conn.WaitForNotification(ctx); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	defer func() {
		cancel()
		<-listening
		_ = conn.Close(context.Background())
	}()

	variant := func(name string, s *eventstore.Store) benchVariant {
		v := (&benchDB{db: d.db, store: s}).strataAppend(writers, 1)
		v.name = name
		inner := v.run
		v.run = func(b *testing.B) int {
			before := received.Load()
			n := inner(b)
			b.ReportMetric(float64(received.Load()-before)/b.Elapsed().Seconds(), "notifies/s")
			return n
		}
		return v
	}
	compare(b, []int{0},
		variant("off", d.store),
		variant("coalesced", coalesced),
		variant("every", every),
	)
}
