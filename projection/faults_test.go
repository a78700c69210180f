package projection_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/faultproxy"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// faultRun is how long a fault test injects faults and how hard: a few
// seconds in the normal suite and the fault-gated run, 30 s with
// STRATA_LONG_FAULTS=1.
func faultRun() (d time.Duration, cutP float64) {
	if os.Getenv("STRATA_LONG_FAULTS") == "1" {
		return 30 * time.Second, 0.03
	}
	return 3 * time.Second, 0.02
}

// TestRunnerUnderFaults: a projection whose store's pool goes through the
// fault proxy, while writers append on a direct pool, so the workload is
// known. For the whole run every statement may be cut at the worst moment
// (after it was sent, before its answer: the server may have committed,
// or run on, or been ended), and at random moments every connection is cut
// at once or the proxy is blackholed for a moment. Promises 2 and 3: once
// the faults stop, the runner recovers by itself and its read model
// (written in the handler's transaction) is exactly what the events imply
// — every event applied once, each stream in order (the handler refuses a
// version that is not the stream's next, so a doubled or reordered
// delivery shows as a refusal, never as a wrong figure) — and nothing is
// parked.
func TestRunnerUnderFaults(t *testing.T) {
	t.Parallel()
	direct, db := newStore(t)
	ctx := context.Background()
	cfg, proxy, err := faultproxy.PoolConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	// pgx sends a CancelRequest when it loses a connection; across a real
	// partition it would not arrive either.
	proxy.SetDropCancels(true)
	cfg.MaxConns = 8
	cfg.ConnConfig.RuntimeParams["application_name"] = "strata-faults-" + db.Schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// The faults make every component log; the figures are below.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := eventstore.New(pool, &eventstore.Config{Schema: db.Schema, Logger: quiet})

	tt := newTotals(t, db.Pool, db.Schema, "fault_totals")
	var refused, connErrs atomic.Int64
	h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		err := tt.Handle(ctx, tx, e)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
		case strings.Contains(err.Error(), "out of order") || errors.As(err, &pgErr) && pgErr.Code == "23505":
			// The event was applied already (its batch committed while
			// the worker lost the answer): a redelivery, refused.
			refused.Add(1)
		default:
			connErrs.Add(1)
		}
		return err
	})
	// Two processes share the projection's partitions, and take over each
	// other's when a lease runs out under the faults.
	runner := func(owner string) *projection.Runner {
		return projection.NewRunner(s, []projection.Projection{{Name: "faults", Handler: h, Partitions: 3}},
			&projection.Config{BatchSize: 50, PollInterval: 200 * time.Millisecond, RetryBackoff: 20 * time.Millisecond,
				MaxRetryBackoff: 500 * time.Millisecond, LeaseTTL: 2 * time.Second, Owner: owner, Logger: quiet})
	}
	r := runner("a")
	stop := runRunner(t, r)
	stopB := runRunner(t, runner("b"))

	d, cutP := faultRun()
	stopWriters := writers(direct, 3, "fault", 2*time.Millisecond)
	st := faultproxy.TwoPhaseStorm(ctx, d, cutP, proxy)
	appended := stopWriters()
	if st.Cuts == 0 {
		t.Fatal("the storm cut nothing")
	}

	// The faults have stopped: the runner must catch up by itself.
	recovered := time.Now()
	waitRecovered(t, direct, db, tt, 60*time.Second)
	t.Logf("%d appends; faults for %v: %d connections cut (%d CutAll, %d blackholes); "+
		"%d redeliveries refused, %d other handler errors; caught up %v after the faults",
		appended, d, st.Cuts, st.CutAlls, st.Blackholes, refused.Load(), connErrs.Load(), time.Since(recovered).Round(time.Millisecond))

	// No server process of a lost connection is left in a transaction,
	// holding the cluster's gap-safe readers.
	if err := faultproxy.WaitNoneHeld(ctx, db.Pool, "strata-faults-"+db.Schema, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if dl, err := r.DeadLetters(ctx, "faults"); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters after faults: %v, %v; want none", dl, err)
	}
	// Live again: new events after the faults arrive too.
	appendSome(t, direct, "after", 3, 2, "Tick")
	waitRecovered(t, direct, db, tt, 60*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
}

// waitRecovered is waitModel that says, every few seconds, which
// transaction holds the log's readers back, if any: this test's own
// (application name strata-faults-<schema>: a server process of a lost
// connection left running) or another test's.
func waitRecovered(t *testing.T, s *eventstore.Store, db *pgtest.DB, tt *totals, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	next := time.Now().Add(3 * time.Second)
	for {
		got, want := tt.read(t, db.Pool), expected(t, db.Pool, db.Schema)
		if equalRows(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("read model %s differs from the events after %s: %s", tt.table, d, diffRows(got, want))
		}
		if time.Now().After(next) {
			next = time.Now().Add(3 * time.Second)
			h, err := s.Horizon(context.Background(), time.Second)
			t.Logf("still catching up; the horizon's holder: %+v (%v)", h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
