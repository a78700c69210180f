package eventstore_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/migrations"
)

// Filtered reads by key (migration 0065) against the reads before it, on
// a log of STRATA_BENCH_LOG_EVENTS events (default 1,000,000; building it
// takes a minute or two):
//
//	go test -run '^$' -bench 'BenchmarkCatchUp|BenchmarkAppendReadKeys' -benchtime=1x ./eventstore/
//
// BenchmarkCatchUp builds the log in the events table as it was before
// 0065 (rare-* streams hold 1% of it, the rest in 1,000 busy-* streams,
// 1,000 events per transaction), times 0065's migration over it, and then
// compares, in interleaved rounds:
//
//   - category: a subscription of the rare category catching up from the
//     start (StopWhenCaughtUp, a handler that writes nothing) with the key
//     walk, against the same subscription with the windowed scan of the
//     log that filtered reads made before (the baseline);
//   - category-read: the same catch-up's reads alone (Store.ReadLog of the
//     category, pages of 500), by key against by windowed scan;
//   - partitions: reading the whole log in its 4 partitions, one after
//     another, with the key walk and with the windowed scan, against
//     reading it unpartitioned once (the baseline: one partition's reads).
//     A ratio of 1 means the 4 partitions cost what one partition does.
//
// BenchmarkAppendReadKeys compares appends into the events table with
// 0065's partition_key column and indexes against the table as it was
// before (the baseline), in two schemas, the same workloads interleaved.

// logEvents is the size of the benchmarks' log.
func logEvents(b *testing.B) int {
	if s := os.Getenv("STRATA_BENCH_LOG_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1000 {
			b.Fatalf("STRATA_BENCH_LOG_EVENTS=%q: want an integer of at least 1000", s)
		}
		return n
	}
	return 1_000_000
}

// beforeReadKeysSQL turns a migrated events table back into its shape
// before 0065.
const beforeReadKeysSQL = `DROP INDEX events_category_log_idx;
	DROP INDEX events_log_idx;
	ALTER TABLE events DROP COLUMN partition_key;
	CREATE INDEX events_log_idx ON events (transaction_id, position);
	CREATE INDEX events_message_log_idx ON events (category, transaction_id, position)
		WHERE event_type IN ('watermill.message', 'watermill.message.base64')`

// inSchema runs statements with the schema as search path.
func inSchema(ctx context.Context, d *benchDB, sql string) error {
	return pgx.BeginFunc(ctx, d.db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+pgx.Identifier{d.db.Schema}.Sanitize()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql)
		return err
	})
}

// readKeysMigration is 0065's SQL.
func readKeysMigration(b *testing.B) string {
	all, err := migrations.All()
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range all {
		if m.Version == 65 {
			return m.SQL
		}
	}
	b.Fatal("no migration 0065")
	return ""
}

// buildLog fills the events table with n events, 1% of them in category
// "rare", 1,000 per transaction, each with the benchmarks' 298-byte data.
func buildLog(ctx context.Context, b *testing.B, d *benchDB, n int) {
	sql := `INSERT INTO ` + d.store.Table("events") + ` (event_id, stream_id, version, category, event_type, schema_version, data, metadata)
		SELECT gen_random_uuid(), c.cat || '-' || (g % 1000), g, c.cat, 'OrderPlaced', 1, $3::json, $4::json
		FROM generate_series($1::bigint, $2::bigint) g,
		     LATERAL (SELECT CASE WHEN g % 100 = 0 THEN 'rare' ELSE 'busy' END AS cat) c`
	p := payloads[0]
	for from := 1; from <= n; from += 1000 {
		if _, err := d.db.Pool.Exec(ctx, sql, from, min(from+999, n), p.data, p.metaJSON); err != nil {
			b.Fatal(err)
		}
	}
}

