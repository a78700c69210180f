package eventstore_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// What archiving does to the hot table: two stores of 1,000,000 events
// (10,000 streams of 100), one with 90% of its streams archived, measured
// in the same run, in interleaved rounds: a full read of the log, a page
// read at the log's head (a live subscription's read), and single-event
// appends to new streams; and the events table's size with its indexes.
// Long (a few minutes): run with STRATA_ARCHIVE_BENCH=1.
//
//	STRATA_ARCHIVE_BENCH=1 go test -run TestArchiveFigures -v -timeout 30m ./eventstore/
func TestArchiveFigures(t *testing.T) {
	if os.Getenv("STRATA_ARCHIVE_BENCH") != "1" {
		t.Skip("set STRATA_ARCHIVE_BENCH=1 to measure archiving on a 1,000,000-event store")
	}
	const streams, perStream = 10_000, 100
	ctx := context.Background()
	fill := func(db *pgtest.DB) *eventstore.Store {
		s := pgx.Identifier{db.Schema}.Sanitize()
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.events (event_id, stream_id, version, category, event_type, schema_version, data)
				SELECT gen_random_uuid(), 'acct-' || k, v, 'acct', 'Tick', 1, '{"n":1,"note":"some payload of a typical size"}'
				FROM generate_series(1, %d) v, generate_series(1, %d) k ORDER BY v, k`, s, perStream, streams)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.streams (stream_id, category, version, last_tx)
				SELECT 'acct-' || k, 'acct', %d, pg_current_xact_id()::text::bigint FROM generate_series(1, %d) k`, s, perStream, streams))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	}
	dbA, dbU := pgtest.New(t), pgtest.New(t)
	start := time.Now()
	archived, plain := fill(dbA), fill(dbU)
	t.Logf("filled two stores of %d events in %s", streams*perStream, time.Since(start))
	start = time.Now()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for k := 1 + w; k <= streams*9/10; k += 4 {
				if err := archived.Archive(ctx, fmt.Sprintf("acct-%d", k)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("archived %d streams (%d events) in %s", streams*9/10, streams*9/10*perStream, time.Since(start))
	for _, db := range []*pgtest.DB{dbA, dbU} {
		if _, err := db.Pool.Exec(ctx, fmt.Sprintf(`VACUUM ANALYZE %s.events`, pgx.Identifier{db.Schema}.Sanitize())); err != nil {
			t.Fatal(err)
		}
	}
	size := func(db *pgtest.DB) int64 {
		var n int64
		if err := db.Pool.QueryRow(ctx, `SELECT pg_total_relation_size(format('%I.events', $1::text)::regclass)`, db.Schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	fullRead := func(s *eventstore.Store) (time.Duration, int) {
		start, n := time.Now(), 0
		var after eventstore.Position
		for {
			page, err := s.ReadAll(ctx, after, 1000)
			if err != nil {
				t.Fatal(err)
			}
			n += len(page.Events)
			after = page.Next
			if page.AtEnd {
				return time.Since(start), n
			}
		}
	}
	headRead := func(s *eventstore.Store) time.Duration {
		h, err := s.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		from := eventstore.Position{TxID: h.Position.TxID, Seq: h.Position.Seq - 600}
		var d []time.Duration
		for range 200 {
			start := time.Now()
			if _, err := s.ReadAll(ctx, from, 500); err != nil {
				t.Fatal(err)
			}
			d = append(d, time.Since(start))
		}
		slices.Sort(d)
		return d[len(d)/2]
	}
	round := 0
	appendRate := func(s *eventstore.Store) time.Duration {
		round++
		start := time.Now()
		const n = 500
		for i := range n {
			if _, err := s.Append(ctx, fmt.Sprintf("new-%d-%d", round, i), eventstore.NoStream, eventstore.NewEvent{Type: "Tick", Data: []byte(`{"n":1}`)}); err != nil {
				t.Fatal(err)
			}
		}
		return time.Since(start) / n
	}
	type figures struct{ full, head, app []time.Duration }
	var fa, fu figures
	var na, nu int
	for range 3 {
		for _, x := range []struct {
			s *eventstore.Store
			f *figures
			n *int
		}{{archived, &fa, &na}, {plain, &fu, &nu}} {
			d, n := fullRead(x.s)
			x.f.full, *x.n = append(x.f.full, d), n
			x.f.head = append(x.f.head, headRead(x.s))
			x.f.app = append(x.f.app, appendRate(x.s))
		}
	}
	med := func(d []time.Duration) time.Duration { d = slices.Clone(d); slices.Sort(d); return d[len(d)/2] }
	ratio := func(a, b time.Duration) float64 { return float64(a) / float64(b) }
	sa, su := size(dbA), size(dbU)
	t.Logf("archived 90%% vs unarchived, 1,000,000 events each, medians of 3 interleaved rounds (shared, loaded machine):")
	t.Logf("  events table + indexes: %d MB vs %d MB (%.2fx)", sa>>20, su>>20, float64(sa)/float64(su))
	t.Logf("  full log read (pages of 1000): %v for %d events vs %v for %d events (%.2fx time; per event %.2fx)",
		med(fa.full), na, med(fu.full), nu, ratio(med(fa.full), med(fu.full)),
		ratio(med(fa.full)/time.Duration(max(na, 1)), med(fu.full)/time.Duration(max(nu, 1))))
	t.Logf("  page of 500 at the head, median: %v vs %v (%.2fx)", med(fa.head), med(fu.head), ratio(med(fa.head), med(fu.head)))
	t.Logf("  single-event append, mean: %v vs %v (%.2fx)", med(fa.app), med(fu.app), ratio(med(fa.app), med(fu.app)))
}
