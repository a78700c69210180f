package projection_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// remoteCall models a handler that calls another service for each event:
// it spends delay outside Postgres before the read model's write. With
// serial, the process makes one such call at a time (a client with one
// connection to the service), so its partitions queue for it.
type remoteCall struct {
	next   projection.Handler
	delay  time.Duration
	serial bool
	mu     sync.Mutex
}

func (r *remoteCall) Handle(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
	if err := r.call(ctx); err != nil {
		return err
	}
	return r.next.Handle(ctx, tx, e)
}

// HandleBatch makes the batch's calls, then writes its totals in one
// statement, so that the database's work per event stays small beside
// the call's and the figure measures how the calls spread over processes.
func (r *remoteCall) HandleBatch(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	for range events {
		if err := r.call(ctx); err != nil {
			return err
		}
	}
	return r.next.(*totals).applyBatch(ctx, tx, events)
}

// call is the remote call. The lock is held only for the call: a handler
// that waited for a database connection while holding it would starve
// the partitions holding the pool's connections.
func (r *remoteCall) call(ctx context.Context) error {
	if r.serial {
		r.mu.Lock()
		defer r.mu.Unlock()
	}
	t := time.NewTimer(r.delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// applyBatch applies events as Handle would, one statement for the batch:
// per stream, its count, sum and last version, refused (an error) unless
// the stream's versions in the batch follow the row's last one.
func (tt *totals) applyBatch(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	type agg struct{ first, last, events, total int64 }
	by := map[string]*agg{}
	var ids []string
	for _, e := range events {
		var d struct{ N int64 }
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return err
		}
		a := by[e.StreamID]
		if a == nil {
			a = &agg{first: e.Version, last: e.Version - 1}
			by[e.StreamID] = a
			ids = append(ids, e.StreamID)
		}
		if e.Version != a.last+1 {
			return fmt.Errorf("stream %s: version %d after %d in one batch", e.StreamID, e.Version, a.last)
		}
		a.last, a.events, a.total = e.Version, a.events+1, a.total+d.N
	}
	var first, last, n, total []int64
	for _, id := range ids {
		a := by[id]
		first, last, n, total = append(first, a.first), append(last, a.last), append(n, a.events), append(total, a.total)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO `+tt.name()+` AS t (stream_id, events, total, last_version)
		SELECT u.id, u.n, u.total, u.last FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[]) AS u(id, first, last, n, total)
		WHERE u.first = 1 OR EXISTS (SELECT 1 FROM `+tt.name()+` x WHERE x.stream_id = u.id)
		ON CONFLICT (stream_id) DO UPDATE SET events = t.events + EXCLUDED.events, total = t.total + EXCLUDED.total, last_version = EXCLUDED.last_version
		WHERE t.last_version = EXCLUDED.last_version - EXCLUDED.events`, ids, first, last, n, total)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != int64(len(ids)) {
		return fmt.Errorf("a batch of %d streams applied out of order (%d rows moved)", len(ids), tag.RowsAffected())
	}
	return nil
}

// TestScaleOut is the scale-out figure: a projection of 8 partitions
// whose handler spends 1 ms per event in a call to another service, one
// call at a time per process, and writes each batch's totals in one
// statement (remoteCall.HandleBatch), run over the same backlog by 1, 2 and 4 OS
// processes (the test binary re-executed). It reports each run's rate
// (events ÷ the time from starting the processes to the read model being
// complete) and its ratio to one process's rate, medians of interleaved
// rounds (also timed from when every process is ready, its start
// apart), and fails if the read models differ (a checksum of each table)
// or differ from the events. Only with STRATA_SCALEOUT=1:
//
//	STRATA_SCALEOUT=1 go test -run TestScaleOut -v ./projection/
//
// STRATA_SCALEOUT_EVENTS sets the backlog (default 48000), STRATA_BENCH_ROUNDS
// the rounds (default 3), STRATA_SCALEOUT_PARALLEL=1 lets each process make
// its calls in parallel (one per partition at a time).
func TestScaleOut(t *testing.T) {
	if os.Getenv("STRATA_SCALEOUT") != "1" {
		t.Skip("the scale-out figure: set STRATA_SCALEOUT=1")
	}
	events := envInt("STRATA_SCALEOUT_EVENTS", 48000)
	rounds := envInt("STRATA_BENCH_ROUNDS", 3)
	serial := os.Getenv("STRATA_SCALEOUT_PARALLEL") != "1"
	s, db := newStore(t)
	ctx := context.Background()
	// One event per stream, each stream its own append, 16 appenders:
	// with many streams the hash gives the 8 partitions even shares of
	// the work (about ±2% at 16,000 streams; 2,048 streams of 8 events
	// gave them ±10%, which alone capped 4 processes near 3.7×).
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < events; i += 16 {
				if _, err := s.Append(ctx, fmt.Sprintf("acct-%d", i), eventstore.NoStream, event("Tick", int64(i))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	want := expected(t, db.Pool, db.Schema)

	procs := []int{1, 2, 4}
	rates := map[int][]float64{}    // from starting the processes
	steadies := map[int][]float64{} // from their being ready
	settleds := map[int][]float64{} // from every process holding its share
	sums := map[string]string{}
	for r := range rounds {
		for _, k := range procs {
			name := fmt.Sprintf("scale_%d_%d", k, r)
			tt := newTotals(t, db.Pool, db.Schema, name)
			start := time.Now()
			var children []*child
			for i := range k {
				children = append(children, startChild(t, childConfig{
					URL: db.URL, Schema: db.Schema, Name: name, Table: name, Owner: fmt.Sprintf("%s-p%d", name, i),
					Partitions: 8, Delay: time.Millisecond, Serial: serial, PoolSize: 12,
				}))
			}
			// The processes' start (exec, runtime, flags) is timed apart:
			// the steady rate is timed from when every process is ready.
			var ready time.Time
			for _, c := range children {
				select {
				case <-c.ready:
				case <-c.done:
					t.Fatal("a child process ended before it was ready")
				case <-time.After(time.Minute):
					t.Fatal("a child process not ready within a minute")
				}
			}
			ready = time.Now()
			var owners []string
			var balanced time.Time // when every process first held its share
			var handledAtBalance int64
			pgtest.WaitFor(t, "the read model to be complete", 10*time.Minute, func() bool {
				var n int64
				if err := db.Pool.QueryRow(ctx, `SELECT coalesce(sum(events), 0) FROM `+tt.name()).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if balanced.IsZero() {
					owners = partitionOwners(t, db, name)
					if len(owners) == k && owners[0] == fmt.Sprint(8/k) {
						balanced, handledAtBalance = time.Now(), n
					}
				}
				return n == int64(events)
			})
			elapsed, running := time.Since(start), time.Since(ready)
			if !balanced.IsZero() && handledAtBalance < int64(events) {
				settled := float64(int64(events)-handledAtBalance) / time.Since(balanced).Seconds()
				settleds[k] = append(settleds[k], settled)
				t.Logf("round %d, %d process(es): %.0f ev/s once balanced (%v after start, %d events handled by then)",
					r+1, k, settled, balanced.Sub(start).Round(time.Millisecond), handledAtBalance)
			}
			for _, c := range children {
				c.kill()
			}
			rate, steady := float64(events)/elapsed.Seconds(), float64(events)/running.Seconds()
			rates[k] = append(rates[k], rate)
			steadies[k] = append(steadies[k], steady)
			sums[name] = checksum(t, db, tt)
			if got := tt.read(t, db.Pool); !equalRows(got, want) {
				t.Fatalf("%s: read model differs from the events: %s", name, diffRows(got, want))
			}
			t.Logf("round %d, %d process(es): %.0f ev/s in %v (%.0f ev/s in %v from ready), partitions per owner %v, checksum %s",
				r+1, k, rate, elapsed.Round(time.Millisecond), steady, running.Round(time.Millisecond), owners, sums[name])
			if r == 0 && k == 1 {
				t.Logf("events per partition: %v", partitionEvents(t, db, name))
			}
		}
	}
	var first string
	for _, sum := range sums {
		if first == "" {
			first = sum
		}
		if sum != first {
			t.Fatalf("read models differ: %v", sums)
		}
	}
	base, steadyBase, settledBase := median(rates[1]), median(steadies[1]), median(settleds[1])
	for _, k := range procs {
		t.Logf("%d process(es): %.0f ev/s (%v), %.2fx one process; from ready %.0f ev/s (%v), %.2fx; once balanced %.0f ev/s (%v), %.2fx",
			k, median(rates[k]), rates[k], median(rates[k])/base, median(steadies[k]), steadies[k], median(steadies[k])/steadyBase,
			median(settleds[k]), settleds[k], median(settleds[k])/settledBase)
	}
}

// partitionOwners counts the partitions each process holds, highest first.
func partitionOwners(t *testing.T, db *pgtest.DB, name string) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "subscriptions"}.Sanitize()+
		` WHERE name = $1 AND owner IS NOT NULL GROUP BY owner ORDER BY 1 DESC`, projection.SubscriptionName(name, 0))
	if err != nil {
		t.Fatal(err)
	}
	counts, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range counts {
		out = append(out, strconv.FormatInt(c, 10))
	}
	return out
}

// partitionEvents lists the events each partition handled.
func partitionEvents(t *testing.T, db *pgtest.DB, name string) []int64 {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT events_handled FROM `+pgx.Identifier{db.Schema, "subscriptions"}.Sanitize()+
		` WHERE name = $1 ORDER BY partition`, projection.SubscriptionName(name, 0))
	if err != nil {
		t.Fatal(err)
	}
	n, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checksum is an md5 of the read model's rows in key order.
func checksum(t *testing.T, db *pgtest.DB, tt *totals) string {
	t.Helper()
	var sum string
	if err := db.Pool.QueryRow(context.Background(), `SELECT md5(coalesce(string_agg(stream_id || ':' || events || ':' || total || ':' || last_version, ',' ORDER BY stream_id), ''))
		FROM `+tt.name()).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	return sum
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