// subscriptionCatchUp catches a fresh subscription of the rare category up
// from the start of the log, b.N times.
func subscriptionCatchUp(d *benchDB, name string, scan bool) benchVariant {
	return benchVariant{name: name, run: func(b *testing.B) int {
		defer eventstore.SetScanFilteredReads(scan)()
		ctx := context.Background()
		events := 0
		for range b.N {
			sub, err := d.store.Subscription(eventstore.SubscriptionConfig{
				Name: benchStream("catch-up"), Categories: []string{"rare"}, StopWhenCaughtUp: true})
			if err != nil {
				b.Fatal(err)
			}
			if err := sub.Run(ctx, func(_ context.Context, _ pgx.Tx, batch []eventstore.Event) error {
				events += len(batch)
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		return events
	}}
}

// categoryReads reads the rare category from the start of the log, b.N
// times: the reads of subscriptionCatchUp without the subscription.
func categoryReads(d *benchDB, name string, scan bool) benchVariant {
	return benchVariant{name: name, run: func(b *testing.B) int {
		defer eventstore.SetScanFilteredReads(scan)()
		ctx := context.Background()
		events := 0
		for range b.N {
			for _, err := range d.store.ReadLog(ctx, eventstore.Position{}, eventstore.Filter{Categories: []string{"rare"}}) {
				if err != nil {
					b.Fatal(err)
				}
				events++
			}
		}
		return events
	}}
}

// partitionReads reads the whole log in partitions partitions, one after
// another, b.N times (partitions 1: unpartitioned).
func partitionReads(d *benchDB, name string, partitions int, scan bool) benchVariant {
	return benchVariant{name: name, run: func(b *testing.B) int {
		defer eventstore.SetScanFilteredReads(scan)()
		ctx := context.Background()
		events := 0
		for range b.N {
			for p := range partitions {
				f := eventstore.Filter{Partitions: partitions, Partition: p}
				for _, err := range d.store.ReadLog(ctx, eventstore.Position{}, f) {
					if err != nil {
						b.Fatal(err)
					}
					events++
				}
			}
		}
		return events
	}}
}

func BenchmarkCatchUp(b *testing.B) {
	ctx := context.Background()
	d := newBenchDB(b, nil)
	n := logEvents(b)
	if err := inSchema(ctx, d, beforeReadKeysSQL); err != nil {
		b.Fatal(err)
	}
	started := time.Now()
	buildLog(ctx, b, d, n)
	built := time.Since(started)
	started = time.Now()
	if err := inSchema(ctx, d, readKeysMigration(b)); err != nil {
		b.Fatal(err)
	}
	migrated := time.Since(started)
	if _, err := d.db.Pool.Exec(ctx, `VACUUM ANALYZE `+d.store.Table("events")); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("%s: log of %d events built in %s; migration 0065 over it: %s (%.1fs per million events)\n",
		b.Name(), n, built.Round(time.Second), migrated.Round(100*time.Millisecond), migrated.Seconds()*1e6/float64(n))
	b.Run("category", func(b *testing.B) {
		compare(b, []int{0}, subscriptionCatchUp(d, "scan", true), subscriptionCatchUp(d, "keys", false))
	})
	b.Run("category-read", func(b *testing.B) {
		compare(b, []int{0}, categoryReads(d, "scan", true), categoryReads(d, "keys", false))
	})
	b.Run("partitions", func(b *testing.B) {
		compare(b, []int{0}, partitionReads(d, "one", 1, false),
			partitionReads(d, "four-keys", 4, false), partitionReads(d, "four-scan", 4, true))
	})
}

// BenchmarkAppendReadKeys: appends into the events table of 0065 against
// the table before it (the baseline), single events from 16 writers and
// 100-event appends from 4.
func BenchmarkAppendReadKeys(b *testing.B) {
	ctx := context.Background()
	before, after := newBenchDB(b, nil), newBenchDB(b, nil)
	if err := inSchema(ctx, before, beforeReadKeysSQL); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ writers, events int }{{16, 1}, {4, 100}} {
		b.Run(fmt.Sprintf("writers=%d/events=%d", c.writers, c.events), func(b *testing.B) {
			base, keys := before.strataAppend(c.writers, c.events), after.strataAppend(c.writers, c.events)
			base.name, keys.name = "before", "keys"
			compare(b, []int{0}, base, keys)
		})
	}
}
