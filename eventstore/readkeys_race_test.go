package eventstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// keyRaceFilters are the filtered reads the races below attack, every
// walk of readkeys.go: a category, a category's partitions, the log's
// partitions (few and many), categories with partitions, and categories
// with a type filter (the windowed walk).
var keyRaceFilters = func() []eventstore.Filter {
	fs := []eventstore.Filter{{Categories: []string{"hot"}}, {Categories: []string{"hot", "cold"}, Types: []string{"T1"}}}
	for p := range 3 {
		fs = append(fs, eventstore.Filter{Categories: []string{"hot"}, Partitions: 3, Partition: p})
	}
	for p := range 4 {
		fs = append(fs, eventstore.Filter{Partitions: 4, Partition: p})
	}
	// Walks of keys: many partitions, and categories with partitions.
	fs = append(fs, eventstore.Filter{Partitions: 10, Partition: 3}, eventstore.Filter{Categories: []string{"hot", "cold"}, Partitions: 2, Partition: 1})
	return fs
}()

// keyRaceAppends appends to categories hot and cold from several writers
// until ctx ends: most appends commit at once, some in transactions held
// open for a while (their events take transaction IDs before later
// appends commit), a few of those roll back; one writer holds a
// transaction in each category open for 300ms at a time. It returns how
// many events committed, when every writer has stopped.
func keyRaceAppends(ctx context.Context, t *testing.T, s *eventstore.Store, pool interface {
	Begin(context.Context) (pgx.Tx, error)
}) func() int {
	var committed atomic.Int64
	var seq atomic.Int64
	var wg sync.WaitGroup
	held := func(stream string, hold time.Duration, rollback bool) {
		tx, err := pool.Begin(context.Background())
		if err != nil {
			t.Error(err)
			return
		}
		defer tx.Rollback(context.Background()) //nolint:errcheck
		if _, err := s.AppendTx(context.Background(), tx, stream, eventstore.NoStream, ev("T1", `{}`), ev("T2", `{}`)); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(hold)
		if rollback {
			return
		}
		if err := tx.Commit(context.Background()); err != nil {
			t.Error(err)
			return
		}
		committed.Add(2)
	}
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for ctx.Err() == nil {
				cat := []string{"hot", "cold", "cold", "cold"}[r.IntN(4)]
				switch k := r.IntN(10); {
				case k < 3:
					held(fmt.Sprintf("%s-tx%d", cat, seq.Add(1)), time.Duration(r.IntN(30))*time.Millisecond, k == 0)
				default:
					typ := []string{"T1", "T2"}[r.IntN(2)]
					if _, err := s.Append(context.Background(), fmt.Sprintf("%s-%d", cat, r.IntN(8)), eventstore.Any, ev(typ, `{}`)); err != nil {
						t.Error(err)
						return
					}
					committed.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			var long sync.WaitGroup
			for _, cat := range []string{"hot", "cold"} {
				long.Go(func() { held(fmt.Sprintf("%s-long%d", cat, seq.Add(1)), 300*time.Millisecond, false) })
			}
			long.Wait()
		}
	})
	return func() int { wg.Wait(); return int(committed.Load()) }
}

