package projection_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// batchTotals is totals with a set-based HandleBatch, to check that the
// runner prefers it.
type batchTotals struct {
	*totals
	batches atomic.Int64
}

func (b *batchTotals) HandleBatch(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	b.batches.Add(1)
	for _, e := range events {
		if err := b.Handle(ctx, tx, e); err != nil {
			return err
		}
	}
	return nil
}

// Catch-up then live, for a per-event handler, a batch handler and a
// category filter; metrics hooks see every event; Status reports them
// running with no lag.
func TestRunnerCatchUpThenLive(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	all := newTotals(t, db.Pool, db.Schema, "all_totals")
	bt := &batchTotals{totals: newTotals(t, db.Pool, db.Schema, "batch_totals")}
	orders := newTotals(t, db.Pool, db.Schema, "order_totals")
	appendSome(t, s, "order", 5, 20, "Tick")
	appendSome(t, s, "user", 5, 20, "Tick")
	var handled atomic.Int64
	var mu sync.Mutex
	seen := map[string]bool{}
	r := projection.NewRunner(s, []projection.Projection{
		{Name: "all", Handler: all, Reset: all.reset},
		{Name: "batch", Handler: bt, Partitions: 3},
		{Name: "orders", Handler: orders, Categories: []string{"order"}},
	}, &projection.Config{BatchSize: 16, PollInterval: 30 * time.Second, Metrics: projection.Metrics{
		Batch: func(b projection.BatchMetrics) {
			handled.Add(int64(b.Events))
			mu.Lock()
			seen[b.Projection] = true
			mu.Unlock()
		},
	}})
	stop := runRunner(t, r)
	waitModel(t, db.Pool, all, db.Schema, 60*time.Second)
	waitModel(t, db.Pool, bt.totals, db.Schema, 60*time.Second)
	pgtest.WaitFor(t, "order totals", 60*time.Second, func() bool { return len(orders.read(t, db.Pool)) == 5 })

	// Live: with a 30s poll interval only the notification delivers quickly.
	appendSome(t, s, "order", 5, 2, "Tick")
	waitModel(t, db.Pool, all, db.Schema, 60*time.Second)
	waitModel(t, db.Pool, bt.totals, db.Schema, 60*time.Second)
	// Every order stream, not only the first: appendSome writes order-0's
	// events before the other streams', so order-0 alone says nothing about
	// the rest, and the status below asserts no lag.
	pgtest.WaitFor(t, "live order totals", 60*time.Second, func() bool {
		got := orders.read(t, db.Pool)
		for k := range 5 {
			if got[fmt.Sprintf("order-%d", k)].Events != 22 {
				return false
			}
		}
		return len(got) == 5
	})
	if bt.batches.Load() == 0 {
		t.Fatal("HandleBatch was never called")
	}
	for _, name := range []string{"all", "batch", "orders"} {
		st := statusOf(t, r, name)
		if st.State != projection.StateRunning || len(st.Owners) != 1 || st.Lag != 0 || st.DeadLetters != 0 {
			t.Fatalf("status of %s: %+v", name, st)
		}
		if !strings.HasPrefix(st.Subscription, "projection:") || st.Head.IsZero() || st.Checkpoint.IsZero() {
			t.Fatalf("status of %s: %+v", name, st)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := int64(210 + 210 + 110); handled.Load() != want || len(seen) != 3 {
		t.Fatalf("metrics saw %d events of %v, want %d of 3 projections", handled.Load(), seen, want)
	}
	if st := statusOf(t, r, "all"); st.State != projection.StateStopped || len(st.Owners) != 0 {
		t.Fatalf("status after stop: %+v", st)
	}
}

func TestNewRunnerRejectsBadProjections(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	h := projection.HandlerFunc(func(context.Context, pgx.Tx, eventstore.Event) error { return nil })
	r := projection.NewRunner(s, []projection.Projection{{Name: "a", Handler: h}, {Name: "a", Handler: h}, {Name: "", Handler: h}, {Name: "b"}}, nil)
	err := r.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "given twice") || !strings.Contains(err.Error(), "needs a name") || !strings.Contains(err.Error(), "needs a handler") {
		t.Fatalf("Run: %v", err)
	}
	ok := projection.NewRunner(s, []projection.Projection{{Name: "a", Handler: h}}, nil)
	if _, err := ok.DeadLetters(context.Background(), "nope"); !errors.Is(err, projection.ErrUnknownProjection) {
		t.Fatalf("unknown projection: %v", err)
	}
	if st := statusOf(t, ok, "a"); st.State != projection.StateNew {
		t.Fatalf("never-run projection: %+v", st)
	}
}

// A poison event is retried, then parked with the later events of its
// stream, while other streams go on; Status and the metrics hooks show it;
// a retry after the fix drains the dead letters in order. A projection
// under the Stop policy stops and shows failing, while the others in the
// same Run go on.
func TestPoisonEventParkedOthersContinue(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := context.Background()
	parkTotals := newTotals(t, db.Pool, db.Schema, "park_totals")
	liveTotals := newTotals(t, db.Pool, db.Schema, "live_totals")
	var fixed atomic.Bool
	poisoned := func(tt *totals) projection.HandlerFunc {
		return func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			if e.Type == "Poison" && !fixed.Load() {
				return fmt.Errorf("cannot handle %s of %s", e.Type, e.StreamID)
			}
			return tt.Handle(ctx, tx, e)
		}
	}
	for _, a := range []struct{ stream, typ string }{
		{"bad-1", "Tick"}, {"good-1", "Tick"}, {"bad-1", "Poison"}, {"good-1", "Tick"}, {"bad-1", "Tick"}, {"good-2", "Tick"},
	} {
		if _, err := s.Append(ctx, a.stream, eventstore.Any, event(a.typ, 1)); err != nil {
			t.Fatal(err)
		}
	}
	var errorsSeen, parked atomic.Int64
	r := projection.NewRunner(s, []projection.Projection{
		{Name: "parks", Handler: poisoned(parkTotals), MaxAttempts: 3},
		{Name: "stops", Handler: poisoned(newTotals(t, db.Pool, db.Schema, "stop_totals")), MaxAttempts: 2, OnFailure: eventstore.Stop},
		{Name: "healthy", Handler: liveTotals},
	}, &projection.Config{RetryBackoff: time.Millisecond, PollInterval: 50 * time.Millisecond, Metrics: projection.Metrics{
		Error: func(name string, err error) {
			if name == "parks" {
				errorsSeen.Add(1)
			}
		},
		Batch: func(b projection.BatchMetrics) {
			if b.Projection == "parks" {
				parked.Add(int64(b.Parked))
			}
		},
	}})
	runRunner(t, r)
	pgtest.WaitFor(t, "parking", 60*time.Second, func() bool {
		dl, err := r.DeadLetters(ctx, "parks")
		return err == nil && len(dl) == 2 && len(parkTotals.read(t, db.Pool)) == 3
	})
	dl, _ := r.DeadLetters(ctx, "parks")
	if dl[0].Type != "Poison" || dl[0].Attempts != 3 || dl[0].StreamID != "bad-1" || dl[1].BlockedBy != dl[0].ID {
		t.Fatalf("dead letters: %+v", dl)
	}
	if got := parkTotals.read(t, db.Pool); got["bad-1"].Events != 1 || got["good-1"].Events != 2 || got["good-2"].Events != 1 {
		t.Fatalf("read model: %+v", got)
	}
	pgtest.WaitFor(t, "status with dead letters", 30*time.Second, func() bool {
		st := statusOf(t, r, "parks")
		return st.DeadLetters == 2 && st.State == projection.StateRunning && st.Lag == 0
	})
	// The Batch metric is called after the parking commits: what the
	// dead-letter table already shows may not have reached it yet.
	pgtest.WaitFor(t, "the parked metric", 30*time.Second, func() bool { return parked.Load() >= 2 })
	if errorsSeen.Load() < 3 || parked.Load() != 2 {
		t.Fatalf("metrics: %d errors, %d parked", errorsSeen.Load(), parked.Load())
	}
	// Stop policy: the projection stops, shows failing with the error, and
	// the others keep going (new events reach them).
	pgtest.WaitFor(t, "stopped projection", 30*time.Second, func() bool {
		st := statusOf(t, r, "stops")
		return st.State == projection.StateFailing && st.StoppedHere != nil && strings.Contains(st.LastError, "cannot handle Poison")
	})
	appendSome(t, s, "good", 3, 1, "Tick")
	waitModel(t, db.Pool, liveTotals, db.Schema, 60*time.Second)
	pgtest.WaitFor(t, "parks goes on", 60*time.Second, func() bool { return parkTotals.read(t, db.Pool)["good-0"].Events == 1 })

	fixed.Store(true)
	if n, err := r.RetryDeadLetters(ctx, "parks", ""); err != nil || n != 2 {
		t.Fatalf("retry: %d %v", n, err)
	}
	waitModel(t, db.Pool, parkTotals, db.Schema, 60*time.Second)
	if dl, _ := r.DeadLetters(ctx, "parks"); len(dl) != 0 {
		t.Fatalf("dead letters left: %+v", dl)
	}
}