// expectedUnder lists the positions of the events f selects, in log order,
// computed from the table with the partition hash of the stream ID itself
// (not the stored key).
func expectedUnder(t *testing.T, db *pgtest.DB, s *eventstore.Store, f eventstore.Filter) []eventstore.Position {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT transaction_id, position FROM `+s.Table("events")+`
		WHERE (cardinality($1::text[]) = 0 OR category = ANY($1::text[]))
		  AND (cardinality($2::text[]) = 0 OR event_type = ANY($2::text[]))
		  AND ($3::bigint <= 1 OR ((hashtext(stream_id)::bigint & 2147483647) % $3::bigint) = $4::bigint)
		ORDER BY transaction_id, position`, append([]string{}, f.Categories...), append([]string{}, f.Types...), max(f.Partitions, 1), f.Partition)
	if err != nil {
		t.Fatal(err)
	}
	var out []eventstore.Position
	for rows.Next() {
		var tx, pos int64
		if err := rows.Scan(&tx, &pos); err != nil {
			t.Fatal(err)
		}
		out = append(out, eventstore.Position{TxID: uint64(tx), Seq: pos})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Filtered readers by key, reading in small pages while writers in and out
// of their category commit around transactions held open (and rolled
// back): each reader gets exactly the events its filter selects, each once,
// in log order, and its Next never goes back. A read that moved to the head
// of the log past a transaction still open, or walked its category past
// the horizon, would skip that transaction's events when it commits.
func TestKeyedReadsSkipNothingPastHeldTransactions(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	ctx, stopAppends := context.WithTimeout(context.Background(), 3*time.Second)
	defer stopAppends()
	wait := keyRaceAppends(ctx, t, s, db.Pool)

	drain := make(chan struct{})
	got := make([][]eventstore.Position, len(keyRaceFilters))
	var readers sync.WaitGroup
	for i, f := range keyRaceFilters {
		readers.Go(func() {
			after := eventstore.Position{}
			draining := false
			for {
				if !draining {
					select {
					case <-drain:
						draining = true // every committed event is readable now
					default:
					}
				}
				page, err := s.ReadAllFiltered(context.Background(), after, 7, f)
				if err != nil {
					t.Error(err)
					return
				}
				if page.Next.Less(after) {
					t.Errorf("filter %+v: Next %v went back from %v", f, page.Next, after)
					return
				}
				for _, e := range page.Events {
					got[i] = append(got[i], e.Position)
				}
				after = page.Next
				if page.AtEnd {
					if draining {
						return
					}
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	total := wait()
	if t.Failed() {
		close(drain)
		readers.Wait()
		return
	}
	// Every committed event is readable once the whole log's read has them.
	waitFor(t, "the whole log", time.Minute, func() bool {
		n := 0
		for _, err := range s.ReadLog(context.Background(), eventstore.Position{}, eventstore.Filter{}) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n == total
	})
	close(drain)
	readers.Wait()
	for i, f := range keyRaceFilters {
		want := expectedUnder(t, db, s, f)
		if len(want) == 0 {
			t.Fatalf("filter %+v selects nothing: the race proves nothing", f)
		}
		if !slices.Equal(got[i], want) {
			t.Errorf("filter %+v: read %d events, want %d in log order (first difference at %d)", f, len(got[i]), len(want), firstDifference(got[i], want))
		}
	}
}

// firstDifference is the index of the first position where a and b differ.
func firstDifference(a, b []eventstore.Position) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A partitioned subscription of a category, under the appends of the race
// above, stopped and made again with another partition count:
// its read model (which refuses a stream's versions out of order, and an
// event twice) ends with exactly the category's events. The stored key
// serves any count, and the partitions of the new count together select
// every event of the old ones.
func TestKeyedSubscriptionChangesPartitionCountOnRestart(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, nil)
	rm := newReadModel(t, db)
	ctx, stopAppends := context.WithTimeout(context.Background(), 3*time.Second)
	defer stopAppends()
	wait := keyRaceAppends(ctx, t, s, db.Pool)
	cfg := eventstore.SubscriptionConfig{Name: "hot", Categories: []string{"hot"}, Partitions: 2, BatchSize: 5,
		MaxAttempts: 1, OnFailure: eventstore.Stop, PollInterval: 20 * time.Millisecond}
	sub, err := s.Subscription(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, sub, rm.handle)
	time.Sleep(time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// A new partition count: the subscription is deleted and made again
	// from the start of the log, its read model cleared.
	if err := s.DeleteSubscription(context.Background(), "hot"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(context.Background(), `TRUNCATE `+rm.table+`, `+pgx.Identifier{db.Schema, "rm_streams"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	cfg.Partitions = 3
	if sub, err = s.Subscription(cfg); err != nil {
		t.Fatal(err)
	}
	run(t, sub, rm.handle)
	wait()
	want := len(expectedUnder(t, db, s, eventstore.Filter{Categories: []string{"hot"}}))
	waitFor(t, "the category's events", time.Minute, func() bool { return rm.count(t) >= want })
	if n := rm.count(t); n != want {
		t.Fatalf("read model holds %d events, want %d", n, want)
	}
}