// The late-commit scenario end to end: a transaction takes an early
// position and stays open while later appends commit. The projection must
// not pass it (that would skip it forever); Status names the transaction
// holding it back; once it commits, all three events reach the read model
// in log order.
func TestLateCommitThroughProjection(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := context.Background()
	logTable := pgx.Identifier{db.Schema, "applied"}.Sanitize()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE `+logTable+` (n bigint GENERATED ALWAYS AS IDENTITY, stream_id text, seq bigint)`); err != nil {
		t.Fatal(err)
	}
	h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		_, err := tx.Exec(ctx, `INSERT INTO `+logTable+` (stream_id, seq) VALUES ($1, $2)`, e.StreamID, e.Position.Seq)
		return err
	})
	r := projection.NewRunner(s, []projection.Projection{{Name: "applied", Handler: h}},
		&projection.Config{PollInterval: 20 * time.Millisecond, HorizonAge: 50 * time.Millisecond})
	runRunner(t, r)

	early, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Rollback(ctx)
	if _, err := early.Exec(ctx, `SET LOCAL application_name = 'late-committer'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendTx(ctx, early, "a-1", eventstore.NoStream, event("Early", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "b-1", eventstore.NoStream, event("Later", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "c-1", eventstore.NoStream, event("Later", 3)); err != nil {
		t.Fatal(err)
	}
	applied := func() []string {
		rows, err := db.Pool.Query(ctx, `SELECT stream_id FROM `+logTable+` ORDER BY n`)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// While the early transaction is open, Status shows the lag and an
	// open transaction holding it (with parallel tests it may be another
	// one, older than ours), and nothing has been applied past it.
	var st projection.Status
	pgtest.WaitFor(t, "status naming the horizon holder", 30*time.Second, func() bool {
		st = statusOf(t, r, "applied")
		return st.Lag >= 2 && st.HeldBy != nil
	})
	t.Logf("held by pid %d (%s, %s) for %v", st.HeldBy.PID, st.HeldBy.ApplicationName, st.HeldBy.State, st.HeldBy.Age)
	if got := applied(); len(got) != 0 {
		t.Fatalf("projection passed an open earlier transaction: applied %v", got)
	}
	if err := early.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "the three events", 60*time.Second, func() bool { return len(applied()) >= 3 })
	if got := applied(); strings.Join(got, ",") != "a-1,b-1,c-1" {
		t.Fatalf("applied %v, want a-1,b-1,c-1", got)
	}
	pgtest.WaitFor(t, "no lag", 30*time.Second, func() bool { st := statusOf(t, r, "applied"); return st.Lag == 0 && st.HeldBy == nil })
}

// Zero-downtime rebuild: version 2 of a projection is built from the start
// of the log into its own table while version 1 keeps serving and
// following the log; both end up equal.
func TestNewVersionBuildsBesideOld(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	v1 := newTotals(t, db.Pool, db.Schema, "summary_v1")
	v2 := newTotals(t, db.Pool, db.Schema, "summary_v2")
	tables := map[int]*totals{1: v1, 2: v2}
	var wrongVersion atomic.Bool
	handler := func(version int) projection.HandlerFunc {
		return func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			if projection.VersionOf(ctx) != version {
				wrongVersion.Store(true)
			}
			return tables[projection.VersionOf(ctx)].Handle(ctx, tx, e)
		}
	}
	appendSome(t, s, "order", 10, 10, "Tick")
	old := projection.NewRunner(s, []projection.Projection{{Name: "summary", Handler: handler(1)}}, &projection.Config{PollInterval: 50 * time.Millisecond})
	runRunner(t, old)
	waitModel(t, db.Pool, v1, db.Schema, 60*time.Second)

	stopWriters := writers(s, 2, "order", 5*time.Millisecond)
	next := projection.NewRunner(s, []projection.Projection{{Name: "summary", Version: 2, Handler: handler(2)}}, &projection.Config{PollInterval: 50 * time.Millisecond})
	runRunner(t, next)
	pgtest.WaitFor(t, "version 2 to catch up", 60*time.Second, func() bool {
		st := statusOf(t, next, "summary")
		return st.Subscription == "projection:summary@v2" && st.EventsHandled >= 100
	})
	if n := stopWriters(); n == 0 {
		t.Fatal("no writes during the build")
	}
	waitModel(t, db.Pool, v1, db.Schema, 60*time.Second)
	waitModel(t, db.Pool, v2, db.Schema, 60*time.Second)
	if wrongVersion.Load() {
		t.Fatal("a handler saw the wrong VersionOf(ctx)")
	}
}

// Run returns nil promptly when its context ends, and can be started and
// stopped repeatedly without losing or doubling an effect.
func TestRunnerStartStop(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	tt := newTotals(t, db.Pool, db.Schema, "totals")
	stopWriters := writers(s, 2, "s", time.Millisecond)
	r := projection.NewRunner(s, []projection.Projection{{Name: "t", Handler: tt, Partitions: 2}}, &projection.Config{BatchSize: 7, PollInterval: 20 * time.Millisecond})
	for range 15 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(150))*time.Millisecond)
		start := time.Now()
		if err := r.Run(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("Run took %v to stop", d)
		}
	}
	stopWriters()
	runRunner(t, r)
	waitModel(t, db.Pool, tt, db.Schema, 60*time.Second)
}
